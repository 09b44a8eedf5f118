"""Each generator trains at a tiny setting (its loss falls), exports with parity, installs as a
`generator` bundle, and samples through onnxruntime in a process where torch cannot load."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance.bundles.model_bundle import read_model_bundle
from appliance.cli import main as appliance_main
from appliance.contract import GeneratorContract
from export.cli import main as export_main
from export.generators.common import smoothed

TINY = {
    "cgan": ["--size", "16", "--crop", "32", "--steps", "40", "--batch", "16", "--width", "8"],
    "diffusion": [
        "--size",
        "16",
        "--crop",
        "32",
        "--steps",
        "40",
        "--batch",
        "16",
        "--width",
        "8",
        "--sample-steps",
        "5",
        "--eta",
        "1",  # the tablet's loop then draws fresh noise per step
    ],
    "label2image": ["--size", "16", "--steps", "20", "--batch", "2", "--width", "8"],
}
# the loss that must fall: the cGAN's discriminator learns to tell; the others fit their target
FALLING = {"cgan": "d_loss", "diffusion": "loss", "label2image": "l1"}

NO_TORCH_SAMPLER = """
import sys
sys.modules["torch"] = None  # any import of torch now fails
import numpy as np
from appliance.generators.runtime import Generator
from appliance.store import Project
with Project.open(sys.argv[1]) as project:
    gen = Generator.from_project(project, threads=1)
    s = gen.contract.size
    rng = np.random.default_rng(0)
    cells = gen.sample("cell", 3, rng, sources=rng.random((3, s, s), dtype=np.float32))
print([(c.pixels.shape, float(c.pixels.min()), float(c.pixels.max()), int(c.mask.sum()))
       for c in cells])
print("torch" in sys.modules and sys.modules["torch"] is not None)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cgan", "diffusion", "label2image"])
def test_generator_trains_exports_and_samples_without_torch(
    kind: str, job: Path, tmp_path: Path
) -> None:
    out, run = tmp_path / f"{kind}.zip", tmp_path / "run"
    args = ["train-generator", str(job), "--kind", kind, "--out", str(out)]
    assert export_main([*args, "--run-dir", str(run), *TINY[kind]]) == 0

    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    loss = smoothed([h[FALLING[kind]] for h in history], 8)
    assert loss[-1] < loss[0], f"{kind} {FALLING[kind]} did not fall: {loss[0]} → {loss[-1]}"
    assert (run / "samples.png").stat().st_size > 2000

    bundle = read_model_bundle(out)
    (model,) = bundle.models
    contract = model.contract
    assert model.role == "generator" and isinstance(contract, GeneratorContract)
    assert contract.kind == kind
    if kind == "diffusion":
        assert contract.schedule is not None and contract.schedule.eta == 1.0
        assert json.loads((run / "metrics.json").read_text())["stopped"] == "steps"
    assert model.metrics["parity"]["max_abs_diff"] <= 1e-4
    with zipfile.ZipFile(out) as zf:
        assert {"extra/samples.png", "extra/curves.png"} <= set(zf.namelist())

    project = job.parent / "project"
    assert appliance_main(["install-model", str(project), str(out)]) == 0
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SAMPLER, str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    cells = eval(lines[0])  # shapes and ranges printed by the child
    assert len(cells) == 3
    for shape, lo, hi, _area in cells:
        assert shape == (16, 16) and 0.0 <= lo <= hi <= 1.0
    assert lines[1] == "False"


def test_bad_generator_class_is_one_line_exit_2(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = job.parent / "project"
    code = appliance_main(["generate", str(project), "--class", "neuron", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "neuron" in err or "no generator" in err


def test_mipr_needs_unlabeled_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.generators.virtual import cell_job

    job = cell_job(tmp_path, n=4, labeled=4, size=32)
    code = export_main(["mipr", str(job), "--out", str(tmp_path / "m.zip")])
    assert code == 2
    assert "--include-unlabeled" in capsys.readouterr().err
    assert not (tmp_path / "m.zip").exists()
