"""Datasets: augmentation keeps image and label aligned; perturbations are fresh and seeded."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # export trains with torch; the appliance never needs it

from appliance.errors import ApplianceError
from appliance.perturb import PerturbSpec
from export.data import Sample, SegDataset, pad_to_multiple, sample_from_arrays


def _sample(size: int = 48) -> Sample:
    inst = np.zeros((size, size), np.uint32)
    for i in range(6):
        r, c = divmod(i, 3)
        inst[4 + 14 * r : 12 + 14 * r, 4 + 14 * c : 14 + 14 * c] = i + 1
    image = (inst > 0).astype(np.uint16) * 1000 + 100
    return sample_from_arrays(image, inst)


def test_augmentation_keeps_image_and_label_aligned() -> None:
    ds = SegDataset([_sample()], "segment", train=True, patch=32, seed=3, min_items=8)
    for i in range(8):
        item = ds[i]
        assert item["x"].shape == (1, 32, 32) and item["y"].shape == (32, 32)
        fg = item["x"][0].numpy() > item["x"][0].numpy().mean()
        assert np.array_equal(fg, item["y"].numpy() == 1)


def test_upgrade_perturbations_are_fresh_per_epoch_and_reproducible() -> None:
    spec = PerturbSpec(omission=0.5)
    ds = SegDataset([_sample()], "upgrade", spec, train=True, patch=48, seed=1, min_items=1)
    first = ds[0]["x"]
    assert first.shape == (2, 48, 48)
    assert set(np.unique(first[1].numpy()).tolist()) <= {0.0, 1.0}
    ds.set_epoch(1)
    second = ds[0]["x"]
    assert not np.array_equal(first.numpy(), second.numpy())
    ds.set_epoch(0)
    assert np.array_equal(first.numpy(), ds[0]["x"].numpy())


def test_evaluation_items_are_padded_whole_images_with_a_fixed_perturbation() -> None:
    spec = PerturbSpec(omission=0.5)
    ds = SegDataset([_sample(40)], "upgrade", spec, train=False, seed=1)
    a = ds[0]["x"]
    ds.set_epoch(5)
    assert a.shape == (2, 48, 48)
    assert np.array_equal(a.numpy(), ds[0]["x"].numpy())


def test_pad_to_multiple() -> None:
    assert pad_to_multiple(np.zeros((3, 17, 32))).shape == (3, 32, 32)
    assert pad_to_multiple(np.zeros((5, 3))).shape == (16, 16)


def test_rejects_empty_sets_and_unknown_tasks() -> None:
    with pytest.raises(ApplianceError, match="no training images"):
        SegDataset([], "segment")
    with pytest.raises(ApplianceError, match="unknown task"):
        SegDataset([_sample()], "classify")
