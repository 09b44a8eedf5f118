"""Two tablets and a real lab server: push, pull, union, conflicts, idle sync."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.store import oplog
from appliance.sync.client import sync_project, sync_status
from tests.lab.conftest import add_work, label_for, tablet, write_images


def test_two_tablets_end_with_the_union_and_a_conflict(tmp_path: Path, lab) -> None:
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
    # idle sync: nothing to do
    t0 = time.perf_counter()
    report = sync_project(a)
    assert time.perf_counter() - t0 < 1.0
    assert report.pushed_ops == report.pulled_ops == 0
