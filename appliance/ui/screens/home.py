"""Home: the projects on this tablet with progress, and the ways in and out of them.

Import and export run as background jobs with their own project handle, so a slow USB stick
never freezes the screen; their summaries come back as on-screen messages.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView

from appliance.bundles.archive import peek_format
from appliance.bundles.install import install_model_bundle
from appliance.bundles.training_job import FORMAT as TRAINING_JOB_FORMAT
from appliance.bundles.training_job import write_training_job
from appliance.errors import ApplianceError
from appliance.importer import IMPORTED_SUFFIXES, StackChoice, import_paths, microscope_files
from appliance.media import count_images
from appliance.microscope import MicroscopeInfo
from appliance.session.overview import overview
from appliance.store.at_rest import is_encrypted, is_unlocked
from appliance.store.project import Project
from appliance.ui.channel_chooser import ask_choices
from appliance.ui.sync_button import sync_row
from appliance.ui.widgets import ChooserPopup, Prompt, ScreenBg, button, label, page

NAME_ROOM = mm(55)  # width a project's name needs beside its actions


def duration(seconds: float) -> str:
    """`1 h 05 min`, `12 min`, `40 s`: how long someone has worked, at a glance."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def project_lines(path: Path) -> tuple[str, str]:
    """The project's summary and sync lines for its rows, from one look at it (an encrypted
    project before its PIN: only that it is locked)."""
    if is_encrypted(path) and not is_unlocked(path):
        return "encrypted · locked: tap Open and type your PIN", "sync: after the PIN"
    try:
        seen = overview(path)
    except ApplianceError as exc:
        return f"cannot open: {exc}", f"sync: cannot open ({exc})"
    status = seen.status
    summary = (
        f"{status['labeled_images']} / {status['images']} labeled · "
        f"{duration(status['seconds_spent'])} spent · {status['models']} models"
    )
    return summary, seen.sync


class HomeScreen(ScreenBg):
    """Project list with Open / Import / Models / Export per project, New project, annotator."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        # two short lines, so that a small window does not cut the name (issue 25)
        self.who = button(
            "",
            self._switch_annotator,
            size_hint_x=None,
            width=app.sidebar * 1.2,
            font_size=app.font_small,
            shorten=False,
            max_lines=2,
        )
        root = page(
            "Projects on this tablet",
            self.who,
            button("New project", self._new_project, size_hint_x=None, width=app.sidebar),
        )
        self.title = root.children[-1].children[-1]  # page()'s heading, left of the actions
        self.buttons: dict[tuple[str, str], object] = {}  # (project, action) -> button
        self.rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap * 2)
        self.rows.bind(minimum_height=self.rows.setter("height"))
        scroll = ScrollView(do_scroll_x=False, bar_width=app.gap * 2)
        scroll.add_widget(self.rows)
        root.add_widget(scroll)
        self.add_widget(root)
        self._relayout = Clock.create_trigger(lambda _dt: self._resized())
        Window.bind(size=lambda *_: self._relayout())

    def _resized(self) -> None:
        """The window turned or changed size: the rows choose their layout again."""
        if self.manager is not None and self.manager.current == self.name:
            self.refresh()

    def refresh(self) -> None:
        app = App.get_running_app()
        self.who.text = f"Annotator: {app.annotator}\ntap to switch"
        self.who.width = min(app.sidebar * 1.2, Window.width * 0.34)  # the title keeps room
        wide = Window.width - self.who.width - app.sidebar >= NAME_ROOM * 1.5
        self.title.text = "Projects on this tablet" if wide else "Projects"
        self.rows.clear_widgets()
        self.buttons.clear()
        dirs = app.project_dirs()
        if not dirs:
            self.rows.add_widget(label("No project yet: tap New project, then Import images."))
        for path in dirs:
            summary, sync = project_lines(path)
            self.rows.add_widget(self._row(path, summary))
            self.rows.add_widget(sync_row(path, sync, self.refresh, self.buttons))

    def _row(self, path: Path, summary: str) -> BoxLayout:
        """The project's name and summary, then its four actions: beside them where the window
        leaves the name `NAME_ROOM` of width, else on a row of their own under the name (an
        upright or small tablet), so that a name never wraps one letter per line."""
        app = App.get_running_app()
        actions = app.sidebar * 0.7 * 4
        beside = Window.width - actions - app.gap * 14 >= NAME_ROOM
        row = Factory.Panel(
            orientation="horizontal" if beside else "vertical",
            size_hint_y=None,
            height=app.touch * 1.9,
        )
        text = BoxLayout(orientation="vertical", size_hint_y=None, pos_hint={"center_y": 0.5})
        text.bind(minimum_height=text.setter("height"))
        buttons = row if beside else BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        below = 0 if beside else app.touch + app.gap

        # a long name wraps (the row grows) instead of being cut off
        def grow(_text: object, height: float) -> None:
            row.height = max(app.touch * 1.9, height + below + app.gap * 4)

        text.bind(height=grow)
        text.add_widget(Factory.THeading(text=path.name))
        text.add_widget(Factory.TLabel(text=summary, color=app.c_muted))
        row.add_widget(text)
        for title, action in (
            ("Open", lambda: app.open_project(path)),
            ("Import images", lambda: self._import(path)),
            ("Install models", lambda: self._install(path)),
            ("Export job", lambda: self.export(path)),
        ):
            size = {"size_hint": (None, None), "width": app.sidebar * 0.7} if beside else {}
            widget = button(title, action, pos_hint={"center_y": 0.5}, **size)
            self.buttons[(path.name, title)] = widget
            buttons.add_widget(widget)
        if not beside:
            row.add_widget(buttons)
        return row

    def _switch_annotator(self) -> None:
        App.get_running_app().go("welcome")

    def _new_project(self) -> None:
        def with_name(name: str) -> None:
            Prompt(
                "Classes, separated by commas",
                lambda classes: self._create(name, classes),
                hint="e.g. nucleus, debris",
            ).open()

        Prompt("Name of the new project", with_name).open()

    def _create(self, name: str, classes: str) -> None:
        app = App.get_running_app()
        path = app.create_project(name, classes.split(","))
        app.notify(f"project {path.name} created: now import images into it")
        self.refresh()

    def _import(self, path: Path) -> None:
        """The chooser opens on the tablet's image source (the stick chosen on first start,
        its image count in the title); a missing stick is a one-line message and the chooser
        opens at its usual place, so importing from elsewhere still works. Microscope files
        in what was chosen are looked into first (a background job: it opens the files) and
        the expert picks the channel (and series) of those that hold several
        (`ask_choices`); then the import runs in the background."""
        app = App.get_running_app()

        def work(folder: Path, choices: dict[Path, StackChoice]) -> list[str]:
            with Project.open(path) as project:
                summary = import_paths(project, [folder], choices=choices)
            return summary.lines()

        def run(folder: Path, choices: dict[Path, StackChoice]) -> None:
            app.notify(f"importing {folder} ...")
            app.run_job(lambda _ctx: work(folder, choices), self._imported)

        def cancelled() -> None:
            app.notify("import cancelled: nothing imported")

        def looked(folder: Path, found: list[MicroscopeInfo]) -> None:
            ask_choices(found, partial(run, folder), cancelled)

        def chosen(folder: Path) -> None:
            app.notify(f"looking into {folder} ...")
            app.run_job(lambda _ctx: microscope_files([folder]), partial(looked, folder))

        title, start = "Import images from a folder (or USB stick)", None
        source = app.image_source()
        if source is not None:
            try:
                start = source.locate()
            except ApplianceError as exc:
                app.notify(str(exc), error=True)
        if source is not None and start is not None:
            images, more = count_images(start)
            title = f"Import from {source.describe()} ({images}{'+' if more else ''} images)"
        ChooserPopup(title, chosen, start=start, suffixes=IMPORTED_SUFFIXES).open()

    def _imported(self, lines: list[str]) -> None:
        """The summary line and its first failure, else its first note (what was imported
        of a microscope file, the series left out): tap the message to read it whole."""
        app = App.get_running_app()
        failed = [line for line in lines[1:] if line.startswith("failed:")]
        more = failed or lines[1:]
        app.notify(lines[0] + (f" — {more[0]}" if more else ""), error=bool(failed))
        app.refresh_selector()  # features of the new images (incremental; no-op when closed)
        self.refresh()

    def _install(self, path: Path) -> None:
        app = App.get_running_app()

        def work(bundle: Path) -> list[str]:
            with Project.open(path) as project:
                return install_model_bundle(project, bundle)

        def chosen(bundle: Path) -> None:
            def done(ids: list[str]) -> None:
                app.notify(f"installed {len(ids)} model(s) from {bundle.name}")
                app.refresh_selector()  # a new pre-label model: its uncertainty scores
                self.refresh()

            app.run_job(lambda _ctx: work(bundle), done)

        ChooserPopup(
            "Install a model bundle",
            chosen,
            suffixes=(".zip", ".bundle"),
            pick_folder=False,
            accept=lambda p: peek_format(p) != TRAINING_JOB_FORMAT,
        ).open()

    def export(self, path: Path) -> None:
        app = App.get_running_app()

        def work(folder: Path) -> str:
            with Project.open(path) as project:
                out = folder / f"{path.name}-training-job-{utc_stamp()}.zip"
                job_id, _counts = write_training_job(project, out)
            # no image count: it leaves controls out, and the difference to the labeled count
            # above would tell the annotator how many hidden controls they met
            return f"exported a training job to {out.name} (job {job_id[:8]})"

        def chosen(folder: Path) -> None:
            app.run_job(lambda _ctx: work(folder), app.notify)

        ChooserPopup("Export a training job into a folder (or USB stick)", chosen).open()


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
