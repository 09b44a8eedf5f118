"""Pre-labelers (Otsu, previous adjacent label, model) and their Dice suitability (eq. 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.assist import prelabel
from appliance.assist.prelabel import best_method, dice, otsu, suitability
from appliance.assist.runtime import InferenceModel
from appliance.errors import ApplianceError
from appliance.importer import import_paths
from appliance.labels import Label

from .onnx_builders import contract, threshold_model


def blobs(dtype: type = np.uint8, bright: bool = True) -> np.ndarray:
    img = np.full((20, 20), 10, dtype)
    img[2:6, 2:6] = 200
    img[10:15, 10:14] = 220
    return img if bright else (230 - img).astype(dtype)


def test_dice_edge_cases() -> None:
    a = np.zeros((3, 3))
    assert dice(a, a) == 1.0  # both empty
    b = a.copy()
    b[0, 0] = 1
    assert dice(a, b) == 0.0
    assert dice(b, b * 7) == 1.0  # instance ids do not matter, foreground does
    c = b.copy()
    c[0, 1] = 2
    assert dice(b, c) == pytest.approx(2 / 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_otsu_bright_objects_become_instances(dtype: type) -> None:
    lab = otsu(blobs(dtype))
    assert len(lab.ids()) == 2 and lab.binary().sum() == 16 + 20
    assert set(lab.classes.values()) == {1}


def test_otsu_polarity() -> None:
    dark = blobs(bright=False)
    assert otsu(dark).binary().sum() == 36  # auto: the minority side
    assert otsu(dark, polarity="dark").binary().sum() == 36
    assert otsu(dark, polarity="bright").binary().sum() == 400 - 36
    with pytest.raises(ApplianceError, match="polarity"):
        otsu(dark, polarity="sideways")


def test_otsu_channel_choice_on_rgb() -> None:
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = blobs()  # red: the blobs
    rgb[..., 2] = np.where(blobs() > 100, 0, 255)  # blue: the inverse (bright background)
    assert otsu(rgb, channel=0).binary().sum() == 36
    assert otsu(rgb, channel=2, polarity="bright").binary().sum() == 400 - 36
    with pytest.raises(ApplianceError, match="channel 5"):
        otsu(rgb, channel=5)


@pytest.mark.parametrize(
    "img", [np.full((5, 5), 9, np.uint16), np.array([[3]], np.uint8), np.zeros((4, 4, 3))]
)
def test_otsu_constant_or_single_pixel_gives_empty_label(img: np.ndarray) -> None:
    lab = otsu(img)
    assert lab.shape == img.shape[:2] and lab.ids().size == 0


def test_best_method_threshold() -> None:
    assert best_method({"otsu": 0.7, "previous": 0.9, "model": None}) == "previous"
    assert best_method({"otsu": 0.2, "previous": None}, threshold=0.5) is None
    assert best_method({}) is None


@pytest.fixture
def sequence_project(project, tmp_path: Path):
    """Four frames of one sequence: a blob drifting right."""
    folder = tmp_path / "seq"
    folder.mkdir()
    for k in range(4):
        img = np.full((24, 24), 20, np.uint8)
        img[8:16, 4 + k : 12 + k] = 200
        tifffile.imwrite(folder / f"f{k}.tif", img)
    summary = import_paths(project, [folder])
    assert not summary.failed
    return project


def test_previous_takes_closest_earlier_labeled_frame(sequence_project) -> None:
    p = sequence_project
    ids = [r.id for r in sorted(p.images(), key=lambda r: r.frame)]
    assert prelabel.previous(p, ids[2]) is None  # nothing labeled yet
    p.save_label(ids[1], otsu(p.load_pixels(ids[1])), author="pl", source="prelabel")
    assert prelabel.previous(p, ids[2]) is None  # an unreviewed pre-label is no label to copy
    truth0 = otsu(p.load_pixels(ids[0]))
    p.save_label(ids[0], truth0, author="ann", source="manual")
    got = prelabel.previous(p, ids[2])
    assert got is not None and got.equals(truth0)
    assert prelabel.previous(p, ids[0]) is None  # first frame has no predecessor


def test_run_saves_prelabel_version(sequence_project) -> None:
    p = sequence_project
    image_id = p.images()[0].id
    label, version = prelabel.run(p, image_id, "otsu")
    assert version is not None and p.latest_label(image_id).source == "prelabel"
    assert label.binary().sum() == 64
    with pytest.raises(ApplianceError, match="no active pre-label model"):
        prelabel.run(p, image_id, "model")
    with pytest.raises(ApplianceError, match="unknown pre-label method"):
        prelabel.run(p, image_id, "magic")


def test_suitability_ranks_prelabelers(sequence_project, tmp_path: Path) -> None:
    p = sequence_project
    recs = sorted(p.images(), key=lambda r: r.frame)
    for r in recs[:3]:  # experts labeled three frames (Otsu-perfect truth)
        p.save_label(r.id, otsu(p.load_pixels(r.id)), author="ann", source="manual")
    p.save_label(recs[3].id, Label.empty((24, 24)), author="x", source="prelabel")  # not truth
    model = InferenceModel(threshold_model(tmp_path / "m.onnx"), contract())
    scores = suitability(p, model=model)
    assert scores["otsu"] == pytest.approx(1.0)
    assert scores["model"] == pytest.approx(1.0)
    assert 0.5 < scores["previous"] < 1.0  # shifted by a pixel per frame; frame 0 has none
    assert suitability(p)["model"] is None  # no model installed: cannot be judged
    assert best_method(scores) in ("otsu", "model")
