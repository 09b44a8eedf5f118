"""SIGKILL a process in the middle of saving label versions, over and over.

Every save the child acknowledged (printed after commit) must survive, and the database must
pass SQLite's integrity check after each kill.
"""

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.importer import import_paths
from appliance.store import Project

CHILD = r"""
import sys, uuid
import numpy as np
import pytest
from appliance.labels import Label
from appliance.store import Project
p = Project.open(sys.argv[1])
image_id = p.images()[0].id
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
while True:
    arr = rng.integers(0, 40, (256, 256)).astype(np.uint32)
    uid = uuid.uuid4().hex
    p.save_label(image_id, Label(arr), author="child", source="manual", uid=uid)
    print(uid, flush=True)
"""


def _read_acks(proc: subprocess.Popen, until: float | None, acked: list[str]) -> None:
    """Acks printed until `until` (monotonic), or until the pipe's end (None: the child is
    dead, so its end comes; a deadline there would drop the last acks on a slow machine)."""
    fd = proc.stdout.fileno()
    buf = b""
    while until is None or time.monotonic() < until:
        left = None if until is None else max(0.0, until - time.monotonic())
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        acked.extend(ln.decode() for ln in lines if ln and ln != b"ready")


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_save(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with Project.create(root, ["cell"]) as project:
        tifffile.imwrite(tmp_path / "a.tif", np.zeros((256, 256), np.uint16))
        import_paths(project, [tmp_path / "a.tif"])
    rnd = random.Random(7)
    acked: list[str] = []
    for kill in range(22):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(kill)],
            stdout=subprocess.PIPE,
            bufsize=0,  # unbuffered: readline takes "ready" only, the acks after it stay for select
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        assert proc.stdout.readline().strip() == b"ready"
        _read_acks(proc, time.monotonic() + rnd.uniform(0.02, 0.4), acked)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _read_acks(proc, None, acked)  # acks flushed just before the kill

        conn = sqlite3.connect(root / "project.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        present = {r[0] for r in conn.execute("SELECT uid FROM labels")}
        conn.close()
        missing = [uid for uid in acked if uid not in present]
        assert not missing, f"kill {kill}: {len(missing)} acknowledged saves lost"
        with Project.open(root) as project:
            latest = project.latest_label(project.images()[0].id)
            if latest is not None:
                assert latest.label.shape == (256, 256)
    assert len(acked) > 20
