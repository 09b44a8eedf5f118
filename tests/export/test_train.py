"""A few training steps learn: loss falls and validation Dice beats a chance baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # export trains with torch; the appliance never needs it

from appliance.perturb import PerturbSpec
from export.data import sample_from_arrays
from export.synth import synth_samples
from export.train import TrainConfig, train_model


def _data(n: int, size: int = 64, seed: int = 0) -> list:
    return [sample_from_arrays(s.image, s.cells, s.others) for s in synth_samples(n, size, seed)]


def _chance_dice(samples: list) -> float:
    """Dice of calling every pixel foreground: what a network that learned nothing reaches."""
    p = float(np.mean([(s.target > 0).mean() for s in samples]))
    return 2 * p / (1 + p)


def test_segmentation_learns(tmp_path: Path) -> None:
    train, val = _data(6), _data(2, seed=1)
    config = TrainConfig(
        width=4, epochs=8, lr=5e-3, patience=100, min_epoch_items=32, seed=0, max_minutes=0
    )
    result = train_model(train, val, config, run_dir=tmp_path / "run", progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best_val_dice > _chance_dice(val) + 0.1
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 8
    assert not result.model.training


def test_upgrade_learns_and_runs_are_reproducible() -> None:
    train, val = _data(4), _data(2, seed=1)
    config = TrainConfig(
        task="upgrade",
        width=4,
        epochs=3,
        min_epoch_items=8,
        max_minutes=0,  # bounded by epochs only: a busy machine must not train less
        perturb=PerturbSpec(omission=0.5, bias=2),
    )
    a = train_model(train, val, config, progress=False)
    b = train_model(train, val, config, progress=False)
    assert a.model.config["in_channels"] == 2
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.history[-1]["loss"] < a.history[0]["loss"]


def test_votes_switch_the_loss(tmp_path: Path) -> None:
    train, val = _data(3), _data(1, seed=1)
    for s in train:
        s.votes = np.stack([s.target, np.zeros_like(s.target)])  # two annotators
    config = TrainConfig(width=4, epochs=2, min_epoch_items=4, max_minutes=0)
    result = train_model(train, val, config, progress=False)
    assert np.isfinite(result.history[-1]["loss"])
