"""Every setting has one typed definition: defaults, ranges, bad stored values, core readers."""

from __future__ import annotations

import pytest

from appliance import settings
from appliance.assist import inspection, prelabel, preprocess, selector
from appliance.errors import ApplianceError
from appliance.store.project import Project


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "p", ["cell"]) as p:
        yield p


def test_defaults_ranges_and_round_trip(project):
    assert settings.BRUSH_SIZE.get(project) == 20
    assert settings.OPACITY.get(project) == 0.45
    assert settings.BRUSH_SIZE.set(project, 35.0) == 35
    assert project.get_setting("ui.brush_size") == 35
    for bad in (0, 201, 3.5, "big", True):
        with pytest.raises(ApplianceError, match=r"ui\.brush_size"):
            settings.BRUSH_SIZE.set(project, bad)
    assert settings.BRUSH_SIZE.get(project) == 35  # a refused value changes nothing
    with pytest.raises(ApplianceError, match="not one of"):
        settings.PRELABEL.set(project, "magic")
    settings.INFERENCE_THREADS.set(project, None)
    assert settings.INFERENCE_THREADS.get(project) is None


def test_a_bad_stored_value_reads_as_the_default(project):
    project.set_setting("ui.opacity", "opaque")  # written by hand or by an old version
    assert settings.OPACITY.get(project) == 0.45
    project.set_setting("selector.weights", [1, 2])
    assert settings.SELECTOR_WEIGHTS.get(project) == {"random": 1.0, "cherry_pick": 1.0}


def test_dict_defaults_are_not_shared(project):
    weights = settings.SELECTOR_WEIGHTS.get(project)
    weights["random"] = 0.0
    assert settings.SELECTOR_WEIGHTS.get(project)["random"] == 1.0


def test_core_modules_use_the_registered_keys():
    assert settings.PRELABEL.choices == ("auto", *prelabel.METHODS, "none")
    assert settings.SELECTOR_WEIGHTS.key == selector.WEIGHTS_KEY
    assert settings.SELECTOR_WEIGHTS.default == selector.DEFAULT_WEIGHTS
    assert settings.INSPECTION.key == inspection.SETTING_KEY
    assert settings.PREPROCESSING.key == preprocess.SETTING_KEY
    assert settings.OTSU.key == prelabel.OTSU_SETTING
    assert len(settings.BY_KEY) == len(settings.ALL)
