"""Upgrade u(x, y~): refined instances, inherited classes, versions, --all / --only-coarse."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.assist import upgrade
from appliance.assist.runtime import active_model
from appliance.errors import ApplianceError
from appliance.labels import Label


def coarse(shape=(32, 32)) -> Label:
    inst = np.zeros(shape, np.uint32)
    inst[5:10, 5:10] = 1  # a quick scribble inside cell 1
    inst[20:24, 18:20] = 2
    return Label(inst, {1: 1, 2: 2})


def test_upgrade_refines_and_keeps_classes(with_models) -> None:
    model = active_model(with_models, "upgrade")
    img = with_models.load_pixels(with_models.images()[0].id)
    out = upgrade.upgrade(model, img, coarse())
    assert out.binary().sum() == 7 * 7 + 6 * 4  # each scribble grown by one pixel
    by_class = sorted(out.class_of(i) for i in out.ids())
    assert by_class == [1, 2]


def test_upgrade_needs_an_upgrade_model(with_models) -> None:
    seg = active_model(with_models, "prelabel")
    with pytest.raises(ApplianceError, match="not an upgrade model"):
        upgrade.upgrade(seg, np.zeros((32, 32)), coarse())
    model = active_model(with_models, "upgrade")
    with pytest.raises(ApplianceError, match="does not match"):
        upgrade.upgrade(model, np.zeros((16, 16)), coarse())


def test_inherit_classes_majority_and_default() -> None:
    refined = Label(np.array([[1, 1, 2, 0]], np.uint32), {})
    c = Label(np.array([[5, 6, 0, 0]], np.uint32), {5: 3, 6: 3})
    out = upgrade.inherit_classes(refined, c)
    assert out.classes == {1: 3, 2: 1}
    assert upgrade.inherit_classes(Label.empty((2, 2)), c).ids().size == 0


def test_upgrade_image_stores_child_version(with_models) -> None:
    p = with_models
    image_id = p.images()[0].id
    with pytest.raises(ApplianceError, match="no label to upgrade"):
        upgrade.upgrade_image(p, image_id)
    parent = p.save_label(image_id, coarse(), author="ann", source="manual", coarse=True)
    vid = upgrade.upgrade_image(p, image_id)
    v = p.label_version(vid)
    assert v.source == "upgrade" and v.parent_id == parent


def test_upgrade_all_only_coarse_and_idempotent(with_models) -> None:
    p = with_models
    a, b, c, _d = (r.id for r in p.images())
    p.save_label(a, coarse(), author="ann", source="manual")
    p.save_label(b, coarse(), author="pl", source="prelabel")
    p.save_label(c, coarse(), author="ann", source="manual", coarse=True)
    assert len(upgrade.candidates(p, only_coarse=True)) == 2
    assert len(upgrade.upgrade_all(p, only_coarse=True)) == 2
    assert [p.latest_label(i).source for i in (a, b, c)] == ["manual", "upgrade", "upgrade"]
    assert len(upgrade.upgrade_all(p)) == 1  # only a is left; upgrades are not redone
    assert upgrade.upgrade_all(p) == []


def test_no_upgrade_model_installed(seq_project) -> None:
    with pytest.raises(ApplianceError, match="no active upgrade model"):
        upgrade.upgrade_all(seq_project)
