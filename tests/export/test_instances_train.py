"""Instance output kinds on the workstation: targets, the upgrade input, and a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from appliance.assist.instances import decode, default_decoding
from appliance.metrics import pooled_f1
from appliance.perturb import PerturbSpec
from export.data import SegDataset, sample_from_arrays
from export.instance_metrics import coco_ap
from export.targets import distance_target, merge_touching, three_class_target
from export.train import TrainConfig, train_model


def pairs_image(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Two pairs of touching discs of different brightness, blurred, with noise; the line
    where a pair touches is a little dimmer, as between real touching nuclei."""
    yy, xx = np.mgrid[:size, :size]
    inst = np.zeros((size, size), np.uint32)
    signal = np.zeros((size, size))
    k = 0
    for cy in (16, 46):
        cx, (r1, r2), angle = rng.uniform(14, 22), rng.uniform(6, 8, 2), rng.uniform(-0.4, 0.4)
        d = (r1 + r2) * 0.85
        for y, x, r in ((cy, cx, r1), (cy + d * np.sin(angle), cx + d * np.cos(angle), r2)):
            k += 1
            disc = ((yy - y) ** 2 + (xx - x) ** 2 <= r * r) & (inst == 0)
            inst[disc] = k
            signal[disc] = rng.uniform(0.5, 1.0)
    other = np.where(inst == 0, np.iinfo(np.uint32).max, inst)  # background never counts
    seam = (inst > 0) & (
        (ndi.grey_dilation(inst, size=3) > inst) | (ndi.grey_erosion(other, size=3) < inst)
    )
    signal[seam] *= 0.6
    image = ndi.gaussian_filter(signal, 1.0) + rng.normal(0, 0.03, signal.shape)
    return (np.clip(image, 0, 2) * 20000 + 1000).astype(np.uint16), inst


def test_targets_mark_edges_and_centres() -> None:
    inst = np.zeros((20, 30), np.uint32)
    inst[5:15, 3:14] = 1
    inst[5:15, 14:25] = 2
    t3 = three_class_target(inst)
    assert set(np.unique(t3).tolist()) == {0, 1, 2}
    assert (t3[10, 13:15] == 2).all()  # both sides of the touching line
    dist = distance_target(inst)
    assert dist.max() == pytest.approx(1.0) and dist[inst == 0].max() == 0
    assert dist[10, 13] < 0.3 and dist[10, 8] > 0.7


def test_merge_touching_joins_only_touching_cells() -> None:
    inst = np.zeros((10, 30), np.uint32)
    inst[2:8, 2:8], inst[2:8, 8:14], inst[2:8, 20:26] = 1, 2, 3
    merged = merge_touching(inst, 1.0, np.random.default_rng(0))
    assert merged[4, 4] == merged[4, 10] != merged[4, 22]
    assert np.array_equal(merge_touching(inst, 0.0, np.random.default_rng(0)), inst)


def test_instance_upgrade_items_carry_coarse_edges() -> None:
    image, inst = pairs_image(np.random.default_rng(0))
    sample = sample_from_arrays(image, inst)
    spec = PerturbSpec(omission=0.0, inclusion=0.0, bias=0)
    ds = SegDataset([sample], "upgrade", spec, train=False, output="distance")
    item = ds[0]
    assert item["x"].shape == (3, 64, 64) and item["aux"].shape == (64, 64)
    edges = item["x"][2].numpy() > 0
    assert edges.any() and not (edges & (item["x"][1].numpy() == 0)).any()
    assert item["aux"].max() == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["three_class", "distance"])
def test_an_instance_model_learns_to_split_touching_cells(kind: str) -> None:
    """Connected components of the true foreground reach F1 2/3 here; the model must beat it."""
    torch.set_num_threads(2)
    # an epoch is 16 crops whatever the set's size, so more images cost only validation time
    data = [pairs_image(np.random.default_rng(i)) for i in range(20)]
    train = [sample_from_arrays(i, m) for i, m in data[:16]]
    val = [sample_from_arrays(i, m) for i, m in data[16:]]
    config = TrainConfig(
        width=8,
        depth=3,
        epochs=40,
        lr=5e-3,
        patience=100,
        min_epoch_items=16,
        batch=4,
        patch=64,
        output=kind,
        seed=0,
    )
    result = train_model(train, val, config, progress=False)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    test = [pairs_image(np.random.default_rng(100 + i)) for i in range(6)]
    truths, preds = [], []
    for image, truth in test:
        x = torch.from_numpy(sample_from_arrays(image, truth).image[None])
        with torch.no_grad():
            logits = result.model(x)[0].numpy()
        preds.append(decode(logits, kind, 2, default_decoding(kind))[0])
        truths.append(truth)
    merged = [ndi.label(t > 0)[0] for t in truths]
    assert pooled_f1(truths, merged) == pytest.approx(2 / 3)
    assert pooled_f1(truths, preds) >= 0.85
    assert coco_ap(truths, preds) > coco_ap(truths, merged)


def test_crowding_grows_clusters_of_touching_cells() -> None:
    from export.synth import synth_samples

    def merged(crowding: float) -> float:
        samples = list(synth_samples(3, 128, seed=4, crowding=crowding))
        cells = sum(int(s.cells.max()) for s in samples)
        blobs = sum(ndi.label(s.cells > 0)[1] for s in samples)
        return 1.0 - blobs / cells  # share of cells lost to connected components

    assert merged(0.8) > merged(0.0) + 0.2
    a = next(iter(synth_samples(1, 64, seed=2, crowding=0.5)))
    b = next(iter(synth_samples(1, 64, seed=2, crowding=0.5)))
    assert np.array_equal(a.cells, b.cells) and np.array_equal(a.image, b.image)
