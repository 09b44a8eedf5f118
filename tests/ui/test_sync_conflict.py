"""A sync conflict in the real app: the gallery marks it until the expert keeps a version."""

from __future__ import annotations

import numpy as np

from appliance import settings
from appliance.labels import Label
from appliance.store import oplog
from appliance.store.conflicts import conflicted_image_ids
from testkit.touch import tap, wait_for
from tests.lab.crafted import label_op
from tests.ui.projects import make_project


def pulled_version(project, image_id: int, device: int) -> None:
    """Another tablet's version of the image, as a sync would apply it."""
    rec = project.image(image_id)
    inst = np.zeros((rec.height, rec.width), np.uint32)
    inst[4:12, 4:12] = 1
    op = label_op("pulledversion01", rec.sha256, instances=inst) | {"device": device}
    new, refused = oplog.apply_remote(project, [oplog.Operation.from_wire(op)], 1)
    assert (new, refused) == (1, [])


def test_the_gallery_marks_a_conflict_until_a_version_is_kept(fresh, app, tmp_path):
    from kivy.core.window import Window

    from appliance.ui.screens.gallery import HistoryPopup

    project = make_project(tmp_path / "p", n=3, size=64)
    settings.PRELABEL.set(project, "none")
    mine = Label(np.pad(np.ones((6, 6), np.uint32), ((30, 28), (30, 28))), {1: 1})
    own = project.save_label(2, mine, author="me", source="manual")
    pulled_version(project, 2, device=7)
    assert conflicted_image_ids(project) == {2}
    screen = fresh(project.root)
    tap(screen.buttons["gallery"])
    gallery = app.sm.get_screen("gallery")
    tile_texts = [w.text for w in gallery.grid.walk() if hasattr(w, "text")]
    assert any(t.startswith("conflict") for t in tile_texts)
    tap(gallery.buttons["history:2"])
    popup = next(w for w in Window.children if isinstance(w, HistoryPopup))
    heads = sorted(int(k.split(":")[1]) for k in popup.buttons if k.startswith("keep:"))
    assert len(heads) == 2 and own in heads
    tap(popup.buttons[f"keep:{own}"])
    wait_for(lambda: popup not in Window.children)
    assert conflicted_image_ids(project) == set()
    newest = project.latest_label(2)
    assert newest.parent_id == own and newest.label.equals(project.label_version(own).label)
    tile_texts = [w.text for w in gallery.grid.walk() if hasattr(w, "text")]
    assert not any(t.startswith("conflict") for t in tile_texts)
    app.go("annotate")
