"""The Sync button of the Home screen: enroll once (server address and one-time code), then
push and pull in the background; the result comes back as an on-screen message.

Only touches and messages live here; the sync itself is `appliance.sync.client`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.boxlayout import BoxLayout

from appliance.errors import ApplianceError
from appliance.store.project import Project
from appliance.sync.client import enroll, status_line, sync_project
from appliance.sync.credentials import project_credentials
from appliance.ui.widgets import Prompt, button


def sync_row(path: Path, refresh: Callable[[], None], buttons: dict) -> BoxLayout:
    """A slim row under a project's row: its sync state in one line and the Sync button
    (registered in `buttons` as (project name, "Sync"), like the row's other buttons)."""
    app = App.get_running_app()
    row = Factory.Panel(orientation="horizontal", size_hint_y=None, height=app.touch * 1.1)
    try:
        with Project.open(path) as project:
            line = status_line(project)
    except ApplianceError as exc:
        line = f"sync: cannot open ({exc})"
    row.add_widget(Factory.TLabel(text=line, color=app.c_muted, shorten=True))
    widget = button(
        "Sync",
        lambda: sync_now(path, refresh),
        size_hint=(None, None),
        width=app.sidebar * 0.7,
        pos_hint={"center_y": 0.5},
    )
    buttons[(path.name, "Sync")] = widget
    row.add_widget(widget)
    return row


def sync_now(path: Path, refresh: Callable[[], None]) -> None:
    """Sync `path`; the first time ask for the lab server's address and a one-time code."""
    with Project.open(path) as project:
        enrolled = project_credentials(project) is not None  # kept outside the project
    if enrolled:
        _run(path, refresh, None)
        return

    def with_server(server: str) -> None:
        Prompt(
            "One-time code from the lab (appliance-lab enroll)",
            lambda code: _run(path, refresh, (server.strip(), code.strip())),
        ).open()

    Prompt("Lab server address", with_server, text="https://").open()


def _run(path: Path, refresh: Callable[[], None], enrollment: tuple[str, str] | None) -> None:
    app = App.get_running_app()

    def work(_ctx: object) -> str:
        with Project.open(path) as project:
            if enrollment is not None:
                enroll(project, *enrollment, name=app.annotator)
            return sync_project(project).line()

    def done(line: str) -> None:
        app.notify(f"{path.name}: {line}")
        refresh()

    def failed(exc: BaseException) -> None:
        app.show_error(exc)
        refresh()

    app.notify(f"syncing {path.name} ...")
    app.run_job(work, done, failed=failed)
