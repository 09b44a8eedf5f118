"""One typed reading of stored JSON (`appliance.typed`) for every hand-written validator.

Supervision settings used to run `bool()` over stored values, so a stored "false" (hand-edited,
or written by another tool) switched blind starts, the high-score view and feedback ON.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import settings
from appliance.assist.inspection import InspectionSettings
from appliance.assist.preprocess import Preprocessing
from appliance.contract import ContractError
from appliance.contract.common import typed
from appliance.errors import ApplianceError
from appliance.media import ImageSource
from appliance.store import Project
from appliance.supervision import config
from appliance.typed import problem


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Project.create(tmp_path / "p", ["cell"]) as p:
        yield p


@pytest.mark.parametrize("field", ["blind", "highscore", "feedback"])
def test_a_stored_false_string_is_refused_not_read_as_true(project: Project, field: str) -> None:
    project.set_setting(config.SETTINGS_KEY, {field: "false"})
    with pytest.raises(ApplianceError, match=f"supervision settings: {field} must be true or"):
        config.load(project)


def test_supervision_settings_round_trip_and_refuse_nonsense(project: Project) -> None:
    cfg = config.Supervision(rate=0.1, k=2, blind=True, highscore=False, feedback=True)
    config.save(project, cfg)
    assert config.load(project) == cfg
    for bad, words in (
        ({"k": "2"}, "k must be an integer"),
        ({"k": 2.5}, "k must be an integer"),
        ({"rate": True}, "rate must be a number"),
        ({"rate": 0.9}, "control rate must be in"),
        ({"blind": 1}, "blind must be true or false"),
        ({"blinde": True}, "unknown field 'blinde'"),
    ):
        project.set_setting(config.SETTINGS_KEY, bad)
        with pytest.raises(ApplianceError, match=words):
            config.load(project)
    project.set_setting(config.SETTINGS_KEY, {"rate": 0})  # an integer is a number
    assert config.load(project).rate == 0.0


def test_every_validator_reads_types_the_same_way() -> None:
    """Settings, pre-processing, inspection priors, the image source and the contracts."""
    for kind, good, bad in ((bool, True, "true"), (int, 3, 3.0), (float, 3, "3"), (str, "a", 1)):
        assert problem(good, kind) is None and problem(bad, kind) is not None
    assert problem(True, int) is not None and problem(True, float) is not None
    assert problem({"a": 1.5}, dict[str, float]) is None
    assert "holds" in (problem({"a": "x"}, dict[str, float]) or "")
    with pytest.raises(ApplianceError, match="strength must be a number"):
        Preprocessing.from_dict({"strength": "2"})
    with pytest.raises(ApplianceError, match="clahe must be true or false"):
        Preprocessing.from_dict({"clahe": "false"})
    with pytest.raises(ApplianceError, match="weights holds"):
        InspectionSettings.from_dict({"weights": {"holes": "1"}})
    with pytest.raises(ApplianceError, match="min_segments must be an integer"):
        InspectionSettings.from_dict({"min_segments": "1"})
    assert ImageSource.from_json({"kind": "usb", "path": 5, "name": "S"}) is None
    assert ImageSource.from_json({"kind": "folder", "path": "/x"}) == ImageSource("folder", "/x")
    assert ImageSource.from_json({"path": "/x"}) is None
    with pytest.raises(ContractError, match="must be true or false"):
        typed("mask_channel", "false", bool)


def test_the_settings_registry_uses_the_same_types(project: Project) -> None:
    with pytest.raises(ApplianceError, match=r"ui\.finger_draws"):
        settings.FINGER_DRAWS.set(project, "false")
    with pytest.raises(ApplianceError, match=r"ui\.prelabel"):
        settings.PRELABEL.set(project, 5)
    assert settings.BRUSH_SIZE.set(project, 35.0) == 35  # a whole number, as JSON writes it
    with pytest.raises(ApplianceError, match=r"ui\.brush_size"):
        settings.BRUSH_SIZE.set(project, float("inf"))
    project.set_setting("ui.finger_draws", "false")  # a bad stored value reads as the default
    assert settings.FINGER_DRAWS.get(project) is False
