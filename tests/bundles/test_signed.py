"""Lab-signed bundles: only a pinned lab key (or a rotation from one) gets a bundle installed.

Each test has its own appliance home (the tablet's pinned keys) and its own lab keys, so the
test run's shared key (tests/conftest.py) plays no part here."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from appliance.bundles import archive
from appliance.bundles.archive import BundleError, sign_bundle
from appliance.bundles.install import install_model_bundle
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.security.home import HOME_ENV
from appliance.security.signing import ROTATION_CONTEXT, SIGNING_KEY_ENV, SigningKey
from appliance.security.trust import pin_key, pinned
from appliance.store import Project
from appliance.store.models import list_models

from .conftest import snapshot
from .onnx_models import contract, conv_model


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    """A fresh tablet home that pins one fresh lab key; writers sign nothing by default."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(SIGNING_KEY_ENV)
    key = SigningKey.generate()
    pin_key(key.public, "test lab")
    return key


@pytest.fixture
def bundle(tmp_path: Path):
    def make(name: str, sign: SigningKey | bool, seed: int = 0) -> Path:
        onnx_path = conv_model(tmp_path / f"{name}.onnx", seed=seed)
        spec = ModelSpec("prelabel", f"tiny-{seed}", onnx_path, contract(), {"dice": 0.5})
        write_model_bundle(tmp_path / name, [spec], job_id="job-1", sign=sign)
        return tmp_path / name

    return make


@pytest.fixture
def project(tmp_path: Path, lab: SigningKey, bundle) -> Project:
    """A project that already holds one signed model, so refusals have something to keep."""
    p = Project.create(tmp_path / "proj", ["nucleus"])
    install_model_bundle(p, bundle("first.zip", lab, seed=9))
    yield p
    p.close()


def refused(project: Project, path: Path, **kwargs: object) -> str:
    """Install `path`, expecting a one-line refusal that leaves the project byte-identical."""
    before, models = snapshot(project.root), list_models(project)
    with pytest.raises(BundleError) as caught:
        install_model_bundle(project, path, **kwargs)  # type: ignore[arg-type]
    assert snapshot(project.root) == before
    assert list_models(project) == models
    text = str(caught.value)
    assert "\n" not in text and str(path) in text
    return text


def rewrite(path: Path, out: Path, change: dict[str, bytes]) -> Path:
    """Copy a bundle's entries, replacing some (no checks: what an attacker could do)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change.get(name, src.read(name)))
    return out


def test_signed_bundle_installs_and_records_its_signer(project, lab, bundle) -> None:
    install_model_bundle(project, bundle("b.zip", lab, seed=1))
    assert {m.signer for m in list_models(project)} == {lab.public.id}


def test_unsigned_bundle_is_refused_in_one_line(project, bundle) -> None:
    text = refused(project, bundle("unsigned.zip", False))
    assert "unsigned" in text and "--allow-unsigned" in text


def test_foreign_signed_bundle_is_refused(project, bundle) -> None:
    text = refused(project, bundle("foreign.zip", SigningKey.generate()))
    assert "does not trust" in text


def test_tampered_member_of_signed_bundle_is_refused(project, lab, bundle, tmp_path) -> None:
    good = bundle("good.zip", lab, seed=2)
    with zipfile.ZipFile(good) as zf:
        onnx = bytearray(zf.read("models/0-prelabel.onnx"))
    onnx[-1] ^= 0xFF
    bad = rewrite(good, tmp_path / "bad.zip", {"models/0-prelabel.onnx": bytes(onnx)})
    assert "sha256 mismatch" in refused(project, bad)


def test_tampered_manifest_of_signed_bundle_is_refused(project, lab, bundle, tmp_path) -> None:
    good = bundle("good.zip", lab, seed=2)
    with zipfile.ZipFile(good) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    manifest["models"][0]["metrics"]["dice"] = 0.99  # a better-looking model, same bytes
    raw = json.dumps(manifest).encode()
    bad = rewrite(good, tmp_path / "bad.zip", {"manifest.json": raw})
    assert "does not match the manifest" in refused(project, bad)
    # --allow-unsigned is for bundles without a lab; a broken signature is never waved through
    assert "does not match the manifest" in refused(project, bad, allow_unsigned=True)


def test_signature_is_checked_before_any_member_is_read(project, bundle, tmp_path) -> None:
    """An unsigned bundle with a corrupt model is refused for its signature: nothing of it
    was decompressed or parsed."""
    good = bundle("unsigned.zip", False, seed=3)
    bad = rewrite(good, tmp_path / "bad.zip", {"models/0-prelabel.onnx": b"garbage"})
    assert "unsigned" in refused(project, bad)


def test_allow_unsigned_installs_and_the_list_says_unsigned(project, bundle, tmp_path) -> None:
    path = bundle("unsigned.zip", False, seed=4)
    install_model_bundle(project, path, allow_unsigned=True)
    assert [m.signer for m in list_models(project)][-1] is None
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "models", str(project.root)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.count("unsigned") == 1


def test_cli_refuses_unsigned_with_exit_2_and_one_line(project, bundle) -> None:
    path = bundle("unsigned.zip", False, seed=5)
    cmd = [sys.executable, "-m", "appliance", "install-model", str(project.root), str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "unsigned" in done.stderr
    done = subprocess.run([*cmd, "--allow-unsigned"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_sign_bundle_signs_an_existing_bundle(project, lab, bundle, tmp_path) -> None:
    path = bundle("unsigned.zip", False, seed=6)
    sign_bundle(path, lab, tmp_path / "signed.zip")
    install_model_bundle(project, tmp_path / "signed.zip")
    assert list_models(project)[-1].signer == lab.public.id


def test_signing_the_same_bundle_later_gives_the_same_bytes(
    lab, bundle, tmp_path, monkeypatch
) -> None:
    """The lab re-signs every pushed bundle: the same model pushed twice must keep one sha256,
    or tablets list it twice (it did when a push straddled a second)."""
    path = bundle("unsigned.zip", False, seed=6)

    class Later(datetime):
        """A clock ten seconds on at every look: no wait, whatever the machine's speed."""

        ticks = 0

        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            cls.ticks += 1
            return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=10 * cls.ticks)

    monkeypatch.setattr(archive, "datetime", Later)
    sign_bundle(path, lab, tmp_path / "first.zip")
    sign_bundle(path, lab, tmp_path / "second.zip")
    assert (tmp_path / "first.zip").read_bytes() == (tmp_path / "second.zip").read_bytes()


def test_rotation_is_learned_and_retires_the_old_key(project, lab, bundle) -> None:
    new = lab.rotate()
    install_model_bundle(project, bundle("rotated.zip", new, seed=7))
    states = {p.key: p.retired for p in pinned()}
    assert states == {lab.public: True, new.public: False}
    # the old key (perhaps lost: that is why labs rotate) can no longer sign...
    assert "retired" in refused(project, bundle("old.zip", lab, seed=8))
    # ...nor vouch for a key of its own making
    assert "retired" in refused(project, bundle("evil.zip", lab.rotate(), seed=10))
    newer = new.rotate()  # a chain of two rotations still leads back to the pin
    install_model_bundle(project, bundle("newer.zip", newer, seed=11))
    assert list_models(project)[-1].signer == newer.public.id


def test_forged_rotation_certificate_is_refused(project, lab, bundle, tmp_path) -> None:
    """A certificate that claims the pinned key vouched for a key, signed by someone else."""
    new = lab.rotate()
    good = bundle("rotated.zip", new, seed=12)
    with zipfile.ZipFile(good) as zf:
        sig = json.loads(zf.read("manifest.sig"))
    forged = SigningKey.generate().sign(ROTATION_CONTEXT + new.public.raw)
    sig["chain"][0]["signature"] = base64.b64encode(forged).decode()
    bad = rewrite(good, tmp_path / "bad.zip", {"manifest.sig": json.dumps(sig).encode()})
    assert "rotation certificate 0 is not signed" in refused(project, bad)
    assert [p.key for p in pinned()] == [lab.public]


def test_a_lab_without_server_keygen_sign_and_trust_key(tmp_path, monkeypatch, bundle) -> None:
    """The offline path, all through the CLIs: the workstation makes a key and signs; the
    tablet pins the .pub file; the bundle installs."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(SIGNING_KEY_ENV)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)

    key = tmp_path / "lab.key"
    assert run("export", "keygen", str(key)).returncode == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert run("export", "keygen", str(key)).returncode == 2  # never overwritten
    path = bundle("model.zip", False, seed=13)
    assert run("export", "sign", str(path), "--key", str(key)).returncode == 0
    root = tmp_path / "proj"
    Project.create(root, ["nucleus"]).close()
    install = ("appliance", "install-model", str(root), str(path))
    assert "does not trust" in run(*install).stderr
    assert run("appliance", "trust-key", str(key.with_suffix(".pub"))).returncode == 0
    assert "trusted" in run("appliance", "trust-key").stdout
    done = run(*install)
    assert done.returncode == 0, done.stderr
    assert SigningKey.load(key).public.id in run("appliance", "models", str(root)).stdout


@pytest.mark.parametrize(
    "signature, problem",
    [
        (b"{" + b" " * (70 << 10) + b"}", "holds more than"),  # read no further than 64 KiB
        (b"not json", "not valid JSON"),
        (json.dumps({"format": "appliance-signature", "version": 1}).encode(), "unsupported"),
    ],
)
def test_a_malformed_signature_is_refused(project, lab, bundle, tmp_path, signature, problem):
    good = bundle("good.zip", lab, seed=14)
    bad = rewrite(good, tmp_path / "bad.zip", {"manifest.sig": signature})
    assert problem in refused(project, bad)
