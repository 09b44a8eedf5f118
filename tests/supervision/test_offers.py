"""What a control offers, through the app's presenter (issue 22, defects 4 and 6): planted errors
count once shown, accepted or rejected; 'previous' offers on controls as on the frames around
them; planted classes the pre-labeler never produces are not shown (and a flip they hide is
not counted); with the pre-labeler off nothing is offered anywhere and the CLI says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance import settings
from appliance.assist import prelabel
from appliance.cli import main
from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store import Project
from appliance.store.controls import control_for_image, score_rows
from appliance.supervision import config, serving
from appliance.supervision.controls import add_gold
from tests.supervision.harness import open_presenter, save_and_go_on

SIZE = 64  # cells in the top-left 48 pixels: room for a false cell


@pytest.fixture(autouse=True)
def fixed_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app draws its serving order from `secrets`; here it is fixed, control included."""
    monkeypatch.setattr(serving.secrets, "randbits", lambda _bits: 3)


def _truth() -> Label:
    inst = np.zeros((SIZE, SIZE), np.uint32)
    for k, (y, x) in enumerate([(4, 4), (4, 26), (26, 4), (26, 26), (15, 15)]):
        inst[y + 2 : y + 14, x + 2 : x + 14] = k + 1
    return Label(inst, {k: 2 if k % 2 else 1 for k in range(1, 6)})  # nucleus and other


def _image(truth: Label, offset: int) -> np.ndarray:
    return ((truth.instances > 0) * 180 + 20 + offset).astype(np.uint8)


def _project(tmp_path: Path, plan: dict[str, int]) -> Project:
    """Six frames of one sequence, then a planted control that joins it as frame 6."""
    truth = _truth()
    folder, gold, masks = tmp_path / "seq", tmp_path / "gold", tmp_path / "masks"
    for f in (folder, gold, masks):
        f.mkdir()
    for k in range(6):
        tifffile.imwrite(folder / f"f_{k:02d}.tif", _image(truth, k))
    tifffile.imwrite(gold / "secret.tif", _image(truth, 50))
    tifffile.imwrite(masks / "secret.tif", truth.instances.astype(np.uint16))
    project = Project.create(tmp_path / "proj", ["nucleus", "other"])
    first = import_paths(project, [folder]).imported[0]
    # frame 0 was labelled before: 'previous' has a frame to offer from on every later one
    project.save_label(first, truth, author="lab", source="manual")
    add_gold(project, gold, masks, level="easy", plan=plan, seed=1)
    config.save(project, config.Supervision(rate=0.5))
    project.set_setting(prelabel.OTSU_SETTING, {"channel": None, "polarity": "bright"})
    project.set_setting("inspection", {"gamma0": 0.0})
    return project


def _to_control(presenter, jobs) -> None:
    """Save & next through ordinary images (labelled with the truth) until the control opens."""
    project = presenter.project
    (control,) = project.control_image_ids()
    while presenter.work is not None and presenter.work.image_id != control:
        presenter.reject_offer()
        presenter.work.session.replace(_truth())
        save_and_go_on(presenter, jobs)
    assert presenter.work is not None, "the control was never served"


@pytest.mark.parametrize("method", ["otsu", "previous"])
def test_planted_errors_offered_and_rejected_are_counted(tmp_path: Path, method: str) -> None:
    project = _project(tmp_path, {"deleted": 1, "false": 1})
    settings.PRELABEL.set(project, method)
    presenter, jobs = open_presenter(project, "ann")
    _to_control(presenter, jobs)
    control = control_for_image(project, presenter.work.image_id)
    assert presenter.offer is not None and presenter.offer.method == method  # shown
    presenter.reject_offer()  # the annotator rejects it and draws the truth from scratch
    presenter.work.session.replace(control.truth)
    save_and_go_on(presenter, jobs)
    (row,) = score_rows(project, "ann")
    planted = {e["kind"] for e in json.loads(control.errors_json)}
    assert planted == {"deleted", "false"}
    assert row.planted == {"deleted": (1, 1), "false": (1, 1)}  # before: not counted at all
    project.close()


def test_a_planted_class_the_prelabeler_never_produces_is_not_shown_nor_counted(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, {"class_flip": 2})
    settings.PRELABEL.set(project, "otsu")  # Otsu produces class 1 only
    presenter, jobs = open_presenter(project, "ann")
    _to_control(presenter, jobs)
    control = control_for_image(project, presenter.work.image_id)
    assert {control.prelabel.class_of(i) for i in control.prelabel.ids()} == {1, 2}
    offer = presenter.offer
    assert offer is not None and {offer.label.class_of(i) for i in offer.label.ids()} == {1}
    presenter.accept_offer(edit=False)  # lazy: takes it as it is
    jobs.settle()
    (row,) = score_rows(project, "ann")
    # only the flip Otsu's single class still shows (a class-2 cell offered as 1) counts
    truth = control.truth
    errors = json.loads(control.errors_json)
    shown = [e for e in errors if truth.class_of(e["truth_ids"][0]) != 1]
    assert row.planted.get("class_flip", (0, 0)) == (0, len(shown))
    project.close()


def test_with_the_prelabeler_off_nothing_is_offered_and_the_cli_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, {"deleted": 1})
    settings.PRELABEL.set(project, "none")
    presenter, jobs = open_presenter(project, "ann")
    offers = []
    while presenter.work is not None and not presenter.all_done:
        offers.append(presenter.offer)
        presenter.work.session.replace(_truth())
        save_and_go_on(presenter, jobs)
    assert len(offers) == 6 and offers == [None] * 6  # the control among them, like the rest
    (row,) = score_rows(project, "ann")
    assert row.planted == {}  # never shown, never counted
    project.close()
    capsys.readouterr()
    assert main(["controls", "list", str(tmp_path / "proj")]) == 0
    assert "no planted error is ever shown" in capsys.readouterr().err
    assert main(["scores", str(tmp_path / "proj")]) == 0
    assert "no planted error is ever shown" in capsys.readouterr().err


@pytest.mark.parametrize("via", ["settings", "gallery"])
def test_a_control_left_via_settings_or_gallery_comes_back_once_and_empty(
    tmp_path: Path, via: str
) -> None:
    project = _project(tmp_path, {"deleted": 1})
    settings.PRELABEL.set(project, "otsu")
    presenter, jobs = open_presenter(project, "ann")
    _to_control(presenter, jobs)
    control = presenter.work.image_id
    if via == "settings":  # a visit to Settings keeps the image; the queue is rebuilt
        presenter.resume()
        presenter.work.session.replace(control_for_image(project, control).truth)
        save_and_go_on(presenter, jobs)
    else:  # Gallery: open another image, the control stays unsaved
        other = next(r.id for r in project.images() if r.id != control and r.frame == 0)
        presenter.jump(other)
        jobs.settle()
    opened = []
    while presenter.work is not None and not presenter.all_done:
        opened.append((presenter.work.image_id, presenter.work.parent_id is not None))
        presenter.work.session.replace(_truth())
        save_and_go_on(presenter, jobs)
    again = [prefilled for image_id, prefilled in opened if image_id == control]
    assert again == ([] if via == "settings" else [False])  # saved: never; left: once, empty
    assert len(score_rows(project, "ann")) == 1  # scored once
    project.close()
