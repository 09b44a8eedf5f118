"""Instance decoding on hand-made outputs: touching cells stay apart, tiles do not cut cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from appliance.assist.contract import decode_label, model_input, probabilities
from appliance.assist.instances import (
    boundaries,
    decode,
    default_decoding,
    majority_classes,
    output_channels,
)
from appliance.assist.prelabel import otsu
from appliance.assist.runtime import InferenceModel
from appliance.contract import Contract
from appliance.errors import ApplianceError

from .onnx_builders import conv_model
from .onnx_builders import raw_contract as contract

BIG = 12.0


def two_touching_discs(shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Instance map of two discs of radius 11 whose edges share a 9-pixel straight border."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    a = (yy - 24) ** 2 + (xx - 20) ** 2 <= 11**2
    b = (yy - 24) ** 2 + (xx - 40) ** 2 <= 11**2
    inst = np.zeros(shape, np.uint32)
    inst[a] = 1
    inst[b & ~a] = 2
    inst[b & (xx >= 30)] = 2
    assert ndi.label(inst > 0)[1] == 1  # one blob to connected components
    return inst


def three_class_logits(inst: np.ndarray) -> np.ndarray:
    """What a perfect three-class model says: one-hot background / interior / boundary."""
    edge = boundaries(inst)
    target = np.where(inst > 0, np.where(edge, 2, 1), 0)
    return BIG * np.eye(3, dtype=np.float32)[target].transpose(2, 0, 1)


def distance_logits(inst: np.ndarray) -> np.ndarray:
    """A perfect distance model: foreground softmax and each cell's normalised distance."""
    fg = (inst > 0).astype(np.float32)
    dist = np.zeros(inst.shape, np.float32)
    for i in np.unique(inst[inst > 0]):
        d = ndi.distance_transform_edt(inst == i)
        dist[inst == i] = (d / d.max())[inst == i]
    d = np.clip(dist, 1e-4, 1 - 1e-4)
    return np.stack([BIG * (0.5 - fg), BIG * (fg - 0.5), np.log(d / (1 - d))])


@pytest.mark.parametrize(
    "kind,make", [("three_class", three_class_logits), ("distance", distance_logits)]
)
def test_two_touching_discs_become_two_instances(kind: str, make) -> None:
    truth = two_touching_discs()
    inst, classes = decode(make(truth), kind, 2, default_decoding(kind))
    assert sorted(classes) == [1, 2] and set(classes.values()) == {1}
    # each decoded cell is one of the discs, nearly pixel for pixel
    for i in (1, 2):
        overlap = np.bincount(truth[inst == i], minlength=3)[1:]
        assert overlap.max() / max((inst == i).sum(), 1) > 0.95
        assert overlap.max() / (truth == overlap.argmax() + 1).sum() > 0.95


@pytest.mark.parametrize(
    "kind,make", [("three_class", three_class_logits), ("distance", distance_logits)]
)
def test_empty_output_gives_no_instances(kind: str, make) -> None:
    inst, classes = decode(make(np.zeros((32, 32), np.uint32)), kind, 2, default_decoding(kind))
    assert not inst.any() and classes == {}


def test_a_cell_without_a_seed_is_still_a_cell_and_tiny_ones_vanish() -> None:
    truth = np.zeros((32, 32), np.uint32)
    truth[4:10, 4:10] = 1  # thin: after the boundary ring only a 4×4 interior
    truth[20, 20] = 2  # one pixel: under min_area
    logits = three_class_logits(truth)
    logits[:, 5:9, 5:9] = BIG * np.array([0, 0, 1], np.float32)[:, None, None]  # no interior
    inst, _ = decode(logits, "three_class", 2, default_decoding("three_class"))
    assert inst.max() == 1 and (inst == 1).sum() == 36


def test_multi_class_instances_take_the_majority_class() -> None:
    truth = two_touching_discs()
    cls = np.zeros((2, *truth.shape), np.float32)  # classes 1 and 2 (model indices)
    cls[0, truth == 1] = BIG  # disc 1 is class 1 ...
    cls[1, truth == 2] = BIG  # ... disc 2 class 2, except a minority patch inside it:
    cls[:, 20:26, 38:42] = np.array([BIG, 0])[:, None, None]
    logits = np.concatenate([three_class_logits(truth), cls])
    assert output_channels("three_class", 3) == 5
    inst, classes = decode(logits, "three_class", 3, default_decoding("three_class"))
    at = {int(inst[24, 16]): 1, int(inst[24, 44]): 2}
    assert classes == at
    assert majority_classes(np.zeros((4, 4), np.uint32), np.ones((4, 4), int)) == {}


def test_decoding_parameters_are_validated() -> None:
    c = Contract.parse({**contract(kind="three_class"), "decoding": {"seed_threshold": 0.4}}, "m")
    assert c.decoding["seed_threshold"] == 0.4 and c.decoding["seed_erosion"] == 2
    assert (
        c.channels_out == 3
        and Contract.parse(contract(3, 3, kind="distance"), "m").channels_out == 5
    )
    with pytest.raises(ApplianceError, match=r"decoding\.sigma"):
        Contract.parse({**contract(kind="distance"), "decoding": {"sigma": 2}}, "m")
    with pytest.raises(ApplianceError, match="threshold"):
        Contract.parse({**contract(kind="distance"), "decoding": {"threshold": 1.5}}, "m")
    with pytest.raises(ApplianceError, match="boundary_channel"):
        Contract.parse({**contract(), "boundary_channel": True}, "m")
    with pytest.raises(ApplianceError, match="output_kind"):
        Contract.parse(contract(kind="watershed"), "m")


def test_contract_decodes_instance_kinds_and_maps_classes() -> None:
    c = Contract.parse({**contract(classes=3, kind="distance"), "decoding": {"min_area": 5}}, "m")
    truth = two_touching_discs()
    cls = np.zeros((2, *truth.shape), np.float32)
    cls[1] = BIG  # every pixel says model class 2
    logits = np.concatenate([distance_logits(truth), cls])
    probs = probabilities(logits, c)
    assert probs.shape == (3, *truth.shape)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    label = decode_label(logits, probs, c, lut=np.array([0, 7, 9], np.uint16))
    assert len(label.ids()) == 2 and set(label.classes.values()) == {9}


def test_boundary_channel_carries_coarse_instances() -> None:
    c = Contract.parse({**contract(mask=True), "boundary_channel": True}, "m")
    assert c.channels_in == 3
    coarse = two_touching_discs()
    x = model_input(np.zeros(coarse.shape, np.uint16), c, coarse)
    assert x.shape == (3, *coarse.shape)
    assert np.array_equal(x[1] > 0, coarse > 0)
    assert x[2, 24, 29:31].all()  # the line where the two coarse cells touch
    one_blob = model_input(np.zeros(coarse.shape, np.uint16), c, (coarse > 0).astype(np.uint32))
    assert not one_blob[2, 24, 29:31].any()


def test_a_cell_across_a_tile_border_stays_one(tmp_path: Path) -> None:
    """Tiles of 64 with 16-pixel margins: kept regions meet at x = 48; a disc sits on it."""
    w = np.zeros((3, 1, 1, 1), np.float32)
    w[:, 0, 0, 0] = [-20.0, 20.0, 0.0]  # background dark, interior bright, boundary never
    path = conv_model(tmp_path / "m.onnx", w, np.array([10.0, -10.0, -50.0]))
    c = Contract.parse(contract(kind="three_class"), "m")
    model = InferenceModel(path, c)
    yy, xx = np.mgrid[:96, :96]
    image = np.where((yy - 30) ** 2 + (xx - 48) ** 2 <= 14**2, 40000, 500).astype(np.uint16)
    tiled = model.predict(image, max_pixels=64 * 64, tile=64, margin=16).label
    single = model.predict(image).label
    assert len(tiled.ids()) == 1 and len(single.ids()) == 1
    assert np.array_equal(tiled.instances > 0, single.instances > 0)


def test_otsu_splits_touching_cells_by_distance_transform() -> None:
    truth = two_touching_discs()
    image = np.where(truth > 0, 30000, 1000).astype(np.uint16)
    assert len(otsu(image).ids()) == 2
    assert len(otsu(image, split=False).ids()) == 1


def test_inspection_names_a_blob_the_model_sees_as_two_cells() -> None:
    from appliance.assist.inspection import merged_cells, model_agreement
    from appliance.labels import Label

    truth = two_touching_discs()
    blob = Label((truth > 0).astype(np.uint32), {1: 1})
    cells = Label(truth, {1: 1, 2: 1})
    assert merged_cells(blob, cells) == {1: 2}
    score, warning = model_agreement(blob, cells)
    assert score == 0.0 and warning is not None
    assert [o.id for o in warning.objects] == [1] and "several touching cells" in warning.message
    assert model_agreement(cells, cells) == (1.0, None)


def test_upgrade_returns_separate_cells_for_a_coarse_blob(tmp_path: Path) -> None:
    """Image, coarse foreground and coarse edges in; the image's dark seam splits the blob."""
    from appliance.assist.upgrade import upgrade
    from appliance.labels import Label

    w = np.zeros((3, 3, 1, 1), np.float32)
    w[0, :, 0, 0] = [0.0, -20.0, 0.0]  # background: outside the coarse mask
    w[1, :, 0, 0] = [30.0, 0.0, -30.0]  # interior: bright, not on a coarse edge
    path = conv_model(tmp_path / "u.onnx", w, np.array([10.0, -15.0, 0.0]))
    raw = {**contract(mask=True, kind="three_class"), "boundary_channel": True}
    model = InferenceModel(path, Contract.parse(raw, "u"))
    truth = two_touching_discs()
    image = np.where(truth > 0, 40000, 500).astype(np.uint16)
    image[:, 29:31] = np.where(truth[:, 29:31] > 0, 8000, 500)  # the seam between the cells
    blob = Label((truth > 0).astype(np.uint32), {1: 2})
    refined = upgrade(model, image, blob)
    assert len(refined.ids()) == 2 and set(refined.classes.values()) == {2}  # class kept
    assert len(upgrade(model, image, Label(truth, {1: 1, 2: 1})).ids()) == 2
