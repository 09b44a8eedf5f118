"""Encryption at rest (docs/security.md): a copied project folder without a PIN gives no
pixels, no label and no sync link; the store reads and writes through the key; wrong PINs back
off; a migration killed at any step loses nothing; the CLI unlocks from APPLIANCE_PASSPHRASE."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.errors import ApplianceError
from appliance.importer import import_paths
from appliance.labels import Label
from appliance.security import vault
from appliance.security.home import HOME_ENV
from appliance.store import Project, at_rest, sync_log
from appliance.store.check import check_project
from tests.robust.conftest import assert_one_line_refusal, cli

PIN = "246810"
FAST_KDF = {"time_cost": 1, "memory_cost": 8 * 1024, "parallelism": 1}
# a pixel row no other byte of the project repeats: 64 distinct values
RUN = bytes(range(100, 164))
AUTHOR = "annotator-anna-1"  # long: a short needle turns up in random ciphertext by chance


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(vault, "KDF", FAST_KDF)
    monkeypatch.delenv(vault.PASSPHRASE_ENV, raising=False)
    at_rest.forget()
    yield
    at_rest.forget()


def image_with_run(path: Path, seed: int) -> np.ndarray:
    """An uncompressed 8-bit TIFF whose row 10 is `RUN` (so its bytes lie in the file as is)."""
    img = np.random.default_rng(seed).integers(0, 40, (64, 64), dtype=np.uint8)
    img[10] = np.frombuffer(RUN, np.uint8)
    tifffile.imwrite(path, img)  # no compression
    return img


def make_project(tmp_path: Path, n: int = 3) -> tuple[Path, list[np.ndarray]]:
    """A plain project with `n` images (each with `RUN`) and two label versions each."""
    src = tmp_path / "src"
    src.mkdir(parents=True)
    images = [image_with_run(src / f"img{i}.tif", seed=i) for i in range(n)]
    root = tmp_path / "proj"
    with Project.create(root, ["nucleus", "other"]) as project:
        summary = import_paths(project, sorted(src.iterdir()))
        assert len(summary.imported) == n
        for k, image_id in enumerate(summary.imported):
            inst = np.zeros((64, 64), np.uint32)
            inst[5 + k : 30, 7:40] = 1
            inst[40:60, 3 + k : 20] = 2
            first = project.save_label(
                image_id, Label(inst, {1: 1, 2: 2}), author=AUTHOR, source="manual"
            )
            inst[50:55, 50:60] = 3
            project.save_label(
                image_id,
                Label(inst, {1: 1, 2: 2, 3: 1}),
                author=AUTHOR,
                source="manual",
                parent_id=first,
            )
        sync_log.set_state(project, credential_id="c0ffee" * 5 + "42")
    return root, images


def raw_hits(root: Path, needle: bytes) -> list[str]:
    """Every file under `root` (database, WAL, caches, originals, keys) holding `needle`."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    )


def snapshot(project: Project) -> dict:
    """Pixels and every label version of every image: what must survive unchanged."""
    out = {}
    for rec in project.images():
        versions = [
            (v.uid, v.parent_id, v.author, v.label.instances.tobytes(), v.label.classes)
            for v in project.history(rec.id)
        ]
        out[rec.sha256] = (project.load_pixels(rec.id).tobytes(), versions)
    return out


def encrypt(root: Path) -> bytes:
    key = vault.create_keys(root, "anna", PIN)
    at_rest.encrypt(root, key)
    return key


def test_a_copied_folder_without_the_pin_holds_no_pixels_labels_or_sync_link(
    tmp_path: Path,
) -> None:
    root, _images = make_project(tmp_path)
    with Project.open(root) as project:
        blob = project.db.execute("SELECT instances FROM labels LIMIT 1").fetchone()[0]
        before = snapshot(project)
    payload = bytes(blob)[:32]
    needles = {
        "pixels": RUN,
        "label": payload,
        "credential": b"c0ffee" * 5 + b"42",
        "annotator": AUTHOR.encode(),
    }
    # the plain project holds every needle: the search below can fail
    for name, needle in needles.items():
        assert raw_hits(root, needle), name
    key = encrypt(root)
    copy = tmp_path / "copied"
    shutil.copytree(root, copy)
    for name, needle in needles.items():
        assert raw_hits(copy, needle) == [], name
    assert raw_hits(copy, b'"anna"') == ["keys.json"]  # who has a PIN (docs/security.md)
    with pytest.raises(ApplianceError, match="locked: run with APPLIANCE_PASSPHRASE"):
        Project.open(copy)
    with pytest.raises(ApplianceError, match="locked"):
        Project.peek(copy)
    # work on the encrypted project writes no plain bytes either (WAL included)
    with Project.open(root, key) as project:
        assert snapshot(project) == before
        image_id = project.images()[0].id
        inst = np.zeros((64, 64), np.uint32)
        inst[1:9, 1:9] = 4
        author = "annotator-ben-2"
        vid = project.save_label(image_id, Label(inst, {4: 2}), author=author, source="manual")
        new_blob = bytes(project.label_version(vid)._blob)
        assert raw_hits(root, new_blob[:32]) == [] and raw_hits(root, author.encode()) == []
        assert raw_hits(root, RUN) == []


def test_the_encrypted_store_round_trip_import_prelabel_save_reopen(tmp_path: Path) -> None:
    root, _ = make_project(tmp_path, n=1)
    key = encrypt(root)
    src = tmp_path / "more"
    src.mkdir()
    new_img = image_with_run(src / "late.tif", seed=9)
    with Project.open(root, key) as project:
        assert project.encrypted
        [image_id] = import_paths(project, [src / "late.tif"]).imported
        assert raw_hits(root, RUN) == []  # the new original was sealed as it was stored
        assert np.array_equal(project.load_pixels(image_id), new_img)
        before = snapshot(project)
    at_rest.remember(root, key)  # as the app's lock screen or the CLI's prompt does
    report = check_project(root)
    assert report.originals_checked == 2 and not report.changed and not report.missing
    at_rest.forget(root)
    os.environ[vault.PASSPHRASE_ENV] = PIN
    try:
        res = cli("prelabel", root, "--image", "late", "--method", "otsu")
        assert res.rc == 0, res.err
        res = cli("check", root)
        assert res.rc == 0 and "0 changed" in res.out, res.out + res.err
    finally:
        del os.environ[vault.PASSPHRASE_ENV]
    with Project.open(root, key) as project:
        latest = project.latest_label(image_id)
        assert latest is not None and latest.source == "prelabel"
        after = snapshot(project)
    assert after[next(iter(before))] == before[next(iter(before))]
    assert raw_hits(root, RUN) == []


def test_cli_unlocks_from_the_environment_and_refuses_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = make_project(tmp_path, n=1)
    monkeypatch.setenv(vault.PASSPHRASE_ENV, PIN)
    res = cli("set-pin", root, "--annotator", "anna")  # the first PIN encrypts
    assert res.rc == 0 and "encrypted at rest" in res.out, res.out + res.err
    assert at_rest.is_encrypted(root) and raw_hits(root, RUN) == []
    res = cli("status", root)
    assert res.rc == 0 and "images" in res.out
    monkeypatch.delenv(vault.PASSPHRASE_ENV)
    assert_one_line_refusal(cli("status", root), "locked: run with APPLIANCE_PASSPHRASE")
    # a second annotator: the first one's PIN, then the new one
    monkeypatch.setenv(vault.PASSPHRASE_ENV, PIN)
    monkeypatch.setenv("APPLIANCE_NEW_PASSPHRASE", "correct horse")
    assert cli("set-pin", root, "--annotator", "ben", "--by", "anna").rc == 0
    monkeypatch.setenv(vault.PASSPHRASE_ENV, "correct horse")
    assert cli("status", root).rc == 0
    res = cli("encrypt", root)
    assert res.rc == 0 and "already" in res.out


def test_encrypt_a_project_that_had_pins_before(tmp_path: Path, monkeypatch) -> None:
    root, _ = make_project(tmp_path, n=2)
    vault.create_keys(root, "anna", PIN)  # PINs from before encryption at rest: still plain
    assert not at_rest.is_encrypted(root)
    with Project.open(root) as project:  # opens without a key, as before
        before = snapshot(project)
    assert_one_line_refusal(cli("encrypt", root), "a PIN is needed", "APPLIANCE_PASSPHRASE")
    monkeypatch.setenv(vault.PASSPHRASE_ENV, PIN)
    assert cli("encrypt", root).rc == 0
    key = vault.unlock(root, "anna", PIN)
    with Project.open(root, key) as project:
        assert snapshot(project) == before
    assert raw_hits(root, RUN) == []


def test_a_wrong_pin_is_refused_with_back_off(tmp_path: Path, monkeypatch) -> None:
    root, _ = make_project(tmp_path, n=1)
    encrypt(root)
    monkeypatch.setenv(vault.PASSPHRASE_ENV, "000000")
    for _ in range(vault.BackOff.FREE):
        assert_one_line_refusal(cli("status", root), "wrong PIN")
    assert_one_line_refusal(cli("status", root), "wrong PIN")  # the fourth: now it waits
    monkeypatch.setenv(vault.PASSPHRASE_ENV, PIN)  # even the right PIN waits out the back-off
    assert_one_line_refusal(cli("status", root), "too many wrong PINs", "try again in")
    # a key for another project opens nothing here
    other, _ = make_project(tmp_path / "b", n=1)
    other_key = encrypt(other)
    with pytest.raises(ApplianceError, match=r"project\.db"):
        Project.open(root, other_key)


KILLER = r"""
import os, signal, sys
from pathlib import Path
from appliance.store import at_rest
root, key, kill_at = Path(sys.argv[1]), bytes.fromhex(sys.argv[2]), int(sys.argv[3])
steps = []
def step(name):
    steps.append(name)
    print(name, flush=True)
    if len(steps) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
at_rest._step = step
if kill_at < 0:  # inside the export: half an encrypted database written, then killed
    from appliance.store import db
    real = db.export_encrypted
    def export(plain, dest, pragma):
        real(plain, dest, pragma)
        data = dest.read_bytes()
        dest.write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    db.export_encrypted = export
at_rest.encrypt(root, key)
print("done", flush=True)
"""


def run_migration(root: Path, key: bytes, kill_at: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(root), key.hex(), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = proc.stdout.splitlines()
    if kill_at:  # negative: killed inside the export
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    else:
        assert proc.returncode == 0 and lines[-1] == "done", proc.stderr
    return lines


def test_a_migration_killed_at_any_step_loses_nothing(tmp_path: Path) -> None:
    base, _ = make_project(tmp_path / "base", n=3)
    with Project.open(base) as project:
        expected = snapshot(project)
    key = vault.create_keys(base, "anna", PIN)
    trial = tmp_path / "trial"
    shutil.copytree(base, trial)
    steps = run_migration(trial, key, 0)[:-1]  # a full run names every step
    assert steps[0] == "marker" and "committed" in steps and len(steps) == 2 * 3 + 3
    commit = steps.index("committed") + 1
    for kill_at in [-1, *range(1, len(steps) + 1)]:
        root = tmp_path / f"k{kill_at}"
        shutil.copytree(base, root)
        run_migration(root, key, kill_at)
        committed = kill_at >= commit  # -1 (inside the export) is before the commit
        assert at_rest.is_encrypted(root) == committed, kill_at
        with Project.open(root, key if committed else None) as project:
            assert snapshot(project) == expected, kill_at
        leftovers = [p.name for p in root.rglob("*") if p.name.endswith(".sealed")]
        assert leftovers == [] and not (root / at_rest.MARKER).exists(), kill_at
        assert not (root / "project.db.encrypting").exists()
        if committed:
            assert raw_hits(root, RUN) == [], kill_at
        else:  # plain as before: encrypting again finishes the job
            at_rest.encrypt(root, key)
            with Project.open(root, key) as project:
                assert snapshot(project) == expected, kill_at
            assert raw_hits(root, RUN) == []


def test_a_sqlcipher_error_is_one_line_naming_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLCipher's exceptions are not sqlite3's: the CLI still turns them into one line."""
    from sqlcipher3 import dbapi2 as sqlcipher

    root, _ = make_project(tmp_path, n=1)
    encrypt(root)
    monkeypatch.setenv(vault.PASSPHRASE_ENV, PIN)

    def full(_self: Project) -> dict:
        raise sqlcipher.OperationalError("database or disk is full")

    monkeypatch.setattr(Project, "status", full)
    assert_one_line_refusal(cli("status", root), "project.db: database or disk is full")


def test_encrypting_a_project_open_elsewhere_changes_nothing(tmp_path: Path) -> None:
    root, _ = make_project(tmp_path, n=2)
    key = vault.create_keys(root, "anna", PIN)
    before = {p: p.read_bytes() for p in (root / "images").rglob("*") if p.is_file()}
    with Project.open(root) as other:  # the app holding the project
        other.status()
        with pytest.raises(ApplianceError, match="in use by another process"):
            at_rest.encrypt(root, key)
    assert not (root / at_rest.MARKER).exists()
    assert {p: p.read_bytes() for p in (root / "images").rglob("*") if p.is_file()} == before
    assert not at_rest.is_encrypted(root)
    at_rest.encrypt(root, key)  # closed: now it goes
    assert at_rest.is_encrypted(root)


def test_without_sqlcipher_the_pin_is_set_and_the_project_stays_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.store import db as dbm

    root, _ = make_project(tmp_path, n=1)
    monkeypatch.setattr(dbm, "sqlcipher", None)
    monkeypatch.setenv(vault.PASSPHRASE_ENV, PIN)
    res = cli("set-pin", root, "--annotator", "anna")
    assert res.rc == 0 and (root / vault.KEYS_FILE).exists()
    assert res.err.count("\n") == 1 and "needs SQLCipher" in res.err and "stays plain" in res.err
    assert not at_rest.is_encrypted(root)
    Project.open(root).close()
    assert_one_line_refusal(cli("encrypt", root), "needs SQLCipher")


def test_the_idle_lock_forgets_the_key_and_its_pin_brings_it_back(tmp_path: Path) -> None:
    from appliance.session.idle_lock import IdleLock

    root, _ = make_project(tmp_path, n=1)
    encrypt(root)
    now = [0.0]
    lock = IdleLock(root, idle_minutes=1, clock=lambda: now[0])
    assert lock.locked
    with pytest.raises(ApplianceError, match="locked"):
        Project.open(root)
    lock.unlock("anna", PIN)
    Project.open(root).close()  # the PIN's key opens the store
    now[0] = 61.0
    assert lock.tick()
    with pytest.raises(ApplianceError, match="locked"):
        Project.open(root)
