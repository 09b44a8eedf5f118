"""MIPR end to end at smoke size: `python -m export mipr` trains G and S, runs its iterations,
reports a test Dice per iteration and ships the last U-Net as an installable prelabel bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.bundles.model_bundle import read_model_bundle
from export.cli import main as export_main

SMOKE = [
    "--iterations", "2", "--seg-epochs", "2", "--seg-width", "4",
    "--g-steps", "3", "--g-width", "8", "--g-size", "16",
]  # fmt: skip


@pytest.mark.slow
def test_mipr_runs_end_to_end(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, run = tmp_path / "mipr.zip", tmp_path / "run"
    code = export_main(["mipr", str(job), "--out", str(out), "--run-dir", str(run), *SMOKE])
    printed = capsys.readouterr().out
    assert code == 0, printed
    rows = json.loads((run / "mipr.json").read_text())
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert isinstance(r["test_dice"], float) and 0.0 <= r["test_dice"] <= 1.0
    assert rows[0]["pseudo_pairs"] == 0
    assert "MIPR[2]" in printed and (run / "mipr.png").stat().st_size > 1000
    bundle = read_model_bundle(out)
    (model,) = bundle.models
    assert model.role == "prelabel"
    assert [r["iteration"] for r in model.metrics["iterations"]] == [0, 1, 2]
    assert model.metrics["parity"]["max_abs_diff"] <= 1e-4
