"""Fault injection: two tablets sync overlapping work through a proxy that cuts connections at
random byte offsets and delays (so reorders) traffic. Every run must end with the server and
both tablets holding exactly the union of operations: none lost, none duplicated, and the image
labeled on both tablets shown as a conflict."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest

from appliance.importer import import_paths
from appliance.security.credentials import load_credentials, save_credentials
from appliance.store import Project, oplog
from appliance.sync.client import sync_project
from export.lab.serve import LabServer
from tests.lab.conftest import add_work, fast_retry, label_for, make_config, tablet, write_images
from tests.lab.faults import FaultProxy


def one_run(root: Path, lab: LabServer, seed: int) -> dict[str, int]:
    name = f"R{seed}"
    tabs = [tablet(root / f"t{i}", lab, name, f"{name}-{i}") for i in range(2)]
    shared = write_images(root / "shared", 1, seed=10_000 + seed, size=8)
    for i, t in enumerate(tabs):
        add_work(t, root / f"i{i}", 1 + seed % 2, 2 + (seed + i) % 3, seed=2 * seed + i)
        import_paths(t, shared)
        img = t.find_image(shared[0].name)
        t.save_label(img.id, label_for(t, img.id, seed + i), author=f"a{i}", source="manual")
    proxy = FaultProxy(("127.0.0.1", lab.port), seed)
    for t in tabs:  # the device credentials (outside the project) name the server
        credential_id = oplog.get_state(t.db, "credential_id")
        creds = load_credentials(credential_id)
        save_credentials(credential_id, dataclasses.replace(creds, server=proxy.url))
    errors: list[Exception] = []

    def sync(t: Project, k: int) -> None:
        try:
            sync_project(
                t, retry=fast_retry(seed * 10 + k), chunk=4096, install_models=False, timeout=5
            )
        except Exception as exc:
            errors.append(exc)

    try:
        for rnd in range(6):  # bounded: converges in 2 rounds without faults
            threads = [
                threading.Thread(target=sync, args=(t, rnd * 2 + i)) for i, t in enumerate(tabs)
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=300)  # each request gives up by its retry deadline (30 s)
            # a sync still running would race the next round's sync of the same tablet
            assert not any(th.is_alive() for th in threads), "a sync did not end"
            if rnd >= 1 and all(oplog.pending_count(t.db) == 0 for t in tabs):
                server_uids = {op.uid for op in lab.store.pull_ops(_pid(lab, name), 0, 100_000)}
                if all(set(oplog.operation_uids(t.db)) == server_uids for t in tabs):
                    break
        # 40 tries per request: the budget never runs out at a 30 % cut rate, so any error is a
        # bug (a cut the client took for a complete reply, a refusal it should not get)
        assert errors == [], errors
        pid = _pid(lab, name)
        server_ops = [op.uid for op in lab.store.pull_ops(pid, 0, 100_000)]
        local = [
            [r[0] for r in t.db.execute("SELECT uid FROM operations WHERE origin='local'")]
            for t in tabs
        ]
        union = set(local[0]) | set(local[1])
        assert len(server_ops) == len(set(server_ops)), "duplicated on the server"
        assert set(server_ops) == union, "lost or foreign operations on the server"
        for t in tabs:
            uids = oplog.operation_uids(t.db)
            assert len(uids) == len(set(uids)) and set(uids) == union
            labels = t.db.execute("SELECT count(*) FROM labels").fetchone()[0]
            assert labels == sum(
                1 for r in lab.store.pull_ops(pid, 0, 100_000) if r.kind == "label.saved"
            )
            assert oplog.pending_count(t.db) == 0
        assert [t.status()["images"] for t in tabs] == [tabs[0].status()["images"]] * 2
        conflicts = lab.store.conflicts(pid)
        assert len(conflicts) == 1 and len(conflicts[0]["heads"]) == 2
        return {"ops": len(union), "connections": proxy.connections, "cuts": proxy.cuts}
    finally:
        proxy.close()
        for t in tabs:
            t.close()


def _pid(lab: LabServer, name: str) -> int:
    with lab.store.read() as conn:
        pid = lab.store.project_id(conn, name)
    assert pid is not None
    return pid


def run_many(tmp_path: Path, database: str | None, runs: int) -> None:
    t0 = time.perf_counter()
    totals = {"ops": 0, "connections": 0, "cuts": 0}
    with LabServer(make_config(tmp_path / "lab", database)) as lab:
        for seed in range(runs):
            for k, v in one_run(tmp_path / f"run{seed}", lab, seed).items():
                totals[k] += v
    print(f"\n{runs} runs in {time.perf_counter() - t0:.1f} s: {totals}")
    assert totals["cuts"] > runs  # the faults really happened


@pytest.mark.slow
def test_ten_faulty_runs(tmp_path: Path, database: str | None) -> None:
    run_many(tmp_path, database, 10)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("APPLIANCE_LONG_TESTS") != "1",
    reason="200 runs take minutes on 2 cores (docs/sync.md); set APPLIANCE_LONG_TESTS=1",
)
def test_two_hundred_faulty_runs(tmp_path: Path, database: str | None) -> None:
    run_many(tmp_path, database, 200)
