"""Controls stay hidden in the store and the queue (issue 22, defects 2-4): a refused add
changes nothing; controls never come after the ordinary images ran out; one left unsaved
comes back, one saved never does; names, sequences and frames follow the ordinary images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.cli import main
from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store import Project, oplog
from appliance.supervision import config
from appliance.supervision.controls import add_gold
from appliance.supervision.serving import Queue


def _gold(folder: Path, masks: Path, names: list[str], size: int = 12, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    truth = np.zeros((size, size), np.uint16)
    truth[2:6, 2:6] = 1
    for k, name in enumerate(names, start):
        tifffile.imwrite(folder / name, (truth * 200 + k).astype(np.uint8))
        tifffile.imwrite(masks / name, truth)


def _project(tmp_path: Path, n: int, size: int = 12) -> Project:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        tifffile.imwrite(folder / f"img_{i:03d}.tif", rng.integers(0, 255, (size, size), np.uint8))
    project = Project.create(tmp_path / "proj", ["nucleus"])
    import_paths(project, [folder])
    return project


def _state(project: Project) -> tuple:
    q = project.db.execute
    return (
        q("SELECT count(*) FROM images").fetchone()[0],
        q("SELECT count(*) FROM controls").fetchone()[0],
        q("SELECT count(*) FROM operations").fetchone()[0],
        sorted(p.name for p in (project.root / "images").rglob("*") if p.is_file()),
    )


def test_a_refused_controls_add_changes_nothing_and_the_retry_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, 3)
    before = _state(project)
    project.close()
    gold, masks = tmp_path / "gold", tmp_path / "masks"
    _gold(gold, masks, ["g1.tif", "g2.tif", "g3.tif"])
    stack = np.zeros((2, 12, 12), np.uint8)
    tifffile.imwrite(gold / "g2.tif", stack)  # a 2-page TIFF among good files
    root = str(tmp_path / "proj")
    capsys.readouterr()
    assert main(["controls", "add", root, "--gold", str(gold), "--labels", str(masks)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "g2.tif" in err and "2 frames" in err
    with Project.open(root) as project:
        assert _state(project) == before  # no image, control, operation or file added
    _gold(gold, masks, ["g2.tif"], start=1)  # fixed
    assert main(["controls", "add", root, "--gold", str(gold), "--labels", str(masks)]) == 0
    with Project.open(root) as project:
        assert len(project.control_image_ids()) == 3
        assert len(project.images()) == 6


def test_a_control_is_never_served_after_the_ordinary_images_ran_out(tmp_path: Path) -> None:
    project = _project(tmp_path, 3)
    _gold(tmp_path / "gold", tmp_path / "masks", ["g1.tif", "g2.tif", "g3.tif"])
    add_gold(project, tmp_path / "gold", tmp_path / "masks")
    config.save(project, config.Supervision(rate=0.5))
    controls = project.control_image_ids()
    for seed in range(60):  # before the fix about one session in five ended with a control
        queue = Queue(project, f"ann{seed}", seed=seed)
        kinds = []
        while (image_id := queue.next()) is not None:
            kinds.append(image_id in controls)
            queue.done(image_id)
        assert kinds.count(False) == 3
        assert not kinds[-1], f"seed {seed}: {kinds}"
    project.close()


def test_a_control_left_unsaved_comes_back_and_a_saved_one_never(tmp_path: Path) -> None:
    project = _project(tmp_path, 8)
    _gold(tmp_path / "gold", tmp_path / "masks", ["g1.tif"])
    add_gold(project, tmp_path / "gold", tmp_path / "masks")
    (control,) = project.control_image_ids()
    config.save(project, config.Supervision(rate=0.5))
    queue = Queue(project, "a", seed=1)
    served = []
    while (image_id := queue.next()) is not None:
        served.append(image_id)
        if image_id == control and served.count(control) == 1:
            continue  # left via Previous / Gallery without saving
        queue.done(image_id)
    assert served.count(control) == 2  # it came back, like an unsaved ordinary image
    # saved once, it never comes back, in this queue or a rebuilt one (Settings)
    project.save_label(control, Label.empty((12, 12)), author="a", source="manual")
    again = Queue(project, "a", seed=2)
    left = []
    while (image_id := again.next()) is not None:
        left.append(image_id)
        again.done(image_id)
    assert control not in left
    project.close()


def test_controls_join_ordinary_sequences_with_their_naming(tmp_path: Path) -> None:
    project = _project(tmp_path, 4)
    _gold(tmp_path / "gold", tmp_path / "masks", ["img_001.tif", "secret_gold.tif"])
    ordinary = {r.id: r for r in project.images()}
    add_gold(project, tmp_path / "gold", tmp_path / "masks")
    controls = [project.image(i) for i in sorted(project.control_image_ids())]
    (sequence,) = {r.sequence for r in ordinary.values()}
    assert [(c.sequence, c.frame) for c in controls] == [(sequence, 4), (sequence, 5)]
    assert [c.name for c in controls] == ["img_004.tif", "img_005.tif"]
    names = [r.name for r in project.images()]
    assert len(names) == len(set(names))  # no control reuses an ordinary image's name
    # the operation log carries the names and places; no gold folder name appears anywhere
    logged = [op.payload for op in oplog.pending(project.db) if op.kind == "image.added"]
    assert "gold" not in repr(sorted((p["name"], p["sequence"]) for p in logged))
    project.close()


@pytest.mark.parametrize("rate, first_slot", [(0.5, 2), (0.05, 20)])
def test_a_flagged_control_is_served_early_as_a_flagged_image_is(
    tmp_path: Path, rate: float, first_slot: int
) -> None:
    project = _project(tmp_path, 30)
    _gold(tmp_path / "gold", tmp_path / "masks", ["g1.tif", "g2.tif", "g3.tif"])
    add_gold(project, tmp_path / "gold", tmp_path / "masks")
    flagged = max(project.control_image_ids())
    project.set_cherry_picked(flagged)  # the annotator flagged it in the gallery
    config.save(project, config.Supervision(rate=rate))
    for seed in range(5):
        queue = Queue(project, f"a{seed}", seed=seed)
        order = []
        while (image_id := queue.next()) is not None and flagged not in order:
            order.append(image_id)
            queue.done(image_id)
        assert order.index(flagged) + 1 == first_slot  # the first place the rate allows
    project.close()


def test_controls_list_warns_when_the_rate_cannot_serve_every_control(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, 6)
    _gold(tmp_path / "gold", tmp_path / "masks", ["g1.tif", "g2.tif", "g3.tif"])
    add_gold(project, tmp_path / "gold", tmp_path / "masks")
    project.close()
    root = str(tmp_path / "proj")
    capsys.readouterr()
    assert main(["controls", "list", root]) == 0  # 5 %: not one of 3 among 6 images
    assert "at most 0 among 6 ordinary images" in capsys.readouterr().err
    assert main(["controls", "config", root, "--rate", "0.5"]) == 0
    capsys.readouterr()
    assert main(["controls", "list", root]) == 0  # 0.5: up to 6 could be served
    assert "note" not in capsys.readouterr().err
