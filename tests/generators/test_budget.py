"""`--max-minutes` bounds every generator training; tests bound by steps, never by minutes.

A budget far below one step's cost must stop each trainer after its first step (whatever the
machine's speed: no step takes less than a nanosecond), and say so in the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.bundles.training_job import read_training_job
from export.cli import main as export_main
from export.generators.cgan import CganConfig, train_cgan
from export.generators.data import cell_crops, scenes
from export.generators.diffusion import DiffusionConfig, train_diffusion
from export.generators.label2image import Label2ImageConfig, train_label2image

TINY_BUDGET = 1e-12  # minutes: spent by any single step


def test_each_trainer_stops_at_its_budget(job: Path) -> None:
    with read_training_job(job) as j:
        crops = cell_crops(j, 16, 32)
        scene_list = scenes(j, ("train",))
    cg = train_cgan(
        crops,
        CganConfig(width=8, batch=8, max_steps=10_000, max_minutes=TINY_BUDGET),
        progress=False,
    )
    assert (cg.steps, cg.stopped) == (1, "time budget")
    df = train_diffusion(
        crops,
        DiffusionConfig(width=8, steps=10_000, batch=8, max_minutes=TINY_BUDGET),
        progress=False,
    )
    assert (len(df.history), df.stopped) == (1, "time budget")
    l2 = train_label2image(
        scene_list,
        3,
        Label2ImageConfig(
            width=8, d_width=8, size=16, steps=10_000, batch=2, max_minutes=TINY_BUDGET
        ),
        progress=False,
    )
    assert (len(l2.history), l2.stopped) == (1, "time budget")
    # 0 means no budget: the steps alone bound the run
    free = train_cgan(
        crops, CganConfig(width=8, batch=8, max_steps=3, max_minutes=0), progress=False
    )
    assert (free.steps, free.stopped) == (3, "steps")
    assert np.isfinite([h["d_loss"] for h in free.history]).all()


@pytest.mark.parametrize(
    "args",
    [
        ["train-generator", "JOB", "--kind", "cgan", "--out", "OUT", "--max-minutes", "0"],
        ["mipr", "JOB", "--out", "OUT", "--max-minutes", "-1"],
    ],
)
def test_a_budget_below_six_seconds_is_one_line_exit_2(
    args: list[str], job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.zip"
    argv = [str(job) if a == "JOB" else str(out) if a == "OUT" else a for a in args]
    assert export_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-minutes" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("command", ["train-generator", "mipr"])
def test_help_explains_the_budget(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        export_main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-minutes" in text and "--no-time-budget" in text and "on a CPU" in text
