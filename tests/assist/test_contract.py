"""Contract parsing and the array work on both sides of a model."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.assist.contract import (
    class_ids,
    mean_entropy,
    model_input,
    probabilities,
    semantic,
    to_label,
)
from appliance.contract import Contract
from appliance.errors import ApplianceError

from .onnx_builders import raw_contract as contract


def test_parse_accepts_json_text_and_dict() -> None:
    c = Contract.parse(contract(3, 3), "m")
    assert Contract.parse(__import__("json").dumps(contract(3, 3)), "m") == c
    assert c.channels_in == 3 and c.n_classes == 3


@pytest.mark.parametrize(
    "change, words",
    [
        ({"input_channels": 2}, "input_channels"),
        ({"output_kind": "linear"}, "output_kind"),
        ({"classes": ["background"]}, "classes.*at least 2"),
        ({"normalisation": {"method": "zscore"}}, "normalisation.method.*zscore"),
        ({"input_name": None, "output_name": None, "tile_multiple": "x"}, "input_name"),
    ],
)
def test_parse_rejects_bad_contracts_naming_the_source(change: dict, words: str) -> None:
    with pytest.raises(ApplianceError, match=f"model.onnx.*{words}"):
        Contract.parse({**contract(), **change}, "model.onnx")


def test_missing_key_is_one_line_error() -> None:
    raw = contract()
    del raw["output_name"]
    with pytest.raises(ApplianceError, match="output_name"):
        Contract.parse(raw, "m")


def test_model_input_channels_and_mask() -> None:
    grey16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 1] = np.arange(12).reshape(3, 4) * 20
    one = Contract.parse(contract(1), "m")
    three = Contract.parse(contract(3), "m")
    upg = Contract.parse(contract(1, mask=True), "m")
    x = model_input(grey16, one)
    assert x.shape == (1, 3, 4) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert model_input(grey16, three).shape == (3, 3, 4)
    assert model_input(rgb, one).shape == (1, 3, 4)  # luma of a green ramp: still a ramp
    assert np.all(np.diff(model_input(rgb, one)[0].ravel()) >= 0)
    assert model_input(rgb, three).shape == (3, 3, 4)
    mask = np.zeros((3, 4), bool)
    mask[1, 1] = True
    xm = model_input(grey16, upg, mask)
    assert xm.shape == (2, 3, 4) and xm[1].sum() == 1
    with pytest.raises(ApplianceError, match="coarse mask"):
        model_input(grey16, upg)
    with pytest.raises(ApplianceError, match="does not match"):
        model_input(grey16, upg, np.zeros((2, 2)))
    with pytest.raises(ApplianceError, match="neither grey nor RGB"):
        model_input(np.zeros((2, 2, 4)), one)


def test_constant_and_single_pixel_images_normalise_to_zero() -> None:
    c = Contract.parse(contract(1), "m")
    assert np.all(model_input(np.full((5, 5), 7, np.uint8), c) == 0)
    assert model_input(np.array([[3]], np.uint16), c).shape == (1, 1, 1)


def test_probabilities_semantic_and_instances() -> None:
    soft = Contract.parse(contract(1, 3), "m")
    logits = np.zeros((3, 2, 3), np.float32)
    logits[1, 0, 0] = 5  # class 1 top-left
    logits[2, 1, 2] = 5  # class 2 bottom-right
    p = probabilities(logits, soft)
    assert np.allclose(p.sum(axis=0), 1)
    sem = semantic(p, soft)
    assert sem[0, 0] == 1 and sem[1, 2] == 2 and sem.sum() == 3
    lab = to_label(p, soft)
    assert len(lab.ids()) == 2 and sorted(lab.classes.values()) == [1, 2]

    sig = Contract.parse(contract(1, 2, kind="sigmoid"), "m")
    p = probabilities(np.array([[[-3.0, 0.1, 3.0]]], np.float32), sig)
    assert p.shape == (2, 1, 3)
    assert semantic(p, sig).tolist() == [[0, 1, 1]]


def test_class_ids_match_names_and_keep_unknown_indices() -> None:
    c = Contract.parse({**contract(1, 3), "classes": ["background", "debris", "other"]}, "m")
    lut = class_ids(c, {1: "nucleus", 2: "debris"})
    assert lut.tolist() == [0, 2, 2]


def test_mean_entropy_bounds() -> None:
    certain = np.zeros((2, 4, 4), np.float32)
    certain[0] = 1
    assert mean_entropy(certain) == pytest.approx(0, abs=1e-6)
    assert mean_entropy(np.full((3, 4, 4), 1 / 3, np.float32)) == pytest.approx(1, abs=1e-5)
