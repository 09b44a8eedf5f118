"""Selector features on awkward images, and the uncertainty cache filled by the model."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.assist import features, uncertainty
from appliance.assist.jobs import Cancelled
from appliance.assist.runtime import active_model
from appliance.assist.selector import from_project
from appliance.errors import ApplianceError


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((1, 1), np.uint8),
        np.full((7, 3), 60000, np.uint16),
        (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8),
        np.random.default_rng(1).random((9, 9)).astype(np.float32),
    ],
    ids=["pixel", "constant16", "rgb", "float"],
)
def test_features_shape_and_range(img: np.ndarray) -> None:
    f = features.image_features(img)
    assert f.shape == (features.DIM,) and f.dtype == np.float32
    assert f.min() >= 0 and f.max() <= 1


def test_features_ignore_bit_depth_but_see_layout() -> None:
    img8 = np.zeros((64, 64), np.uint8)
    img8[:32] = 200
    img16 = img8.astype(np.uint16) * 257
    assert np.allclose(features.image_features(img8), features.image_features(img16))
    flipped = features.image_features(img8[::-1])
    assert np.sqrt(np.mean((flipped - features.image_features(img8)) ** 2)) > 0.5


def test_empty_image_is_error() -> None:
    with pytest.raises(ApplianceError, match="empty image"):
        features.image_features(np.zeros((0, 5)))


def test_feature_update_is_cancel_safe(seq_project) -> None:
    calls = []

    def stop_after_first() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        features.update(seq_project, check=stop_after_first, batch=2)
    assert len(features.missing(seq_project)) == 2  # the first batch was committed
    assert features.update(seq_project) == 2


def test_uncertainty_cached_per_model_and_used_by_selector(with_models) -> None:
    p = with_models
    model = active_model(p, "prelabel")
    seen = []
    assert uncertainty.update(p, model, progress=seen.append) == 4
    assert seen[-1] == 1.0
    rows = p.db.execute("SELECT model_id, value FROM uncertainty").fetchall()
    assert len(rows) == 4 and {r[0] for r in rows} == {model.model_id}
    assert all(0 <= r[1] <= 1 for r in rows)
    assert uncertainty.update(p, model) == 0  # cached
    p.set_setting("selector.weights", {"uncertainty": 1})
    sel = from_project(p)  # the active pre-label model's scores by default
    assert set(sel.weights) == {"uncertainty"} and len(sel.next(4)) == 4
    assert set(from_project(p, "another-model").weights) == {"sequential"}
