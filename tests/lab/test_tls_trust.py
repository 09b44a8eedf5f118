"""A tablet that leaves the lab: HTTPS with a pinned lab CA (a man in the middle is refused),
no plain HTTP off loopback, the device token outside the project folder and bound to this
machine, lab-signed model bundles, key rotation through the lab, and remote revoke.

Each test has its own appliance home (the tablet's pinned keys, credentials and lock)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.errors import ApplianceError
from appliance.security import credentials as creds_mod
from appliance.security.home import HOME_ENV
from appliance.security.lock import Locked
from appliance.security.signing import SIGNING_KEY_ENV
from appliance.security.tls import PIN_SEPARATOR
from appliance.security.trust import pinned
from appliance.store import Project, oplog
from appliance.store.models import list_models
from appliance.sync.client import enroll, sync_project
from appliance.sync.credentials import project_credentials
from appliance.sync.http import LabError, LabHttp, Revoked
from export.cli import main as export_main
from export.lab.keys import rotate_lab_key
from export.lab.serve import LabServer
from export.lab.tls import lab_tls
from tests.bundles.onnx_models import contract, conv_model
from tests.lab.conftest import add_work, make_config


@pytest.fixture(autouse=True)
def tablet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "tablet-home"
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.delenv(SIGNING_KEY_ENV)  # the workstation signs nothing: only the lab does
    return home


def https_lab(root: Path, port: int = 0) -> LabServer:
    return LabServer(make_config(root, None), port=port, tls=lab_tls(root, "127.0.0.1"))


def code_for(lab: LabServer, role: str = "tablet", project: str = "P") -> str:
    code, _ = lab.store.create_enrollment(project, role, f"{project}-{role}")
    assert lab.tls is not None
    return f"{code}{PIN_SEPARATOR}{lab.tls.pin}"


def raw_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_sync_over_https_with_the_pinned_ca_and_a_lab_signed_model(tmp_path: Path) -> None:
    with https_lab(tmp_path / "lab") as lab:
        assert lab.url.startswith("https://")
        t = Project.create(tmp_path / "t", ["nucleus"])
        enroll(t, lab.url, code_for(lab), "tab")
        add_work(t, tmp_path / "imgs", 2, 2, seed=1)
        assert sync_project(t).pushed_ops > 0
        # the workstation's bundle is unsigned; the lab signs what it hands out
        bundle = tmp_path / "model.zip"
        spec = ModelSpec("prelabel", "tiny", conv_model(tmp_path / "m.onnx", seed=0), contract())
        write_model_bundle(bundle, [spec], job_id="job-1")
        ws = ["--credentials", str(tmp_path / "ws.json")]
        push = ["models", "push", str(bundle), *ws]
        assert (
            export_main([*push, "--server", lab.url, "--code", code_for(lab, "workstation")]) == 0
        )
        assert sync_project(t).models_installed == 1
        (model,) = list_models(t)
        assert model.signer == pinned()[0].key.id
        # rotation: the lab's new key is learned through the bundle it signs next
        old, new = rotate_lab_key(tmp_path / "lab")
        t.close()
        port = lab.port
    with https_lab(tmp_path / "lab", port):  # restarted with the new key, same CA
        spec = ModelSpec("prelabel", "tiny2", conv_model(tmp_path / "m2.onnx", seed=1), contract())
        write_model_bundle(bundle, [spec], job_id="job-2")
        assert export_main(push) == 0
        with Project.open(tmp_path / "t") as t:
            assert sync_project(t).models_installed == 1
            assert list_models(t)[-1].signer == new.public.id
        assert {p.key.id: p.retired for p in pinned()} == {
            old.public.id: True,
            new.public.id: False,
        }


def test_a_man_in_the_middle_is_refused(tmp_path: Path) -> None:
    with https_lab(tmp_path / "lab") as lab, https_lab(tmp_path / "evil") as evil:
        code = code_for(lab)
        t = Project.create(tmp_path / "t", ["nucleus"])
        # enrolling through the attacker: its CA does not match the pin, and the code stays
        # unsent (the real lab can still redeem it)
        with pytest.raises(ApplianceError, match="not the code's pin"):
            enroll(t, evil.url, code, "tab")
        enroll(t, lab.url, code, "tab")
        # later the attacker answers at the lab's address: its certificate is refused
        credential_id = oplog.get_state(t.db, "credential_id")
        creds = creds_mod.load_credentials(credential_id)
        moved = creds_mod.LabCredentials(evil.url, creds.token, creds.lab_project, creds.ca)
        creds_mod.save_credentials(credential_id, moved)
        with pytest.raises(LabError, match="certificate is not the lab's"):
            sync_project(t)
        assert evil.store.devices() == []
        t.close()


def test_plain_http_is_refused_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ApplianceError, match="plain http:// is refused"):
        LabHttp("http://192.0.2.7:8765")
    LabHttp("http://192.0.2.7:8765", insecure=True).close()
    LabHttp("http://127.0.0.1:8765").close()
    LabHttp("http://[::1]:8765").close()
    project = tmp_path / "t"
    Project.create(project, ["n"]).close()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "sync",
            str(project),
            "--server",
            "http://192.0.2.7:8765",
            "--code",
            "ABCD-EFGH-JKLM",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "plain http:// is refused" in done.stderr


def test_the_token_lives_outside_the_project_and_is_bound_to_this_device(
    tmp_path: Path, tablet_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with https_lab(tmp_path / "lab") as lab:
        t = Project.create(tmp_path / "t", ["nucleus"])
        enroll(t, lab.url, code_for(lab), "tab")
        token = project_credentials(t)
        assert token is not None
        t.close()
        secret = token.token.encode()
        assert secret not in raw_bytes(tmp_path / "t")
        files = list((tablet_home / "credentials").iterdir())
        assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
        assert secret not in files[0].read_bytes()  # sealed, not merely hidden
        # a copied project folder carries no credential: on another tablet it is not enrolled
        shutil.copytree(tmp_path / "t", tmp_path / "copy")
        monkeypatch.setenv(HOME_ENV, str(tmp_path / "other-tablet"))
        with (
            Project.open(tmp_path / "copy") as copy,
            pytest.raises(ApplianceError, match="not enrolled"),
        ):
            sync_project(copy)
        # even the whole appliance home copied to another machine opens nothing
        shutil.copytree(tablet_home, tmp_path / "stolen-home")
        monkeypatch.setenv(HOME_ENV, str(tmp_path / "stolen-home"))
        monkeypatch.setattr(creds_mod, "machine_id", lambda: b"another machine")
        with (
            Project.open(tmp_path / "copy") as copy,
            pytest.raises(ApplianceError, match="another device"),
        ):
            sync_project(copy)


def test_a_token_kept_in_an_old_project_moves_out_leaving_no_bytes(tmp_path: Path) -> None:
    with https_lab(tmp_path / "lab") as lab:
        t = Project.create(tmp_path / "t", ["nucleus"])
        enroll(t, lab.url, code_for(lab), "tab")
        creds = project_credentials(t)
        # as an older appliance kept it: server, token and lab project in project.db
        oplog.set_state(t.db, token=creds.token, credential_id=None)
        t.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert creds.token.encode() in raw_bytes(tmp_path / "t")
        oplog.set_state(t.db, server=lab.url)
        pem = creds.ca
        # the moved credentials keep no CA pin (the old appliance had none): sync over the
        # pinned CA is what this test's lab needs, so keep the pin by re-saving it
        moved = project_credentials(t)
        assert moved is not None and moved.token == creds.token
        credential_id = oplog.get_state(t.db, "credential_id")
        creds_mod.save_credentials(
            credential_id,
            creds_mod.LabCredentials(moved.server, moved.token, moved.lab_project, pem),
        )
        sync_project(t)
        t.close()
        assert creds.token.encode() not in raw_bytes(tmp_path / "t")


def test_a_revoked_tablet_locks_its_projects(tmp_path: Path, tablet_home: Path) -> None:
    with https_lab(tmp_path / "lab") as lab:
        t = Project.create(tmp_path / "t", ["nucleus"])
        other = Project.create(tmp_path / "other", ["nucleus"])
        other.close()
        enroll(t, lab.url, code_for(lab), "tab")
        sync_project(t)
        assert lab.store.revoke(lab.store.devices()[0]["id"])
        with pytest.raises(Revoked):
            sync_project(t)
        t.close()
        assert not list((tablet_home / "credentials").iterdir())  # nothing left to sync with
        for folder in (tmp_path / "t", tmp_path / "other"):
            with pytest.raises(Locked, match="revoked"):
                Project.open(folder)
        done = subprocess.run(
            [sys.executable, "-m", "appliance", "status", str(tmp_path / "t")],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "locked" in done.stderr
        assert (
            subprocess.run(
                [sys.executable, "-m", "appliance", "unlock-revoked"], capture_output=True
            ).returncode
            == 0
        )
        Project.open(tmp_path / "other").close()


def test_a_lab_key_sent_over_plain_http_across_a_network_is_not_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --insecure the token still works, but the signing key is not trusted: anyone on
    the path could have put their own key in the reply."""
    with LabServer(make_config(tmp_path / "lab", None)) as lab:
        code, _ = lab.store.create_enrollment("P", "tablet", "t")
        # the lab seen through a non-loopback address (the loopback check is the only change)
        monkeypatch.setattr("appliance.sync.credentials.is_loopback", lambda _host: False)
        t = Project.create(tmp_path / "t", ["nucleus"])
        enroll(t, lab.url, code, "tab", insecure=True)
        assert pinned() == []
        assert project_credentials(t).insecure
        sync_project(t)
        t.close()
