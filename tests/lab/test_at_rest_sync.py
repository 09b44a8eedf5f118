"""Sync of projects encrypted at rest: the lab receives the plain originals (it hashes them),
and a tablet stores what it pulls sealed, with no plain copy left in its folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.security import vault
from appliance.security.home import HOME_ENV
from appliance.security.lock import lift_lock
from appliance.store import Project, at_rest
from appliance.sync.client import sync_project
from appliance.sync.http import Revoked
from tests.lab.conftest import add_work, tablet


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vault, "KDF", {"time_cost": 1, "memory_cost": 8 * 1024, "parallelism": 1})


def encrypted(project: Project, pin: str) -> Project:
    """The same project, encrypted in place and opened with its key."""
    root = project.root
    project.close()
    key = vault.create_keys(root, "anna", pin)
    at_rest.encrypt(root, key)
    return Project.open(root, key)


def test_encrypted_tablets_push_and_pull_images(tmp_path: Path, lab) -> None:
    a = tablet(tmp_path / "a", lab, "P1", "tab-a")
    add_work(a, tmp_path / "ia", 3, 4, seed=1)
    a = encrypted(a, "246810")
    b = encrypted(tablet(tmp_path / "b", lab, "P1", "tab-b"), "135790")
    try:
        sync_project(a)
        report = sync_project(b)
        assert report.downloaded_blobs == 3
        for rec in a.images():
            got = b.find_image(rec.sha256)
            assert (b.load_pixels(got.id) == a.load_pixels(rec.id)).all()
            # the lab checked the upload's sha256: it received the plain original
            with a.open_original(rec.path) as fh:
                plain = fh.read()
            assert hashlib.sha256(plain).hexdigest() == rec.sha256
            assert got.path.read_bytes().startswith(b"APPSEAL1")  # sealed on the tablet
            for p in b.root.rglob("*"):
                assert not p.is_file() or plain[-64:] not in p.read_bytes(), p
        assert b.status()["label_versions"] == 4
    finally:
        a.close()
        b.close()


def test_a_revoke_crypto_erases_an_encrypted_project(
    tmp_path: Path, lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "tablet-home"))  # revoked.json stays here
    t = tablet(tmp_path / "t", lab, "P1", "tab")
    add_work(t, tmp_path / "it", 1, 1, seed=3)
    t = encrypted(t, "246810")
    sync_project(t)
    assert lab.store.revoke(lab.store.devices()[0]["id"])
    with pytest.raises(Revoked):
        sync_project(t)
    t.close()
    assert not (t.root / vault.KEYS_FILE).exists()  # no wrapped key left: the data is noise
    assert lift_lock()  # even the lab, tablet in hand, cannot open it again
    with pytest.raises(ApplianceError, match=r"keys were erased .*revoked this tablet"):
        Project.open(t.root)
    with pytest.raises(ApplianceError, match="not an encrypted project"):
        vault.unlock(t.root, "anna", "246810")


def test_a_sealed_slide_syncs_between_encrypted_tablets(tmp_path: Path, lab) -> None:
    """A's slide is sealed in its folder; the lab gets the plain file (its hash checks); B
    stores it sealed and opens its regions on it, with no plain copy left behind."""
    from appliance.importer import SlideRegions, import_paths
    from appliance.session.slide_work import SlideWork
    from appliance.store.slides import regions, slides
    from testkit.slides import tissue_image, write_svs

    scan = tmp_path / "bal.svs"
    write_svs(scan, tissue_image(600, 800, seed=3), mpp=0.25, tile=128)
    a = encrypted(tablet(tmp_path / "a", lab, "P1", "tab-a"), "246810")
    b = encrypted(tablet(tmp_path / "b", lab, "P1", "tab-b"), "135790")
    try:
        import_paths(a, [scan], slide_regions=SlideRegions(lab=((0, 0, 256, 128),)))
        (slide_a,) = slides(a)
        assert slide_a.path.read_bytes().startswith(b"APPSEAL1")
        sync_project(a)
        report = sync_project(b)
        assert report.ops_refused == []
        (slide_b,) = slides(b)
        assert slide_b.sha256 == slide_a.sha256 == hashlib.sha256(scan.read_bytes()).hexdigest()
        assert slide_b.path.read_bytes().startswith(b"APPSEAL1")
        assert b.original_sha256(slide_b.path) == slide_b.sha256
        tail = scan.read_bytes()[-4096:]
        for p in b.root.rglob("*"):
            assert not p.is_file() or tail not in p.read_bytes(), p
        (r,) = regions(b)
        work = SlideWork(b, r.image_id, "ben")
        try:
            on_slide = work.slide.read_region(r.x, r.y, r.width, r.height)
            assert (on_slide == b.load_pixels(r.image_id)).all()
        finally:
            work.close()
        # C imported the same slide itself: A's slide operation is checked on C's sealed copy
        c = encrypted(tablet(tmp_path / "c", lab, "P1", "tab-c"), "975310")
        try:
            import_paths(c, [scan], slide_regions=SlideRegions(lab=((0, 0, 128, 128),)))
            report = sync_project(c)
            assert report.ops_refused == [] and report.downloaded_blobs == 1  # A's region only
            assert len(slides(c)) == 1 and len(regions(c)) == 2
        finally:
            c.close()
    finally:
        a.close()
        b.close()
