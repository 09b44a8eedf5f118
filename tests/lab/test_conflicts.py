"""Conflicts stay open until an expert picks or merges: on every tablet and on the lab page."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store.conflicts import conflict_heads, conflicted_image_ids
from appliance.sync.client import sync_project
from tests.lab.conftest import label_for, tablet, write_images


def shared_work(tmp_path: Path, lab):
    """Tablets A and B label the same image concurrently; everyone synced."""
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    files = write_images(tmp_path / "shared", 2, seed=9)
    for seed, t in enumerate((a, b)):
        import_paths(t, files)
        img = t.find_image(files[0].name)
        t.save_label(img.id, label_for(t, img.id, seed), author=f"x{seed}", source="manual")
    for t in (a, b, a):
        sync_project(t)
    return a, b, files[0].name


def lab_page(lab) -> str:
    """The lab page's HTML (its conflicts table names each image by its first 16 hex)."""
    from export.lab.page import render_page

    return render_page(lab.store.overview(), lab.store.devices())


def test_a_save_does_not_close_a_conflict_but_a_merge_does(tmp_path: Path, lab) -> None:
    a, b, name = shared_work(tmp_path, lab)
    ia, ib = a.find_image(name).id, b.find_image(name).id
    for t, image_id in ((a, ia), (b, ib)):
        assert conflicted_image_ids(t) == {image_id}
        assert len(conflict_heads(t, image_id)) == 2
    assert len(lab.store.conflicts(1)) == 1
    sha = a.find_image(name).sha256
    assert sha[:16] in lab_page(lab)
    # A saves on top of the version it shows (B's, the newest): still a conflict everywhere
    shown = a.latest_label(ia)
    a.save_label(ia, label_for(a, ia, 7), author="x0", source="manual", parent_id=shown.id)
    for t in (a, b, a):
        sync_project(t)
    assert conflicted_image_ids(a) == {ia} and conflicted_image_ids(b) == {ib}
    assert len(lab.store.conflicts(1)) == 1 and sha[:16] in lab_page(lab)
    # the expert on B picks one head and closes the others
    heads = conflict_heads(b, ib)
    keep, others = heads[0], [h.id for h in heads[1:]]
    b.save_label(ib, keep.label, author="expert", source="manual", parent_id=keep.id, merges=others)
    for t in (b, a):
        sync_project(t)
    assert conflicted_image_ids(a) == set() and conflicted_image_ids(b) == set()
    assert lab.store.conflicts(1) == [] and sha[:16] not in lab_page(lab)


def test_one_tablets_own_versions_are_never_a_conflict(tmp_path: Path, lab) -> None:
    """A pre-label beside a manual version on one tablet is two heads but one device."""
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    import_paths(a, write_images(tmp_path / "i", 1, seed=3))
    rec = a.images()[0]
    a.save_label(rec.id, label_for(a, rec.id, 1), author="x", source="manual")
    a.save_label(rec.id, label_for(a, rec.id, 2), author="prelabel:otsu", source="prelabel")
    sync_project(a)
    assert conflicted_image_ids(a) == set() and lab.store.conflicts(1) == []


def test_a_label_import_records_its_parent(tmp_path: Path) -> None:
    import cv2

    from appliance.label_io import import_labels
    from appliance.store import Project

    p = Project.create(tmp_path / "p", ["nucleus"])
    (path,) = write_images(tmp_path / "i", 1, seed=4)
    import_paths(p, [path])
    rec = p.images()[0]
    first = p.save_label(rec.id, label_for(p, rec.id, 1), author="x", source="manual")
    mask = np.zeros((rec.height, rec.width), np.uint8)
    mask[1:6, 1:6] = 255
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / path.name), mask)
    import_labels(p, tmp_path / "masks", author="lab", replace=True)
    newest = p.latest_label(rec.id)
    assert newest.source == "import" and newest.parent_id == first
    assert isinstance(newest.label, Label)
    p.close()


def test_the_annotate_flow_shows_the_conflict_until_the_expert_merges(tmp_path: Path, lab):
    """Kivy-free: the presenter of tablet A marks the conflict, a Save & next keeps it open,
    'Save as the merge' closes it on A, on B and on the lab page."""
    from appliance import settings
    from appliance.session import gallery_data
    from appliance.session.presenter import AnnotatePresenter
    from tests.ui.test_presenter import Jobs, View

    a, b, name = shared_work(tmp_path, lab)
    image_id = a.find_image(name).id
    assert [i.conflict for i in gallery_data.items(a, "expert") if i.image_id == image_id] == [True]
    settings.PRELABEL.set(a, "none")
    jobs, view = Jobs(), View()
    try:
        presenter = AnnotatePresenter(a, "expert", view, jobs)
        presenter.start()
        jobs.settle(lambda: presenter.work is not None)
        presenter.jump(image_id)
        jobs.settle(lambda: presenter.work is not None and presenter.work.image_id == image_id)
        assert presenter.status().conflict == 2
        work = presenter.work
        work.session.begin_stroke(3.0, 3.0, 2.0)
        work.session.end_stroke()
        presenter.stroke_done()
        presenter.save_and_next()  # an ordinary save: builds on the shown version only
        jobs.settle()
        assert conflicted_image_ids(a) == {image_id}
        presenter.jump(image_id)
        jobs.settle(lambda: presenter.work is not None and presenter.work.image_id == image_id)
        assert presenter.status().conflict == 2  # the earlier version of A and A's new one
        presenter.resolve_conflict()
        assert presenter.status().conflict == 0 and conflicted_image_ids(a) == set()
        assert any("Conflict closed" in text for text, _ in view.messages)
    finally:
        jobs.runner.shutdown()
    for t in (a, b):
        sync_project(t)
    assert conflicted_image_ids(b) == set() and lab.store.conflicts(1) == []
