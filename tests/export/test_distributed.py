"""`torchrun --nproc_per_node 2 -m export train JOB ... --device cpu` (gloo): two ranks split the
data, exactly one bundle is written, and it is as good as a single-process run of the same
epochs. Training is bounded by epochs only (`--no-time-budget`), never by the machine's speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from appliance.cli import main as appliance_main

EPOCHS = 8
ROOT = Path(__file__).resolve().parents[2]


def _disks(folder: Path, n: int = 20, size: int = 64) -> None:
    """Bright disks on a noisy background: both runs converge within a few epochs, so their
    Dice compares the training, not two points on a steep learning curve."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        cells = np.zeros((size, size), np.uint16)
        for k in range(1, 6):
            x, y = (int(v) for v in rng.integers(8, size - 8, 2))
            cv2.circle(cells, (x, y), int(rng.integers(4, 9)), k, -1)
        image = np.clip(rng.normal(600, 80, cells.shape) + (cells > 0) * 2000, 0, 65535)
        tifffile.imwrite(folder / "images" / f"d{i:02d}.tif", image.astype(np.uint16))
        tifffile.imwrite(folder / "masks" / f"d{i:02d}.tif", cells)


def _train_args(job: Path, out: Path, run: Path, batch: int) -> list[str]:
    return [
        "train", str(job), "--out", str(out), "--run-dir", str(run), "--device", "cpu",
        "--epochs", str(EPOCHS), "--patience", "100", "--no-time-budget", "--lr", "5e-3",
        "--width", "4", "--depth", "3", "--batch", str(batch), "--min-epoch-items", "32",
    ]  # fmt: skip


def _test_dice(bundle: Path) -> float:
    with zipfile.ZipFile(bundle) as zf:
        return json.loads(zf.read("manifest.json"))["models"][0]["metrics"]["test_dice_onnx_fp32"]


@pytest.mark.slow
def test_torchrun_two_ranks_on_cpu(tmp_path: Path) -> None:
    data, proj, job = tmp_path / "data", tmp_path / "proj", tmp_path / "job.zip"
    _disks(data)
    assert appliance_main(["init", str(proj), "--classes", "nucleus"]) == 0
    images, masks = str(data / "images"), str(data / "masks")
    assert appliance_main(["import", str(proj), images, "--labels", masks]) == 0
    split = ["--task", "segment", "--split", "0.6,0.2,0.2"]
    assert appliance_main(["export-job", str(proj), str(job), *split]) == 0

    # both runs as processes with one thread each: the same conditions, and quick on 2 cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    single = tmp_path / "single.zip"
    alone = [sys.executable, "-m", "export", *_train_args(job, single, tmp_path / "run1", 4)]
    done = subprocess.run(alone, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    launcher = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [launcher] if launcher else [sys.executable, "-m", "torch.distributed.run"]
    out_dir = tmp_path / "ddp"
    out_dir.mkdir()
    ddp, run = out_dir / "model.zip", tmp_path / "run2"
    command += ["--standalone", "--nproc_per_node", "2", "-m", "export"]
    done = subprocess.run(
        # 2 per rank: the same global batch, so the same optimiser steps per epoch
        [*command, *_train_args(job, ddp, run, batch=2)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    assert [p.name for p in out_dir.iterdir()] == ["model.zip"]  # exactly one bundle
    assert sorted(p.name for p in run.glob("*.onnx")) == ["model.onnx"]
    seen = [json.loads((run / f"items-rank{r}.json").read_text()) for r in (0, 1)]
    for epoch in map(str, range(1, EPOCHS + 1)):
        a, b = set(seen[0][epoch]), set(seen[1][epoch])
        assert a and b and not a & b, f"epoch {epoch}: ranks saw {sorted(a)} and {sorted(b)}"
    one, two = _test_dice(single), _test_dice(ddp)
    assert one > 0.9, one
    assert abs(one - two) <= 0.03, (one, two)
