"""Home and the annotate status line read a project cheaply, whatever its size.

The status line is refreshed once a second: it listed every labelled image to count them. Home
opened each project twice per visit (summary, then sync line), each time with SQLite's integrity
check (about 0.4 s at 100,000 images). The assertions count statements and opens, never time;
`bench/store.py` measures both at 100,000 images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.session.overview import overview
from appliance.session.presenter import AnnotatePresenter
from appliance.store import Project
from appliance.store import db as dbm
from appliance.sync.client import status_line
from tests.ui.projects import make_project
from tests.ui.test_presenter import Jobs, View


def label_all(project: Project, leave: int = 0) -> None:
    """Save a label on every image but the last `leave`."""
    for rec in project.images()[: len(project.images()) - leave]:
        inst = np.zeros((rec.height, rec.width), np.uint32)
        inst[2:6, 2:6] = 1
        project.save_label(rec.id, Label(inst, {1: 1}), author="a", source="manual")


def test_the_status_line_counts_without_listing_images(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", n=6, size=64)
    label_all(project, leave=1)
    jobs, view = Jobs(), View()
    presenter = AnnotatePresenter(project, "Dr Test", view, jobs)
    try:
        presenter.start()
        jobs.settle(lambda: presenter.work is not None)
        statements: list[str] = []
        project.db.set_trace_callback(statements.append)  # this thread's connection
        status = presenter.status()
        project.db.set_trace_callback(None)
        assert status is not None and status.total == 6
        # the visible-versions count and the supervision setting it depends on; no id list
        assert 1 <= len(statements) <= 2
        assert all("count(" in sql or "FROM settings" in sql for sql in statements)
    finally:
        jobs.runner.shutdown()
        project.close()


def test_home_looks_at_each_project_once_without_the_integrity_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "p", n=3, size=64)
    label_all(project)
    expected = project.status(), status_line(project)
    project.close()
    opened: list[Path] = []
    real_init = Project.__init__

    def counting_init(
        self: Project, root: Path, migrate: bool = True, key: bytes | None = None
    ) -> None:
        opened.append(Path(root))
        real_init(self, root, migrate, key)

    def no_check(path: Path) -> None:
        raise AssertionError(f"integrity check on {path} for a look at counts")

    monkeypatch.setattr(Project, "__init__", counting_init)
    monkeypatch.setattr(dbm, "quick_check", no_check)
    seen = overview(tmp_path / "p")
    assert (seen.status, seen.sync) == expected
    assert opened == [tmp_path / "p"]


def test_home_names_a_damaged_or_missing_project_in_one_line(tmp_path: Path) -> None:
    Project.create(tmp_path / "p", ["cell"]).close()
    (tmp_path / "p" / "project.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ApplianceError, match=r"project\.db: not a readable project database"):
        overview(tmp_path / "p")
    with pytest.raises(ApplianceError, match="no project here"):
        overview(tmp_path / "none")


def test_a_project_that_needs_a_migration_gets_the_full_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an update the first look migrates, through `open` and its integrity check."""
    Project.create(tmp_path / "p", ["cell"]).close()
    checked: list[Path] = []
    real_check = dbm.quick_check
    monkeypatch.setattr(dbm, "applied_migrations", lambda path, key=None: [])  # an old project
    monkeypatch.setattr(
        dbm, "quick_check", lambda path, key=None: checked.append(path) or real_check(path, key)
    )
    assert overview(tmp_path / "p").status["classes"] == 1
    assert checked == [tmp_path / "p" / "project.db"]
