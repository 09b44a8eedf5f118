"""One enrolled device sends every kind of operation malformed; no other tablet is hurt.

The lab server refuses each before numbering it (the core's `check_operation`). Behind a
server that does not check (today's main numbered all of them), a tablet refuses each one
itself, keeps it aside, reports it and goes on: its exports, training jobs, pre-labels and
integrity check keep working, and honest work keeps arriving.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main as appliance
from appliance.importer import import_paths
from appliance.labels import Label, encode_instances
from appliance.store import oplog
from appliance.store.classes import add_class
from appliance.sync.blobs import BlobChannel
from appliance.sync.client import status_line, sync_project, sync_status
from appliance.sync.http import LabHttp
from export.lab import store as lab_store
from export.lab.serve import LabServer
from tests.lab.conftest import add_work, tablet, write_images
from tests.lab.crafted import control_op, image_op, label_op, model_op, png


class Rogue:
    """An enrolled tablet that speaks the protocol by hand."""

    def __init__(self, lab: LabServer, project: str, folder: Path) -> None:
        code, _ = lab.store.create_enrollment(project, "tablet", "rogue")
        token, _ = lab.store.redeem(code, None)
        self.http = LabHttp(lab.url, token)
        self.base = f"/api/v1/projects/{project}"
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def upload(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.folder / sha
        path.write_bytes(data)
        BlobChannel(self.http, self.base).upload(sha, path)
        return sha

    def push(self, *ops: dict) -> int:
        body = json.dumps({"ops": list(ops)}).encode()
        headers = {"Content-Type": "application/json"}
        return self.http.once("POST", f"{self.base}/ops", body, headers).status


def malformed(rogue: Rogue, honest_sha: str, honest_version: str) -> dict[str, list[dict]]:
    """Every operation kind, malformed in every way that would hurt a tablet applying it.
    `honest_sha`/`honest_version`: an image and a label version another tablet sent."""
    sha = rogue.upload(png(8, 8, seed=50))
    other = rogue.upload(png(6, 6, seed=51))
    junk = rogue.upload(b"not an image at all" * 10)
    good_image = image_op("rogueimg0001", sha)
    fits = encode_instances(np.zeros((16, 16), np.uint32))  # header (13 bytes) and runs
    bomb = fits[:13] + zlib.compress(bytes(64 << 20), 9)  # 16x16 that inflates to 64 MiB
    wrong_shape = np.zeros((6, 6), np.uint32)
    wrong_shape[1:3, 1:3] = 1

    def label(uid: str, image: str = honest_sha, **changes: object) -> dict:
        return label_op(uid, image, size=16, **changes)

    return {
        "image.added": [
            image_op("rogueimg0002", sha, height=9),  # size not matching the blob
            image_op("rogueimg0003", sha, width=800, height=600),
            image_op("rogueimg0004", sha, channels=3),
            image_op("rogueimg0005", other),  # the 6x6 file declared 8x8
            image_op("rogueimg0006", junk),  # not an image
            dict(image_op("rogueimg0007", sha, page=3), ref=f"{sha}:3"),  # no such page
            image_op("rogueimg0008", sha, dtype="complex256"),
            image_op("rogueimg0009", sha, name=["x"]),
            image_op("rogueimg0010", sha, suffix="/../../x"),
            dict(image_op("rogueimg0011", sha), ref=f"{other}:"),
            dict(image_op("rogueimg0012", sha), blob=None),
        ],
        "label.saved": [
            label("roguelab0001", instances="!!not base64!!"),
            label("roguelab0002", instances="AAAAAAAAAAAAAAAA"),  # not an instance map
            label("roguelab0003", instances=wrong_shape),  # of another shape
            label("roguelab0004", instances=base64.b64encode(bomb).decode()),
            label("roguelab0005", classes={1: 0}),  # class 0 is background
            label("roguelab0006", classes={1: 1, 9: 1}),  # no instance 9 in the map
            label("roguelab0007", classes="[1, 2]"),
            label("roguelab0008", n_instances=5),
            label("roguelab0009", source="guess"),
            label("roguelab0010", seconds_spent=float("nan")),
            label("roguelab0011", image="f" * 64),  # an image nobody added
            label("roguelab0012", parent="nosuchparent"),
            label_op("roguelab0013", sha, parent=honest_version),  # parent of another image
            {**label("roguelab0014"), "ref": "roguelab0099"},  # ref is not its uid
            label(honest_version),  # an existing version, rewritten
        ],
        "control.scored": [
            control_op("roguectl0001", honest_version, score=2.0),
            control_op("roguectl0002", "nosuchlabel"),
            control_op("roguectl0003", honest_version, annotator=""),
            control_op("roguectl0004", honest_version, dice="high"),
        ],
        "model.activated": [
            model_op("roguemod0001", model_id=7),
            dict(model_op("roguemod0002"), ref="another"),
            dict(model_op("roguemod0003"), blob=sha),
        ],
        "unknown": [{**model_op("rogueunk0001"), "kind": "image.deleted"}],
        "_setup": [good_image],  # the rogue's own image, so 0013 names a parent elsewhere
    }


@pytest.fixture
def honest(tmp_path: Path, lab: LabServer):
    """Tablet A with labeled work on the server; returns (A, an image sha, a version uid)."""
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    add_work(a, tmp_path / "ia", 3, 4, seed=1)
    sync_project(a)
    rec = a.images()[0]
    version = a.latest_label(rec.id) or a.label_version(
        a.save_label(rec.id, Label(np.zeros((16, 16), np.uint16), {}), author="x", source="manual")
    )
    sync_project(a)
    return a, rec.sha256, version.uid


def cli_works(project_dir: Path, out: Path) -> None:
    """What a lab does with a tablet: every command exits 0."""
    assert appliance(["export-coco", str(project_dir), str(out / "coco.json")]) == 0
    assert appliance(["export-job", str(project_dir), str(out / "job.zip")]) == 0
    assert appliance(["prelabel", str(project_dir), "--all", "--method", "otsu"]) == 0
    assert appliance(["check", str(project_dir)]) == 0


def test_the_server_refuses_every_malformed_operation(tmp_path: Path, lab, honest) -> None:
    _a, sha, version = honest
    rogue = Rogue(lab, "P", tmp_path / "rogue")
    ops = malformed(rogue, sha, version)
    assert rogue.push(*ops.pop("_setup")) == 200
    before = len(lab.store.pull_ops(1, 0, 10_000))
    assert sum(len(bad) for bad in ops.values()) == 34  # as docs/sync.md says
    for kind, bad in ops.items():
        for op in bad:
            assert rogue.push(op) == 422, (kind, op["uid"])
    assert len(lab.store.pull_ops(1, 0, 10_000)) == before  # nothing numbered


def test_tablets_refuse_what_an_unchecking_server_numbered(
    tmp_path: Path, lab, honest, monkeypatch, capsys
) -> None:
    a, sha, version = honest
    rogue = Rogue(lab, "P", tmp_path / "rogue")
    ops = malformed(rogue, sha, version)
    # a lab server without the check, as on today's main, numbers every one of them
    monkeypatch.setattr(lab_store, "check_operation", lambda op, known: None)
    bad = [op for kind, group in ops.items() if kind != "_setup" for op in group]
    assert rogue.push(*ops["_setup"], *bad) == 200
    # a label naming a class the receiving tablet lacks passes every server (classes are
    # edited on each tablet), so it must be refused by the tablet alone
    monkeypatch.undo()
    unknown_class = label_op("roguelab0050", sha, size=16, classes={1: 7})
    assert rogue.push(unknown_class) == 200
    # honest work goes on around it
    add_work(a, tmp_path / "ia2", 2, 3, seed=2)
    sync_project(a)

    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    report = sync_project(b)  # succeeds: refusals do not stop a sync
    refused_uids = {op.uid for op, _ in oplog.refusals(b.db) if op}
    assert refused_uids == {op["uid"] for op in bad} | {"roguelab0050"}
    assert len(report.ops_refused) == len(refused_uids)
    assert "refused" in report.line() and sync_status(b)["refused"] == len(refused_uids)
    assert f"{len(refused_uids)} refused operations" in status_line(b)  # the Home screen's row
    capsys.readouterr()
    assert appliance(["sync", str(b.root), "--status"]) == 0
    out = capsys.readouterr().out
    assert f"{len(refused_uids)} pulled operations refused" in out
    assert out.count("  refused: operation ") == len(refused_uids)
    # B holds exactly A's work plus the rogue's one good image, and nothing of the rest
    assert b.status()["label_versions"] == a.status()["label_versions"]
    assert {r.sha256 for r in b.images()} == {r.sha256 for r in a.images()} | {
        ops["_setup"][0]["blob"]
    }
    assert b.latest_label(b.find_image(sha).id).uid != "roguelab0050"
    cli_works(b.root, tmp_path)
    # A, which pulls the same operations, keeps working too
    sync_project(a)
    cli_works(a.root, tmp_path)
    # a refusal is kept, not repeated as new work: the next sync is quiet
    again = sync_project(b)
    assert again.pulled_ops == 0 and again.ops_refused == []


def test_a_refused_version_is_applied_once_the_tablet_can_use_it(tmp_path: Path, lab) -> None:
    """A class added on one tablet: another tablet refuses versions naming it until it has
    the class too, then applies them at its next sync."""
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    import_paths(a, write_images(tmp_path / "i", 1, seed=3))
    rec = a.images()[0]
    mitosis = add_class(a, "mitosis")
    inst = np.zeros((rec.height, rec.width), np.uint16)
    inst[2:6, 2:6] = 1
    a.save_label(rec.id, Label(inst, {1: mitosis}), author="x", source="manual")
    sync_project(a)
    report = sync_project(b)
    assert len(report.ops_refused) == 1 and "class 2" in report.ops_refused[0]
    assert b.status()["label_versions"] == 0
    add_class(b, "mitosis")
    report = sync_project(b)
    assert report.pulled_ops == 1 and not oplog.refusals(b.db)
    assert b.status()["label_versions"] == 1


def test_every_kind_a_tablet_records_has_a_check() -> None:
    """A new operation kind without its check would be refused by every server and tablet."""
    from appliance.store.opcheck import CHECKS

    assert set(oplog.KINDS) == set(CHECKS)
