"""Home's Sync button against a real lab server on 127.0.0.1: the first tap asks for the
server and a one-time code, enrolls and syncs; the row then shows nothing waiting."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.store import oplog
from appliance.store.project import Project
from export.lab.app import LabConfig
from export.lab.serve import LabServer
from testkit.touch import tap, wait_for
from tests.ui.projects import make_project


@pytest.mark.slow
def test_sync_button_enrolls_syncs_and_shows_the_state(app, tmp_path: Path) -> None:
    from kivy.core.window import Window

    from appliance.ui.widgets import Prompt

    make_project(app.workspace / "sync-test", n=2).close()
    app.errors.clear()
    app.go("home")
    home = app.sm.get_screen("home")
    assert "sync: not enrolled · 2 changes waiting" in _row_text(home, "sync-test")
    with LabServer(LabConfig(tmp_path / "lab", page_key="k")) as lab:
        code, _ = lab.store.create_enrollment("kidney", "tablet", "t")
        tap(home.buttons[("sync-test", "Sync")])
        for answer in (lab.url, code):
            prompt = next(w for w in Window.children if isinstance(w, Prompt))
            prompt.field.text = answer
            _press_ok(prompt)
        wait_for(lambda: "pushed 2 operations and 2 blobs" in app.message.text, timeout=60)
        assert not app.message.error
        assert len(lab.store.pull_ops(1, 0, 100)) == 2
        wait_for(lambda: "sync: 0 changes waiting" in _row_text(home, "sync-test"))
        # later taps sync straight away
        tap(home.buttons[("sync-test", "Sync")])
        wait_for(lambda: "pushed 0 operations" in app.message.text, timeout=60)
    with Project.open(app.workspace / "sync-test") as project:
        assert oplog.get_state(project.db, "lab_project") == "kidney"
    assert not app.errors


def _row_text(home, name: str) -> str:
    button = home.buttons[(name, "Sync")]
    row = button.parent
    texts = []
    for child in row.walk(restrict=True):
        if hasattr(child, "text") and child is not button:
            texts.append(str(child.text))
    return " | ".join(texts)


def _press_ok(prompt) -> None:
    ok = next(w for w in prompt.walk(restrict=True) if getattr(w, "text", None) == "OK")
    tap(ok)
