"""The kiosk lock: a project with PINs opens on the lock screen, a wrong PIN is refused on
screen, the right one shows the image, and idle minutes lock it again (real app, Xvfb)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.security import vault
from appliance.security.home import HOME_ENV
from testkit.touch import tap, wait_for
from tests.ui.projects import make_project


@pytest.mark.slow
def test_project_with_pins_opens_locked_and_locks_again_when_idle(
    app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))  # back-off state of this test only
    monkeypatch.setattr(vault, "KDF", {"time_cost": 1, "memory_cost": 8 * 1024, "parallelism": 1})
    monkeypatch.setitem(app.prefs, "lock_minutes", 0.03)  # about 2 s
    project = make_project(tmp_path / "locked", n=2)
    root = project.root
    project.close()
    vault.create_keys(root, app.annotator, "246810")
    app.errors.clear()
    app.open_project(root)
    now = _still_clock(app)
    lock = app.sm.get_screen("lock")
    assert app.sm.current == "lock" and app.idle_lock.locked
    lock.field.text = "000000"
    tap(lock.unlock_button)
    wait_for(lambda: "wrong" in lock.note.text)
    assert app.sm.current == "lock" and lock.field.text == ""
    lock.field.text = "246810"
    tap(lock.unlock_button)
    wait_for(lambda: app.sm.current == "annotate")
    annotate = app.sm.get_screen("annotate")
    wait_for(lambda: annotate.work is not None or app.errors)  # opened in the background
    assert not app.errors, app.errors
    image_id = annotate.work.image_id
    now[0] += 2.0  # the idle minutes pass
    wait_for(lambda: app.sm.current == "lock")  # idle: locked again
    lock.field.text = "246810"
    tap(lock.unlock_button)
    wait_for(lambda: app.sm.current == "annotate")
    assert annotate.work.image_id == image_id  # the same image, kept under the lock
    app.idle_lock = None
    app.go("home")
    assert not app.errors


@pytest.mark.slow
def test_an_encrypted_project_is_read_only_after_its_pin(
    app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encrypted at rest: the lock screen comes before any read of the project, the PIN's key
    opens the store, and the idle lock forgets the key (new opens need the PIN again)."""
    from appliance.errors import ApplianceError
    from appliance.store import Project, at_rest

    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(vault, "KDF", {"time_cost": 1, "memory_cost": 8 * 1024, "parallelism": 1})
    monkeypatch.setitem(app.prefs, "lock_minutes", 0.03)  # about 2 s
    project = make_project(tmp_path / "sealed", n=2)
    root = project.root
    project.close()
    at_rest.encrypt(root, vault.create_keys(root, app.annotator, "246810"))
    from appliance.ui.screens.home import project_lines

    assert project_lines(root)[0].startswith("encrypted · locked")  # Home, before the PIN
    app.errors.clear()
    app.open_project(root)
    now = _still_clock(app)
    lock = app.sm.get_screen("lock")
    assert app.sm.current == "lock" and app.project is None  # nothing was read yet
    assert "sealed is locked" in lock.title.text
    lock.field.text = "000000"
    tap(lock.unlock_button)
    wait_for(lambda: "wrong" in lock.note.text)
    assert app.project is None
    lock.field.text = "246810"
    tap(lock.unlock_button)
    wait_for(lambda: app.sm.current == "annotate")
    assert app.project is not None and app.project.encrypted
    annotate = app.sm.get_screen("annotate")
    wait_for(lambda: annotate.work is not None or app.errors)
    assert not app.errors, app.errors
    image_id = annotate.work.image_id
    now[0] += 2.0  # the idle minutes pass
    wait_for(lambda: app.sm.current == "lock")  # idle: locked, the key forgotten
    with pytest.raises(ApplianceError, match="locked"):
        Project.open(root)
    lock.field.text = "246810"
    tap(lock.unlock_button)
    wait_for(lambda: app.sm.current == "annotate")
    assert annotate.work.image_id == image_id
    Project.open(root).close()  # unlocked again: jobs and screens can open it
    assert "/ 2 labeled" in project_lines(root)[0]  # unlocked: Home shows its counts
    app.idle_lock = None
    app.go("home")
    assert not app.errors


def _still_clock(app) -> list[float]:
    """The open project's idle lock on a clock that moves only when the test moves it (the
    returned list's one value): on the wall clock, a machine slow to open the image after the
    right PIN was locked again before the image was shown, and the test failed."""
    now = [0.0]
    app.idle_lock.clock = lambda: now[0]
    app.idle_lock.touch()
    return now
