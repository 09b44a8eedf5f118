"""One SQLite connection per thread (`Project.db`), never one shared by the UI and the workers.

With the single connection opened `check_same_thread=False`, the UI thread read rows another
thread had not committed yet, and two threads' transactions interleaved on one connection.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from appliance.labels import Label
from appliance.store import Project


def in_thread(fn):  # type: ignore[no-untyped-def]
    """Run `fn` on a new thread and return what it returned (re-raising what it raised)."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


def test_each_thread_has_its_own_connection(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p", ["cell"]) as project:
        mine = project.db
        assert project.db is mine  # the same one for the same thread
        theirs = in_thread(lambda: project.db)
        assert theirs is not mine


def test_a_thread_never_sees_another_threads_uncommitted_writes(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p", ["cell"]) as project:
        inside, read = threading.Event(), threading.Event()
        seen: list[object] = []

        def reader() -> None:
            inside.wait()
            seen.append(project.get_setting("probe"))
            read.set()

        t = threading.Thread(target=reader)
        t.start()
        with project.transaction():
            project.db.execute("INSERT INTO settings (key, value) VALUES ('probe', '1')")
            inside.set()
            assert read.wait(30)
        t.join()
        assert seen == [None]  # a shared connection showed the row before its commit
        assert in_thread(lambda: project.get_setting("probe")) == 1


def test_threads_save_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p", ["cell"]) as project:
        project.db.execute(
            "INSERT INTO images (sha256, name, blob, height, width, channels, dtype, added) "
            "VALUES ('ab', 'a.tif', 'images/a.tif', 8, 8, 1, 'uint8', 'now')"
        )
        image_id = project.images()[0].id
        start = threading.Barrier(4)
        errors: list[BaseException] = []

        def saver(k: int) -> None:
            inst = np.zeros((8, 8), np.uint32)
            inst[k, :] = 1
            start.wait()
            try:
                for _ in range(5):
                    project.save_label(
                        image_id, Label(inst, {1: 1}), author=f"t{k}", source="manual"
                    )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=saver, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(project.history(image_id)) == 20


def test_close_closes_every_threads_connection(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", ["cell"])
    worker_conn = in_thread(lambda: project.db)
    project.close()
    with pytest.raises(sqlite3.ProgrammingError):
        worker_conn.execute("SELECT 1")  # type: ignore[union-attr]
    with pytest.raises(sqlite3.ProgrammingError):
        in_thread(lambda: project.db)  # a closed project opens no new connection


def test_finished_threads_connections_are_closed(tmp_path: Path) -> None:
    """Each sync starts new upload workers: their connections must not pile up."""
    with Project.create(tmp_path / "p", ["cell"]) as project:
        gone = in_thread(lambda: project.db)
        in_thread(lambda: project.classes())  # a new thread connects, the dead one's goes
        with pytest.raises(sqlite3.ProgrammingError):
            gone.execute("SELECT 1")  # type: ignore[union-attr]
        assert project.classes() == {1: "cell"}
