"""Helpers for the robustness tests: run the CLI in-process and prove a project unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.cli import main
from appliance.labels import Label
from appliance.store import Project


@dataclass
class Result:
    rc: int
    out: str
    err: str


def cli(*args: object) -> Result:
    """`appliance ARGS` in this process: a traceback escapes as an exception and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusals
            rc = int(exc.code or 0)
    return Result(rc, out.getvalue(), err.getvalue())


def assert_one_line_refusal(res: Result, *needles: str) -> None:
    """Exit 2, exactly one line on stderr starting with `error:`, no traceback."""
    assert res.rc == 2, (res.rc, res.out, res.err)
    lines = res.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def db_dump(path: Path) -> list[str]:
    """Every row and schema statement, through a read-only connection (writes nothing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    except sqlite3.DatabaseError as exc:  # a damaged file: its bytes are compared anyway
        return [f"unreadable: {exc}"]
    finally:
        conn.close()


def frozen(root: Path) -> dict[str, str]:
    """sha256 of every file under a closed project plus a dump of its database."""
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-shm", "-wal"))
    }
    files["<dump>"] = hashlib.sha256("\n".join(db_dump(root / "project.db")).encode()).hexdigest()
    return files


@contextlib.contextmanager
def unchanged(root: Path) -> Iterator[None]:
    """The project's files and database dump are byte-identical after the block."""
    before = frozen(root)
    yield
    assert frozen(root) == before


@pytest.fixture
def labeled(tmp_path: Path) -> Path:
    """A closed project: img1 (3 manual instances), img2 (unlabeled), in folder `imgs`."""
    root = tmp_path / "proj"
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("img1", "img2"):
        tifffile.imwrite(folder / f"{name}.tif", (rng.random((32, 40)) * 60000).astype(np.uint16))
    assert cli("init", root, "--classes", "nucleus,debris").rc == 0
    assert cli("import", root, folder).rc == 0
    inst = np.zeros((32, 40), np.uint32)
    inst[2:8, 2:8], inst[10:20, 10:20], inst[22:30, 25:35] = 1, 2, 3
    with Project.open(root) as project:
        rec = project.find_image("img1")
        project.save_label(rec.id, Label(inst, {1: 1, 2: 1, 3: 2}), author="ann", source="manual")
    return root
