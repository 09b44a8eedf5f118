"""The keys of an encrypted project: PINs unwrap one project key, wrong PINs back off, sealed
data opens only with its key and its context, the CLI's PIN never comes from an argument."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.security import vault
from appliance.security.home import HOME_ENV


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(vault, "KDF", {"time_cost": 1, "memory_cost": 8 * 1024, "parallelism": 1})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_annotator_unlocks_the_same_key_and_the_file_holds_no_key(tmp_path: Path) -> None:
    key = vault.create_keys(tmp_path, "anna", "246810")
    vault.add_annotator(tmp_path, key, "ben", "correct horse")
    assert vault.unlock(tmp_path, "anna", "246810") == key
    assert vault.unlock(tmp_path, "ben", "correct horse") == key
    raw = (tmp_path / vault.KEYS_FILE).read_bytes()
    assert key not in raw and key.hex().encode() not in raw
    assert oct((tmp_path / vault.KEYS_FILE).stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ApplianceError, match="already has"):
        vault.create_keys(tmp_path, "anna", "246810")
    with pytest.raises(ApplianceError, match="at least 6"):
        vault.add_annotator(tmp_path, key, "cleo", "1234")


def test_a_wrong_pin_is_refused_with_back_off(tmp_path: Path) -> None:
    clock = Clock()
    vault.create_keys(tmp_path, "anna", "246810")
    for _ in range(vault.BackOff.FREE):
        with pytest.raises(vault.WrongPin, match="wrong annotator or PIN"):
            vault.unlock(tmp_path, "anna", "000000", clock)
    # the fourth try must wait 1 s, then 2 s, 4 s ...: even the right PIN is not tried early
    for wait in (1, 2, 4, 8):
        with pytest.raises(vault.WrongPin, match=f"try again in {wait} s"):
            vault.unlock(tmp_path, "anna", "246810", clock)
        clock.now += wait
        with pytest.raises(vault.WrongPin, match="wrong annotator or PIN"):
            vault.unlock(tmp_path, "ben", "246810", clock)  # an unknown annotator counts too
    clock.now += 16
    assert vault.unlock(tmp_path, "anna", "246810", clock)
    with pytest.raises(vault.WrongPin, match="wrong"):  # the right PIN reset the count
        vault.unlock(tmp_path, "anna", "000000", clock)


def test_back_off_survives_a_restart_of_the_app(tmp_path: Path) -> None:
    clock = Clock()
    vault.create_keys(tmp_path, "anna", "246810")
    for _ in range(vault.BackOff.FREE + 1):
        with pytest.raises(vault.WrongPin):
            vault.unlock(tmp_path, "anna", "999999", clock)
    assert vault.BackOff(tmp_path, clock).wait() > 0  # a new object: the state is on disk


def test_a_tampered_key_file_unlocks_nothing(tmp_path: Path) -> None:
    vault.create_keys(tmp_path, "anna", "246810")
    doc = json.loads((tmp_path / vault.KEYS_FILE).read_text())
    entry = doc["annotators"]["anna"]
    doc["annotators"]["eve"] = entry  # anna's wrapped key under another name
    (tmp_path / vault.KEYS_FILE).write_text(json.dumps(doc))
    with pytest.raises(vault.WrongPin):
        vault.unlock(tmp_path, "eve", "246810")


def test_sealed_data_opens_only_with_its_key_and_context() -> None:
    key, other = b"k" * 32, b"o" * 32
    blob = vault.seal(key, b"patient pixels", b"images/ab.tif")
    assert b"patient pixels" not in blob
    assert vault.open_sealed(key, blob, b"images/ab.tif", "x") == b"patient pixels"
    for k, ctx in ((other, b"images/ab.tif"), (key, b"images/cd.tif")):
        with pytest.raises(ApplianceError, match="another key"):
            vault.open_sealed(k, blob, ctx, "x")
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(ApplianceError, match="changed"):
        vault.open_sealed(key, flipped, b"images/ab.tif", "x")


def test_the_cli_pin_comes_from_the_environment_or_a_prompt(monkeypatch) -> None:
    monkeypatch.setenv(vault.PASSPHRASE_ENV, "from-env")
    assert vault.passphrase() == "from-env"
    monkeypatch.delenv(vault.PASSPHRASE_ENV)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(ApplianceError, match="set APPLIANCE_PASSPHRASE"):
        vault.passphrase()
