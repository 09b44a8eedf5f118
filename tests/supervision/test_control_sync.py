"""Controls through sync (issue 22, defect 1): a second tablet of the project knows which images
are controls, hides and scores them like the first, and its exports and training jobs never
hold them; a `control.added` operation that no tablet could use is refused by the lab server
and by a tablet."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.label_io import export_coco
from appliance.labels import Label, encode_instances
from appliance.store import Project, oplog, sync_log
from appliance.store.controls import control_for_image
from appliance.supervision.controls import add_gold, score_save
from appliance.supervision.serving import Queue
from appliance.sync.client import sync_project
from appliance.sync.credentials import project_credentials
from appliance.sync.http import LabHttp
from export.lab.serve import LabServer
from tests.lab.conftest import add_work, label_for, make_config, tablet


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    with LabServer(make_config(tmp_path / "lab", None)) as server:
        yield server


def write_gold(folder: Path, masks: Path, n: int, seed: int) -> None:
    """n 16x16 images, each with two bright squares, and their masks (same stem)."""
    folder.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        truth = np.zeros((16, 16), np.uint16)
        truth[2:7, 2:7], truth[9:14, 8:13] = 1, 2
        img = (truth > 0) * 40000 + rng.integers(0, 2000, (16, 16))
        cv2.imwrite(str(folder / f"gold{seed}_{k}.png"), img.astype(np.uint16))
        cv2.imwrite(str(masks / f"gold{seed}_{k}.png"), truth)


def _by_sha(project: Project, ids: set[int]) -> dict[str, tuple]:
    out = {}
    for i in ids:
        r = project.image(i)
        out[r.sha256] = (r.name, r.sequence, r.frame)
    return out


def test_a_second_tablet_hides_scores_and_never_exports_the_controls(
    tmp_path: Path, lab: LabServer
) -> None:
    a = tablet(tmp_path / "a", lab, "P1", "tab-a")
    b = tablet(tmp_path / "b", lab, "P1", "tab-b")
    add_work(a, tmp_path / "ia", 6, 6, seed=1)
    write_gold(tmp_path / "gold", tmp_path / "masks", 3, seed=5)
    add_gold(a, tmp_path / "gold", tmp_path / "masks", level="easy", plan={"deleted": 1})
    sync_project(a)
    sync_project(b)

    controls_a, controls_b = a.control_image_ids(), b.control_image_ids()
    assert len(controls_a) == 3
    # the same images are controls on B, with the same name, sequence and frame as on A
    assert _by_sha(b, controls_b) == _by_sha(a, controls_a)
    for image_id in controls_b:
        mine = control_for_image(b, image_id)
        theirs = next(
            control_for_image(a, i)
            for i in controls_a
            if a.image(i).sha256 == b.image(image_id).sha256
        )
        assert mine.kind == theirs.kind == "planted"
        assert mine.truth.equals(theirs.truth) and mine.prelabel.equals(theirs.prelabel)
        assert mine.errors_json == theirs.errors_json

    # B's queue hides them among the ordinary images; a save on B is scored on B
    queue = Queue(b, "ann-b", seed=0)
    assert not {c.image_id for c in queue.selector.next(100)} & controls_b
    image_id = next(iter(controls_b))
    version = b.save_label(
        image_id, control_for_image(b, image_id).truth, author="ann-b", source="manual"
    )
    result = score_save(b, version)
    assert result is not None and result.dice == 1.0

    # neither tablet's export nor training job holds a control image, label or truth
    control_names = {b.image(i).name for i in controls_b}
    for t, name in ((a, "a"), (b, "b")):
        job = tmp_path / f"job-{name}.zip"
        write_training_job(t, job, include_unlabeled=True)
        with read_training_job(job) as read:
            assert read.items and not {i.name for i in read.items} & control_names
        coco = tmp_path / f"coco-{name}.json"
        export_coco(t, coco)
        doc = json.loads(coco.read_text())
        assert doc["images"] and not {i["file_name"] for i in doc["images"]} & control_names

    # syncing back: A gets B's scored save, B's control stays a control, nothing doubles
    sync_project(b)
    sync_project(a)
    assert len(a.control_image_ids()) == len(b.control_image_ids()) == 3
    assert sorted(oplog.operation_uids(a.db)) == sorted(oplog.operation_uids(b.db))
    a.close()
    b.close()


def test_controls_added_before_they_were_logged_reach_the_second_tablet(
    tmp_path: Path, lab: LabServer
) -> None:
    a = tablet(tmp_path / "a", lab, "P1", "tab-a")
    b = tablet(tmp_path / "b", lab, "P1", "tab-b")
    add_work(a, tmp_path / "ia", 3, 2, seed=1)
    write_gold(tmp_path / "gold", tmp_path / "masks", 2, seed=6)
    add_gold(a, tmp_path / "gold", tmp_path / "masks", level="easy", plan={"deleted": 1})
    with a.transaction():  # as a project from before `control.added` existed
        a.db.execute(
            "DELETE FROM outbox WHERE ref IN "
            "(SELECT uid FROM operations WHERE kind = 'control.added')"
        )
        a.db.execute("DELETE FROM operations WHERE kind = 'control.added'")
    sync_project(a)  # backfills the missing operations first
    sync_project(b)
    assert len(b.control_image_ids()) == 2
    assert sync_log.backfill(a) == 0  # a second backfill adds nothing
    a.close()
    b.close()


def _control_op(ref: str, uid: str = "c" * 32, **change: object) -> dict:
    truth = np.zeros((16, 16), np.uint32)
    truth[2:6, 2:6] = 1
    payload = {
        "image": ref,
        "kind": "gold",
        "truth": base64.b64encode(encode_instances(truth)).decode(),
        "truth_classes": '{"1": 1}',
        "prelabel": None,
        "prelabel_classes": None,
        "errors": [],
        "detail": {},
    }
    payload.update(change)
    ref = str(payload["image"])
    return {"uid": uid, "kind": "control.added", "ref": ref, "payload": payload, "blob": None}


BAD_CONTROLS = {
    "undecodable truth": {"truth": base64.b64encode(b"ALBLjunk").decode()},
    "truth of another size": {
        "truth": base64.b64encode(encode_instances(np.zeros((8, 8), np.uint32))).decode()
    },
    "instance without class": {"truth_classes": "{}"},
    "class zero": {"truth_classes": '{"1": 0}'},
    "unknown kind": {"kind": "secret"},
    "errors without pre-label": {
        "errors": [{"kind": "deleted", "level": "easy", "truth_ids": [1], "prelabel_ids": []}]
    },
    "not base64": {"truth": "%%%"},
    "image nobody added": {"image": "f" * 64 + ":"},
}


def _push(lab: LabServer, t: Project, op: dict) -> int:
    """POST one operation with the tablet's own token, as a misbehaving tablet could."""
    creds = project_credentials(t)
    assert creds is not None
    http = LabHttp(lab.url, creds.token, ca=creds.ca)
    try:
        body = json.dumps({"ops": [op]}).encode()
        path = f"/api/v1/projects/{creds.lab_project}/ops"
        return http.once("POST", path, body, {"Content-Type": "application/json"}).status
    finally:
        http.close()


@pytest.mark.parametrize("case", sorted(BAD_CONTROLS))
def test_a_control_no_tablet_could_use_is_refused_by_server_and_tablet(
    case: str, tmp_path: Path, lab: LabServer
) -> None:
    t = tablet(tmp_path / "t", lab, "P1", "tab")
    add_work(t, tmp_path / "i", 1, 0, seed=3)
    sync_project(t)  # the server knows the image
    rec = t.images()[0]
    ref = oplog.image_ref(rec.sha256, rec.page)
    bad = _control_op(ref, **BAD_CONTROLS[case])
    assert _push(lab, t, bad) == 422  # the server refuses it before numbering
    before = t.status()
    at = int(oplog.get_state(t.db, "checkpoint") or 0)
    new, refused = sync_log.apply_remote(t, [oplog.Operation.from_wire(bad)], at)
    assert (new, len(refused)) == (0, 1)  # a tablet refuses it too (a server that did not)
    assert t.status() == before and not t.control_image_ids()  # nothing applied
    good = _control_op(ref, uid="d" * 32)
    assert _push(lab, t, good) == 200
    sync_project(t)
    assert t.control_image_ids() == {rec.id}
    assert control_for_image(t, rec.id).truth.equals(
        Label(np.pad(np.ones((4, 4), np.uint32), ((2, 10), (2, 10))), {1: 1})
    )
    t.close()


def test_a_control_naming_a_class_the_project_lacks_is_refused_by_the_tablet(
    tmp_path: Path, lab: LabServer
) -> None:
    t = tablet(tmp_path / "t", lab, "P1", "tab")  # classes: nucleus (1) only
    add_work(t, tmp_path / "i", 1, 0, seed=3)
    rec = t.images()[0]
    op = _control_op(oplog.image_ref(rec.sha256, rec.page), truth_classes='{"1": 7}')
    new, refused = sync_log.apply_remote(t, [oplog.Operation.from_wire(op)], 5)
    assert new == 0 and "class 7" in refused[0]
    assert not t.control_image_ids()
    t.close()


def test_only_the_device_that_added_an_image_may_make_it_a_control(
    tmp_path: Path, lab: LabServer
) -> None:
    """A rogue device could otherwise hide honest images from every tablet's training jobs
    and exports by declaring them controls with made-up truth."""
    a = tablet(tmp_path / "a", lab, "P1", "a")
    b = tablet(tmp_path / "b", lab, "P1", "b")
    add_work(a, tmp_path / "ia", 2, 0, seed=3)
    sync_project(a)
    sync_project(b)
    first, second = (oplog.image_ref(r.sha256, r.page) for r in a.images())
    assert _push(lab, b, _control_op(first)) == 422  # b did not add it
    b_image = next(r for r in b.images() if oplog.image_ref(r.sha256, r.page) == second)
    b.save_label(b_image.id, label_for(b, b_image.id, 5), author="b", source="manual")
    sync_project(b)
    assert _push(lab, a, _control_op(second, uid="e" * 32)) == 422  # b labelled it already
    assert _push(lab, a, _control_op(first, uid="f" * 32)) == 200  # its own, unlabelled
    assert _push(lab, a, _control_op(first, uid="g" * 32)) == 422  # a control already
    sync_project(b)
    assert b.control_image_ids() == {
        r.id for r in b.images() if oplog.image_ref(r.sha256, r.page) == first
    }
    a.close()
    b.close()


def test_a_pull_page_never_ends_between_an_image_and_its_control(
    tmp_path: Path, lab: LabServer
) -> None:
    """A sync cut between two pages must not leave a control's image ordinary on a tablet."""
    a = tablet(tmp_path / "a", lab, "P1", "a")
    add_work(a, tmp_path / "ia", 2, 1, seed=1)
    write_gold(tmp_path / "gold", tmp_path / "masks", 3, seed=6)
    add_gold(a, tmp_path / "gold", tmp_path / "masks", level="easy")
    sync_project(a)
    with lab.store.read() as conn:
        project_id = lab.store.project_id(conn, "P1")
    assert project_id is not None
    every = lab.store.pull_ops(project_id, 0, 10_000)
    controls = {op.ref for op in every if op.kind == "control.added"}
    assert len(controls) == 3
    for limit in range(1, len(every) + 1):
        after = 0
        while page := lab.store.pull_ops(project_id, after, limit):
            held = {op.ref for op in page if op.kind == "image.added"} & controls
            assert held <= {op.ref for op in page if op.kind == "control.added"}, limit
            after = page[-1].seq
    a.close()
