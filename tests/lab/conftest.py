"""Lab server fixtures: a real uvicorn server on 127.0.0.1 over SQLite, and over a real
PostgreSQL started from the OS binaries when they are installed (skipped visibly otherwise)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store import Project
from appliance.sync.client import enroll
from appliance.sync.http import Retry
from export.lab.app import LabConfig
from export.lab.serve import LabServer

FAST_RETRY = dict(attempts=40, base=0.001, cap=0.02, deadline=30.0)


def fast_retry(seed: int = 0) -> Retry:
    import random

    return Retry(**FAST_RETRY, rng=random.Random(seed))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl), run as a non-root user."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.skip("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)")
        self.bin = Path(bins[-1]).parent
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                pytest.skip("running as root and no 'postgres' user to run PostgreSQL as")
        self.dir = Path(tempfile.mkdtemp(prefix="lab-pg-"))
        self.port = free_port()
        if self.user:
            shutil.chown(self.dir, self.user)
        self._run(["initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres"])
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.dir / "data"),
                "-w",
                "-t",
                "30",
                "-l",
                str(self.dir / "log"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200",
                "start",
            ]
        )

    def _run(self, cmd: list[str]) -> None:
        full = [str(self.bin / cmd[0]), *cmd[1:]]
        if self.user:
            full = ["runuser", "-u", self.user, "--", *full]
        subprocess.run(full, check=True, capture_output=True, timeout=60)

    def new_database(self) -> str:
        import psycopg

        name = f"lab_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(["pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pg = Postgres()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path) -> str | None:
    """None for the default SQLite file, else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").new_database()


def make_config(root: Path, database: str | None, **kw) -> LabConfig:
    kw.setdefault("enroll_per_minute", 100_000)  # tests enroll hundreds of tablets
    return LabConfig(root=root, database=database, page_key="page-key", **kw)


@pytest.fixture
def lab(tmp_path: Path, database: str | None) -> Iterator[LabServer]:
    with LabServer(make_config(tmp_path / "lab", database)) as server:
        yield server


def write_images(folder: Path, n: int, seed: int, size: int = 16) -> list[Path]:
    """Tiny 16-bit PNGs, distinct per (seed, i)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = rng.integers(0, 65535, (size, size), dtype=np.uint16)
        path = folder / f"img{seed}_{i}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def tablet(
    root: Path, server: LabServer, project: str, name: str, retry: Retry | None = None
) -> Project:
    """A new tablet project enrolled in `project` with a fresh one-time code."""
    p = Project.create(root, ["nucleus"])
    code, _ = server.store.create_enrollment(project, "tablet", name)
    enroll(p, server.url, code, name, retry=retry)
    return p


def label_for(project: Project, image_id: int, seed: int) -> Label:
    rec = project.image(image_id)
    rng = np.random.default_rng(seed)
    inst = np.zeros((rec.height, rec.width), np.uint16)
    y, x = rng.integers(0, rec.height - 4), rng.integers(0, rec.width - 4)
    inst[y : y + 4, x : x + 4] = 1
    return Label(inst, {1: 1})


def add_work(project: Project, folder: Path, images: int, labels: int, seed: int) -> None:
    """Import `images` tiny images and save `labels` versions spread over them."""
    import_paths(project, write_images(folder, images, seed))
    ids = [r.id for r in project.images()]
    rng = np.random.default_rng(seed)
    for k in range(labels):
        image_id = int(ids[rng.integers(len(ids))])
        parent = project.latest_label(image_id)
        project.save_label(
            image_id,
            label_for(project, image_id, seed * 1000 + k),
            author=f"a{seed}",
            source="manual",
            parent_id=parent.id if parent else None,
        )
