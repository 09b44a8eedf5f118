"""Epochs reach data-loader workers, and DDP ranks split the data without losing batches."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from appliance.perturb import PerturbSpec
from export.data import EpochSampler, SegDataset, sample_from_arrays


def _dataset() -> SegDataset:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(3):
        inst = np.zeros((48, 48), np.uint32)
        inst[8:20, 8:20], inst[28:40, 24:44] = 1, 2
        image = (inst > 0) * 900 + rng.integers(0, 200, (48, 48))
        samples.append(sample_from_arrays(image.astype(np.uint16), inst))
    spec = PerturbSpec(omission=0.5, bias=2)
    return SegDataset(samples, "upgrade", spec, train=True, patch=32, seed=4, min_items=8)


def _epochs(workers: int, epochs: int = 2) -> list[list[torch.Tensor]]:
    """The batches (inputs) of each epoch, with persistent workers as on the GPU path."""
    ds = _dataset()
    sampler = EpochSampler(len(ds), seed=4)
    loader = DataLoader(
        ds, batch_size=4, sampler=sampler, num_workers=workers, persistent_workers=workers > 0
    )
    out = []
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        out.append([batch["x"] for batch in loader])
    return out


def test_persistent_workers_see_each_epoch_and_match_no_workers() -> None:
    with_workers = _epochs(workers=2)
    first, second = with_workers
    # fresh crops, augmentation and perturbations every epoch, also inside worker processes
    assert not any(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    without = _epochs(workers=0)
    for got, want in zip(with_workers, without, strict=True):
        assert len(got) == len(want) == 2
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_ranks_split_each_epoch_into_disjoint_equal_shares() -> None:
    for length, world in ((10, 2), (7, 3), (3, 8)):
        shares = [list(EpochSampler(length, seed=1, rank=r, world=world)) for r in range(world)]
        assert len({len(s) for s in shares}) == 1  # same number of steps on every rank
        keys = [k for s in shares for k in s]
        assert {i for _, i in keys} == set(range(length))
        if length % world == 0:
            assert len(keys) == len(set(keys)) == length
    one = EpochSampler(10, seed=1)
    first = list(one)
    one.set_epoch(1)
    assert [i for _, i in first] != [i for _, i in one] and {e for e, _ in one} == {1}


def test_small_data_on_many_ranks_still_trains_batches() -> None:
    """8 ranks and 64 items: the old global drop_last rule gave every rank zero batches."""
    ds = _dataset()
    ds.length = 64
    sampler = EpochSampler(len(ds), seed=0, rank=7, world=8)
    loader = DataLoader(ds, batch_size=16, sampler=sampler, drop_last=len(sampler) >= 2 * 16)
    assert len(loader) == 1 and len(list(sampler)) == 8
