"""The cell detector learns points and boxes: loss falls and detection F1 rises far above the
untrained model's within a few hundred steps (bounded by epochs, tiny images); its ONNX export
finds the same peaks as PyTorch; targets and coarse masks come from the objects they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from appliance.labels import Box, CellObject, Label, Point
from export.centres import centre_targets, label_objects, objects_as_masks
from export.onnx_export import export_onnx
from export.train.detector import (
    DetSample,
    _decode_all,
    build_detector,
    default_decoding,
    detector_contract,
    detector_outputs,
    onnx_objects,
    score_objects,
    train_detector,
)
from export.train.loop import TrainConfig

SIZE = 64
RADII = {1: 3, 2: 6}  # class 1: small bright cells; class 2: large dimmer ones
LEVEL = {1: 0.95, 2: 0.6}


def blob_image(seed: int, n: int = 5) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """Noise with `n` round blobs of two classes, apart from each other and the border."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.15, 0.05, (SIZE, SIZE))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cells: list[tuple[float, float, int]] = []
    while len(cells) < n:
        cls = int(rng.integers(1, 3))
        cx, cy = rng.uniform(8, SIZE - 8, 2)
        if any(np.hypot(cx - x, cy - y) < 14 for x, y, _ in cells):
            continue
        img[np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) <= RADII[cls]] = LEVEL[cls]
        cells.append((float(cx), float(cy), cls))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), cells


def as_points(cells: list[tuple[float, float, int]]) -> list[CellObject]:
    return [Point(x, y, c) for x, y, c in cells]


def as_boxes(cells: list[tuple[float, float, int]]) -> list[CellObject]:
    return [Box(x - RADII[c], y - RADII[c], x + RADII[c], y + RADII[c], c) for x, y, c in cells]


def samples(seeds: range, boxes: bool) -> list[DetSample]:
    out = []
    for seed in seeds:
        img, cells = blob_image(seed)
        objects = as_boxes(cells) if boxes else as_points(cells)
        out.append(DetSample((img.astype(np.float32) / 255)[None], objects))
    return out


CONFIG = TrainConfig(
    task="detect", n_classes=3, width=8, depth=3, epochs=40, batch=4, lr=3e-3, patience=1000,
    patch=64, min_epoch_items=16, device="cpu", seed=0, max_minutes=0, lr_schedule="constant",
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("boxes", [False, True], ids=["points", "boxes"])
def test_the_detector_learns_cells_from_points_or_boxes(boxes: bool) -> None:
    train, val = samples(range(12), boxes), samples(range(100, 104), boxes)
    torch.manual_seed(0)
    untrained = build_detector(1, 3, CONFIG.width, CONFIG.depth)
    decoding = default_decoding(4.0, boxes)
    truths = [s.objects for s in val]
    before = score_objects(truths, _decode_all(detector_outputs(untrained, val), 3, decoding), 4.0)
    result = train_detector(train, val, 3, CONFIG, point_sigma=2.0, progress=False)
    losses = [h["loss"] for h in result.history]
    assert result.steps == CONFIG.epochs * 4  # 16 crops per epoch, batch 4: bounded by steps
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    after = score_objects(
        truths, _decode_all(detector_outputs(result.model, val), 3, result.decoding), 4.0
    )
    assert before.class_f1 < 0.3
    assert after.f1 >= 0.9 and after.class_f1 >= 0.8, after
    if boxes:  # sizes are learned: boxes decoded from the peaks overlap the truth's
        from appliance.metrics import match_boxes

        found = _decode_all(detector_outputs(result.model, val), 3, result.decoding)
        rows = [
            (np.array([o.bounds() for o in t]), np.array([o.bounds() for o in g]))
            for t, g in zip(truths, found, strict=True)
        ]
        matched = sum(len(match_boxes(t, g).pairs) for t, g in rows)
        assert matched >= 0.8 * sum(len(t) for t in truths)


@pytest.mark.slow
def test_onnx_export_finds_the_same_peaks_as_torch(tmp_path: Path) -> None:
    val = samples(range(200, 203), boxes=True)
    # a few epochs, so that the heatmaps have peaks to find
    result = train_detector(samples(range(6), True), val, 3, replace_epochs(8), progress=False)
    model = result.model
    path = tmp_path / "det.onnx"
    export_onnx(model, 1, path)
    contract = detector_contract(1, ["background", "a", "b"], result.decoding)
    torch_found = _decode_all(detector_outputs(model, val), 3, dict(contract.decoding))
    onnx_found = onnx_objects(path, val, contract)
    assert sum(len(f) for f in torch_found) > 0
    for t, o in zip(torch_found, onnx_found, strict=True):
        assert [type(a) for a in t] == [type(b) for b in o]
        assert [a.class_id for a in t] == [b.class_id for b in o]
        assert np.allclose([a.bounds() for a in t], [b.bounds() for b in o], atol=1e-3)


def replace_epochs(epochs: int) -> TrainConfig:
    from dataclasses import replace

    return replace(CONFIG, epochs=epochs)


def test_targets_peak_at_each_cell_with_its_size() -> None:
    objects = [Point(10.2, 20.7, 1), Box(30, 4, 50, 14, 2)]
    t = centre_targets(objects, (32, 64), 3, point_sigma=2.0)
    assert t.heat.shape == (2, 32, 64) and t.size.shape == (2, 32, 64)
    assert t.heat[0, 20, 10] == 1.0 and t.heat[1, 9, 40] == 1.0
    assert int((t.heat == 1).sum()) == 2  # the focal loss's positives: one per cell
    assert t.size_mask[9, 40] == 1 and t.size_mask[20, 10] == 0  # a point has no size
    assert np.allclose(t.size[:, 9, 40], np.log([20, 10]))
    # decoding the targets themselves gives the cells back
    logits = np.log(np.clip(t.heat, 1e-6, 1 - 1e-6) / np.clip(1 - t.heat, 1e-6, 1))
    out = np.concatenate([logits, t.size]).astype(np.float32)
    found = _decode_all([out], 3, default_decoding(4.0, False, 0.9))[0]
    assert sorted(found, key=lambda o: o.class_id) == [Point(10.5, 20.5, 1), Point(40.5, 9.5, 2)]


def test_masks_become_boxes_and_objects_become_coarse_masks() -> None:
    inst = np.zeros((40, 40), np.uint32)
    inst[5:10, 20:30] = 1
    label = Label(inst, {1: 2}, (Point(8, 30, 1), Box(25, 25, 35, 31, 1)))
    assert label_objects(label)[2] == Box(20, 5, 30, 10, 2)
    coarse = objects_as_masks(label, point_radius=3)
    assert coarse.objects == () and coarse.ids().tolist() == [1, 2, 3]
    assert coarse.classes == {1: 2, 2: 1, 3: 1}
    assert coarse.instances[30, 8] == 2 and 20 <= int((coarse.instances == 2).sum()) <= 40
    ellipse = coarse.instances == 3
    assert ellipse[28, 30] and not ellipse[25, 25]  # the box's corner lies outside its ellipse
    assert np.array_equal(coarse.instances[5:10, 20:30], inst[5:10, 20:30])  # masks kept


def test_a_crop_trains_on_the_cells_whose_centre_it_holds() -> None:
    from export.train.detector import DetDataset, crop_objects

    cells = [Point(5, 5, 1), Box(20, 20, 40, 30, 2), Point(70, 10, 1)]
    assert crop_objects(cells, 10, 16, 32) == [Box(4, 10, 24, 20, 2)]  # centre (30, 25) inside
    # the dataset's targets are drawn for its crop: one positive per cell whose centre it holds
    image = np.zeros((1, 48, 80), np.float32)
    ds = DetDataset([DetSample(image, cells)], 3, patch=32, seed=0, min_items=8)
    for i in range(8):
        item = ds[(1, i)]
        assert item["x"].shape == (1, 32, 32) and item["heat"].shape == (2, 32, 32)
        assert 0 <= int((item["heat"] == 1).sum()) <= 2
        box_pixels = item["mask"] > 0
        if box_pixels.any():  # the box's log size, its sides swapped by a quarter turn or not
            sizes = {tuple(np.round(np.exp(item["size"][:, box_pixels].numpy().T[0]), 3))}
            assert sizes <= {(20.0, 10.0), (10.0, 20.0)}
