"""Serving controls: the rate holds at every point of a session, never two in a row, each
annotator sees a control once; k labels per image; blind starts."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store import Project
from appliance.store.controls import add_control
from appliance.supervision import config
from appliance.supervision.blind import start_version
from appliance.supervision.serving import Queue


@pytest.fixture
def served_project(tmp_path: Path) -> tuple[Project, set[int]]:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(66):
        tifffile.imwrite(folder / f"img_{i:03d}.tif", rng.integers(0, 255, (8, 8), np.uint8))
    project = Project.create(tmp_path / "proj", ["nucleus"])
    ids = import_paths(project, [folder]).imported
    controls = set(ids[-6:])  # the last imported: served no earlier for that
    truth = Label(np.eye(8, dtype=np.uint32), {1: 1})
    with project.transaction():
        for image_id in controls:
            add_control(project, image_id, "gold", truth)
    yield project, controls
    project.close()


def _session(project: Project, name: str, controls: set[int], seed: int) -> list[bool]:
    queue = Queue(project, name, seed=seed)
    kinds = []
    while (image_id := queue.next()) is not None:
        kinds.append(image_id in controls)
        queue.done(image_id)
    return kinds


@pytest.mark.parametrize("seed", range(3))
def test_default_rate_is_held_at_every_point(
    served_project: tuple[Project, set[int]], seed: int
) -> None:
    project, controls = served_project
    kinds = _session(project, f"ann{seed}", controls, seed)
    assert len(kinds) - sum(kinds) == 60  # every ordinary image once
    assert not any(a and b for a, b in pairwise(kinds))
    for n in range(1, len(kinds) + 1):
        assert sum(kinds[:n]) <= 0.05 * n + 1e-9
    assert kinds.index(True) >= 19  # the first control comes no earlier than the 20th item
    assert 2 <= sum(kinds) <= 3  # about 5 % of 60, with some spread


def test_each_annotator_sees_each_control_once_and_k_labels_per_image(
    served_project: tuple[Project, set[int]],
) -> None:
    project, controls = served_project
    config.save(project, config.Supervision(rate=0.5, k=2))
    first = Queue(project, "a", seed=0)
    seen = []
    while (image_id := first.next()) is not None:
        seen.append(image_id)
        first.done(image_id)
    assert controls <= set(seen) and len(seen) == len(set(seen)) == 66
    with project.transaction():  # a labels everything (one transaction keeps the test fast)
        for image_id in seen:
            project.db.execute(
                "INSERT INTO labels (uid, image_id, author, source, created, n_instances, "
                "instances, classes) VALUES (?, ?, 'a', 'manual', '2026-01-01', 0, x'00', '{}')",
                (f"u{image_id}", image_id),
            )
    assert Queue(project, "a", seed=1).next() is None  # nothing left for a
    second = Queue(project, "b", seed=1)
    got = second.next()
    assert got is not None  # k = 2: b still gets a's images
    project.save_label(got, Label.empty((8, 8)), author="b", source="manual")
    third = Queue(project, "c", seed=2)
    assert all(third.next(exclude={got}) != got for _ in range(3))


def test_blind_start_never_shows_another_annotators_label(
    served_project: tuple[Project, set[int]],
) -> None:
    project, controls = served_project
    ordinary = next(r.id for r in project.images() if r.id not in controls)
    control = min(controls)
    pre = project.save_label(
        ordinary, Label.empty((8, 8)), author="prelabel:otsu", source="prelabel"
    )
    mine = project.save_label(ordinary, Label.empty((8, 8)), author="a", source="manual")
    project.save_label(control, Label.empty((8, 8)), author="a", source="manual")
    # outside blind mode an ordinary image starts from the newest label, as before ...
    assert start_version(project, ordinary, "b").id == mine
    # ... a control always starts blind, from its pre-label or empty
    assert start_version(project, control, "b") is None
    config.save(project, config.Supervision(blind=True))
    assert start_version(project, ordinary, "b").id == pre
    assert start_version(project, ordinary, "a").id == mine  # your own work comes back


def test_a_controls_prelabel_is_offered_where_a_real_one_is(tmp_path: Path) -> None:
    from appliance.assist import prelabel
    from appliance.supervision.controls import add_gold

    folder, masks = tmp_path / "gold", tmp_path / "masks"
    folder.mkdir()
    masks.mkdir()
    truth = np.zeros((40, 40), np.uint16)
    truth[5:15, 5:15], truth[20:32, 22:34], truth[25:35, 3:12] = 1, 2, 3
    image = (truth > 0).astype(np.uint8) * 180 + 20
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(folder / name, image + (name == "b.tif"))
        tifffile.imwrite(masks / name, truth)
    project = Project.create(tmp_path / "proj", ["nucleus", "other"])
    add_gold(project, folder / "a.tif", masks / "a.tif")
    add_gold(project, folder / "b.tif", masks / "b.tif", level="easy", plan={"deleted": 1})
    gold, planted = (r.id for r in project.images())
    otsu = prelabel.otsu(project.load_pixels(gold))
    offered_gold, _ = prelabel.run(project, gold, "otsu", save=False)
    offered_planted, _ = prelabel.run(project, planted, "otsu", save=False)
    assert offered_gold is not None and offered_gold.equals(otsu)
    assert offered_planted is not None and offered_planted.ids().size == 2  # one cell deleted
    # "pre-label all" stores the same offers, as versions of a machine author
    assert prelabel.run_all(project, "otsu") == (2, 0)
    stored = project.latest_label(planted)
    assert stored.author == "prelabel:otsu" and stored.label.equals(offered_planted)
    project.close()


def test_a_rebuilt_queue_keeps_the_sessions_counts(
    served_project: tuple[Project, set[int]],
) -> None:
    project, controls = served_project
    config.save(project, config.Supervision(rate=0.5))
    queue = Queue(project, "a", seed=0)
    kinds = []
    for _ in range(30):
        image_id = queue.next()
        assert image_id is not None
        kinds.append(image_id in controls)
        queue.done(image_id)
        queue = Queue(project, "a", seed=len(kinds), session=queue)  # e.g. settings changed
    assert not any(a and b for a, b in pairwise(kinds))
    assert queue.served == 30 and queue.served_controls == sum(kinds)
    assert Queue(project, "b", session=queue).served == 0  # another annotator starts afresh


def test_peeking_never_changes_the_order(served_project: tuple[Project, set[int]]) -> None:
    project, _ = served_project
    config.save(project, config.Supervision(rate=0.5))
    plain, peeking = Queue(project, "a", seed=7), Queue(project, "a", seed=7)
    for _ in range(20):
        ahead = peeking.peek()
        assert peeking.peek() == ahead
        got = peeking.next()
        assert got == ahead == plain.next()
        plain.done(got)
        peeking.done(got)
