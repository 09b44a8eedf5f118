"""The tablet's detector decode: hand-made heatmaps become the point and box objects they draw,
and a detector model whose graph or contract does not fit is refused at install in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.assist.contract import decode_label, probabilities
from appliance.assist.detection import box_nms, decode_objects, find_peaks
from appliance.bundles.archive import BundleError
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.contract import Contract, ContractError
from appliance.labels import Box, Point
from tests.bundles.onnx_models import conv_model

CLASSES = ("background", "neutrophil", "macrophage")


def gaussian(h: int, w: int, cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def heatmap(h: int = 64, w: int = 80) -> np.ndarray:
    """Three cells: two of class 1 (one weak), one of class 2; sizes 10×6 and 20×16."""
    heat = np.zeros((2, h, w), np.float32)
    heat[0] = np.maximum(gaussian(h, w, 10, 12, 2.0), 0.6 * gaussian(h, w, 40, 60, 2.0))
    heat[1] = 0.9 * gaussian(h, w, 30, 25, 3.0)
    size = np.zeros((2, h, w), np.float32)
    size[0], size[1] = np.log(10.0), np.log(6.0)
    size[:, 25:36, 20:31] = np.log([[[20.0]], [[16.0]]])
    return np.concatenate([logit(heat), size])


def decoding(**change: object) -> dict:
    base = Contract("image", "logits", 3, "centres", CLASSES).decoding
    return {**base, **change}


def test_peaks_of_a_hand_made_heatmap_are_the_cells_as_points() -> None:
    found = decode_objects(heatmap(), 3, decoding())
    assert found == [Point(12.5, 10.5, 1), Point(25.5, 30.5, 2), Point(60.5, 40.5, 1)]
    # the threshold drops the weak cell (peak 0.6)
    assert decode_objects(heatmap(), 3, decoding(threshold=0.7)) == found[:2]
    assert decode_objects(heatmap(), 3, decoding(max_objects=1)) == found[:1]


def test_boxes_take_the_size_read_at_their_peak() -> None:
    found = decode_objects(heatmap(), 3, decoding(boxes=True))
    assert all(isinstance(o, Box) for o in found) and len(found) == 3
    assert [o.class_id for o in found] == [1, 2, 1]
    assert found[0].bounds() == pytest.approx((12.5 - 5, 10.5 - 3, 12.5 + 5, 10.5 + 3), abs=1e-4)
    assert found[1].bounds() == pytest.approx((25.5 - 10, 30.5 - 8, 25.5 + 10, 30.5 + 8), abs=1e-4)


def test_one_cell_gives_one_peak_whatever_the_class_and_a_flat_top() -> None:
    score = np.zeros((2, 20, 20), np.float32)
    score[0, 5:8, 5:8] = 0.8  # a flat top: nine equal maxima
    score[1, 6, 6] = 0.7  # another class under the same cell, weaker
    peaks = find_peaks(score, 0.3, 2, 100)
    assert len(peaks) == 1 and peaks[0][2:] == (1, pytest.approx(0.8))
    # beyond the radius two peaks are two cells
    score[1, 15, 15] = 0.9
    assert [p[2] for p in find_peaks(score, 0.3, 2, 100)] == [2, 1]


def test_box_nms_keeps_the_stronger_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert box_nms(boxes, np.array([0.5, 0.9, 0.4]), 0.5) == [1, 2]
    assert box_nms(boxes, np.array([0.5, 0.9, 0.4]), 0.9) == [1, 0, 2]


def test_the_contract_decodes_a_detector_output_into_objects_of_project_classes() -> None:
    contract = Contract("image", "logits", 3, "centres", CLASSES)
    x = heatmap()
    probs = probabilities(x, contract)
    assert probs.shape == (3, 64, 80)
    assert np.allclose(probs[0], 1 - probs[1:].max(axis=0))
    lut = np.array([0, 7, 3], np.uint16)  # model class index -> project class id
    label = decode_label(x, probs, contract, lut)
    assert label.ids().size == 0 and label.shape == (64, 80)
    assert [o.class_id for o in label.objects] == [7, 3, 7]


def test_a_detector_contract_is_checked_against_its_role_in_one_line(tmp_path: Path) -> None:
    contract = Contract("image", "logits", 1, "centres", CLASSES)
    assert contract.channels_out == 4  # two heatmaps, log width, log height
    with pytest.raises(ContractError, match="serves detector, not role 'prelabel'"):
        contract.validate(role="prelabel")
    with pytest.raises(ContractError, match="a detector model gets no mask channel"):
        Contract("image", "logits", 1, "centres", CLASSES, mask_channel=True).validate(
            role="detector"
        )
    # a graph with 3 output channels where the contract implies 4: refused, one line
    onnx_path = conv_model(tmp_path / "m.onnx", channels=1, classes=3)
    with pytest.raises(BundleError) as caught:
        write_model_bundle(tmp_path / "b.zip", [ModelSpec("detector", "d", onnx_path, contract)])
    text = str(caught.value)
    assert "graph output has 3 channels, the contract implies 4" in text and "\n" not in text
    assert not (tmp_path / "b.zip").exists()
    # a file that is no ONNX graph at all
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(BundleError) as caught:
        write_model_bundle(tmp_path / "c.zip", [ModelSpec("detector", "d", junk, contract)])
    assert "\n" not in str(caught.value)
