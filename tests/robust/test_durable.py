"""The one durable write, killed between each of its steps: the target is old or new, never a
mix, and `appliance check --repair` sweeps what the kill left (issue 17, item 2)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.durable import TEMP_GLOB, atomic_write
from tests.robust.conftest import cli

OLD, NEW = b"old" * 1000, b"new" * 40000

CHILD = r"""
import os, signal, sys
from pathlib import Path
import appliance.durable as durable

target, step = Path(sys.argv[1]), sys.argv[2]
new = b"new" * 40000
def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)
real_fsync = os.fsync
fsyncs = []
def fsync(fd):
    fsyncs.append(fd)
    if (step == "before file fsync" and len(fsyncs) == 1) or (
        step == "before folder fsync" and len(fsyncs) == 2):
        die()
    real_fsync(fd)
os.fsync = fsync
if step == "before rename":
    os.replace = die
content = new
if step == "mid-write":
    def content(fh):
        fh.write(new[: len(new) // 2]); fh.flush(); die()
durable.atomic_write(target, content)
die()  # "after": killed once the write returned
"""

STEPS = ["mid-write", "before file fsync", "before rename", "before folder fsync", "after"]


@pytest.mark.parametrize("step", STEPS)
def test_kill_between_steps(tmp_path: Path, step: str) -> None:
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", "a").rc == 0
    target = root / "images" / "prefs.json"
    atomic_write(target, OLD)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(target), step], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    expected = NEW if step in ("before folder fsync", "after") else OLD
    assert target.read_bytes() == expected
    left = list(target.parent.glob(TEMP_GLOB))
    assert len(left) == (1 if step in ("mid-write", "before file fsync", "before rename") else 0)
    res = cli("check", root, "--repair")
    assert res.rc == 0, res.out
    assert not list(target.parent.glob(TEMP_GLOB))


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write(target, OLD)

    def boom(fh: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, boom)
    assert target.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
