"""Two tablets and a real lab server: push, pull, union, conflicts, idle sync."""

from __future__ import annotations

from pathlib import Path

from appliance.store import oplog
from appliance.sync.client import sync_project, sync_status
from appliance.sync.http import LabHttp
from tests.lab.conftest import add_work, label_for, tablet, write_images


def test_two_tablets_end_with_the_union_and_a_conflict(tmp_path: Path, lab, monkeypatch) -> None:
    a = tablet(tmp_path / "a", lab, "P1", "tab-a")
    b = tablet(tmp_path / "b", lab, "P1", "tab-b")
    add_work(a, tmp_path / "ia", 3, 4, seed=1)
    add_work(b, tmp_path / "ib", 2, 3, seed=2)
    # the same image on both tablets, labeled on each: a conflict
    shared = write_images(tmp_path / "shared", 1, seed=9)
    from appliance.importer import import_paths

    for t in (a, b):
        import_paths(t, shared)
        img = t.find_image(shared[0].name)
        t.save_label(img.id, label_for(t, img.id, id(t) % 97), author="x", source="manual")
    for t in (a, b, a):
        sync_project(t)
    ua, ub = oplog.operation_uids(a.db), oplog.operation_uids(b.db)
    assert len(ua) == len(set(ua)) and set(ua) == set(ub)
    server = {op.uid for op in lab.store.pull_ops(1, 0, 10_000)}
    assert set(ua) == server
    assert a.status()["label_versions"] == b.status()["label_versions"] == 9
    assert a.status()["images"] == b.status()["images"] == 6
    assert sync_status(a)["pending"] == 0
    conflicts = lab.store.conflicts(1)
    assert len(conflicts) == 1 and len(conflicts[0]["heads"]) == 2
    # idle sync: nothing to do, so nothing is sent and only "anything new?" is asked (counted,
    # not timed: a loaded CI machine is slow, not wrong; bench/sync.py times it)
    asked: list[tuple[str, str]] = []
    real_once = LabHttp.once

    def counted(self, method, path, *args, **kwargs):
        asked.append((method, path.split("?")[0]))
        return real_once(self, method, path, *args, **kwargs)

    monkeypatch.setattr(LabHttp, "once", counted)
    report = sync_project(a)
    assert report.pushed_ops == report.pulled_ops == 0
    assert sorted(asked) == [
        ("GET", "/api/v1/projects/P1/models"),
        ("GET", "/api/v1/projects/P1/ops"),
    ]


def test_control_scores_reach_the_lab_page(tmp_path: Path, lab) -> None:
    from appliance.store.db import transaction

    t = tablet(tmp_path / "t", lab, "P1", "tab")
    add_work(t, tmp_path / "i", 2, 2, seed=4)
    versions = [v.id for r in t.images() for v in t.history(r.id)]
    with transaction(t.db):
        oplog.record_control_scored(t.db, versions[0], "a4", {"dice": 0.8, "instance_f1": 0.5})
        oplog.record_control_scored(t.db, versions[1], "a4", {"dice": 0.6, "instance_f1": 0.7})
    sync_project(t)
    (project,) = lab.store.overview()
    assert project["counts"]["control.scored"] == 2
    assert [(a["annotator"], a["score"]) for a in project["annotators"]] == [("a4", 0.7)]
    t.close()
