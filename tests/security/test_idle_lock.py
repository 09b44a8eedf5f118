"""The kiosk lock without a screen: PINs set through the CLI (never an argument), locked at
opening and after the idle minutes, unlocked by the annotator's PIN only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.security import vault
from appliance.security.home import HOME_ENV
from appliance.session.idle_lock import IdleLock
from appliance.store import Project


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def set_pin(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "set-pin", str(root), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


def test_pins_come_from_the_environment_and_lock_the_project(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    Project.create(root, ["nucleus"]).close()
    assert not IdleLock(root).locked  # no PINs: never locked
    done = set_pin(root, "--annotator", "anna")
    assert done.returncode == 2 and "APPLIANCE_PASSPHRASE" in done.stderr  # no tty, no env
    assert set_pin(root, "--annotator", "anna", APPLIANCE_PASSPHRASE="246810").returncode == 0
    done = set_pin(root, "--annotator", "ben", APPLIANCE_PASSPHRASE="246810")
    assert done.returncode == 2 and "--by" in done.stderr
    done = set_pin(
        root,
        "--annotator",
        "ben",
        "--by",
        "anna",
        APPLIANCE_PASSPHRASE="246810",
        APPLIANCE_NEW_PASSPHRASE="ben's passphrase",
    )
    assert done.returncode == 0, done.stderr
    done = set_pin(root, "--annotator", "eve", "--by", "anna", APPLIANCE_PASSPHRASE="000000")
    assert done.returncode == 2 and "wrong annotator or PIN" in done.stderr
    assert "--pin" not in set_pin(root, "--help").stdout  # a PIN is never an argument

    clock = Clock()
    lock = IdleLock(root, idle_minutes=5, clock=clock)
    assert lock.locked
    with pytest.raises(vault.WrongPin):
        lock.unlock("anna", "135790")
    assert lock.locked
    lock.unlock("ben", "ben's passphrase")
    assert not lock.locked
    clock.now += 299
    assert not lock.tick()
    lock.touch()  # a touch restarts the idle time
    clock.now += 299
    assert not lock.tick() and not lock.locked
    clock.now += 1
    assert lock.tick() and lock.locked
    lock.unlock("anna", "246810")
    assert not lock.locked


def test_opening_a_project_creates_no_appliance_home(tmp_path: Path, monkeypatch) -> None:
    """A kiosk's read-only or absent home must not stop projects from opening."""
    root = tmp_path / "proj"
    Project.create(root, ["nucleus"]).close()
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "nowhere" / "home"))
    Project.open(root).close()
    assert not (tmp_path / "nowhere").exists()
