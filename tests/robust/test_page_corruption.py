"""Each page of a small project.db corrupted in turn: every command works or refuses in one line,
and none writes into a file that fails SQLite's quick_check (#6)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.robust.conftest import Result, cli

READ_ONLY = (
    ("status",),
    ("log", "img1"),
    ("export-coco", "{tmp}/out.json"),
    ("inspect", "img1"),
)
WRITING = (
    ("import", "{new}"),
    ("prelabel", "--image", "img2", "--method", "otsu"),
    ("export-job", "{tmp}/job.zip"),
)
CHECK = ("check",)


def passes_quick_check(db: Path, scratch: Path) -> bool:
    copy = scratch / "qc.db"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    conn.text_factory = bytes
    try:
        return [r[0] for r in conn.execute("PRAGMA quick_check")] == [b"ok"]
    except (sqlite3.DatabaseError, UnicodeDecodeError):
        return False
    finally:
        conn.close()
        copy.unlink()


def run(root: Path, cmd: tuple[str, ...], tmp: Path, new: Path) -> Result:
    args = [a.format(tmp=tmp, new=new) for a in cmd]
    return cli(args[0], root, *args[1:])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["whole page", "64 bytes mid-page"])
def test_every_page_corrupted_in_turn(labeled: Path, tmp_path: Path, how: str) -> None:
    new = tmp_path / "new.png"
    cv2.imwrite(str(new), (np.arange(32 * 40) % 251).astype(np.uint8).reshape(32, 40))
    baseline = {cmd: run(labeled, cmd, tmp_path, new) for cmd in READ_ONLY}
    assert all(r.rc == 0 for r in baseline.values())
    db = labeled / "project.db"
    assert not (labeled / "project.db-wal").exists()
    data = db.read_bytes()
    page = int.from_bytes(data[16:18], "big") or 65536
    pages = len(data) // page
    assert pages >= 8
    refused = detected = 0
    for n in range(pages):
        start = 100 if n == 0 else n * page  # page 1 keeps the 100-byte file header
        end = (n + 1) * page
        if how != "whole page":
            start, end = n * page + page // 2, n * page + page // 2 + 64
        bad = bytearray(data)
        bad[start:end] = bytes([0xA5]) * (end - start)
        root = tmp_path / "work"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(labeled, root)
        for cmd in (*READ_ONLY, *WRITING, CHECK):
            for side in ("project.db-wal", "project.db-shm"):
                (root / side).unlink(missing_ok=True)
            (root / "project.db").write_bytes(bytes(bad))
            damaged = not passes_quick_check(root / "project.db", tmp_path)
            detected += damaged and cmd != CHECK
            res = run(root, cmd, tmp_path, new)
            where = f"page {n + 1}, {' '.join(cmd)}: rc {res.rc} {res.err!r}"
            assert res.rc in (0, 1, 2), where
            if res.rc == 2:
                refused += 1
                assert len(res.err.splitlines()) == 1 and res.err.startswith("error: "), where
            if damaged:
                assert (root / "project.db").read_bytes() == bytes(bad), where
                if cmd == CHECK:
                    assert res.rc == 1 and res.out.startswith("database: damaged"), where
                    continue
                assert res.rc == 2, where
            elif res.rc == 0 and cmd in baseline:
                expected = baseline[cmd].out.replace(str(labeled), str(root))
                assert res.out == expected, where
    print(f"{pages} pages, {detected} damaged runs, {refused} refused")
    assert refused >= detected
