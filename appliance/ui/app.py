"""The Kivy application: screens, theme, messages, background jobs, tablet preferences.

Every failure ends as a one-line message on screen, never as a crash: `ApplianceError`s (bad
files, bad bundles, model errors) carry a message made for users; anything else reaching Kivy's
event loop is caught by an exception handler, logged with its traceback, shown as a short
message, and the app goes on. Unexpected errors are also kept in `App.errors` for the UI tests.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.base import ExceptionHandler, ExceptionManager
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import ListProperty, NumericProperty, StringProperty
from kivy.uix.screenmanager import NoTransition

from appliance.assist.jobs import CANCELLED, Job, JobContext, JobRunner
from appliance.durable import atomic_write
from appliance.errors import ApplianceError, os_problem
from appliance.media import ImageSource
from appliance.session.idle_lock import DEFAULT_IDLE_MINUTES, IdleLock
from appliance.store.at_rest import forget as forget_key
from appliance.store.at_rest import is_encrypted
from appliance.store.db import DatabaseError
from appliance.store.project import DB_NAME, Project
from appliance.ui import theme
from appliance.ui.palm import PalmGuard
from appliance.ui.widgets import MessageBar, Screens

log = logging.getLogger(__name__)
PREFS_FILE = "tablet.json"
VISITS = ("annotate", "settings", "models", "gallery", "lock")  # screens that keep the open image
STYLE = Path(__file__).with_name("style.kv")


class _ShowErrors(ExceptionHandler):
    """Turns an exception escaping a callback into a message; the event loop carries on."""

    def __init__(self, app: ApplianceApp) -> None:
        self.app = app

    def handle_exception(self, inst: BaseException) -> int:
        if isinstance(inst, KeyboardInterrupt | SystemExit):
            return ExceptionManager.RAISE
        self.app.show_error(inst)
        return ExceptionManager.PASS


class ApplianceApp(App):
    """The tablet app over a workspace folder of projects (or one project folder)."""

    title = "Annotation appliance"
    c_bg = ListProperty(theme.DARK.background)
    c_panel = ListProperty(theme.DARK.panel)
    c_button = ListProperty(theme.DARK.button)
    c_active = ListProperty(theme.DARK.button_active)
    c_text = ListProperty(theme.DARK.text)
    c_muted = ListProperty(theme.DARK.muted)
    c_error = ListProperty(theme.DARK.error)
    c_ok = ListProperty(theme.DARK.ok)
    c_track = ListProperty(theme.DARK.track)
    touch = NumericProperty(theme.TOUCH)
    gap = NumericProperty(theme.GAP)
    font = NumericProperty(theme.FONT)
    font_small = NumericProperty(theme.FONT_SMALL)
    font_big = NumericProperty(theme.FONT_BIG)
    sidebar = NumericProperty(theme.SIDEBAR)
    annotator = StringProperty("")
    busy = NumericProperty(0)

    def __init__(self, workspace: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workspace = Path(workspace)
        self.project: Project | None = None
        self.idle_lock: IdleLock | None = None  # the open project's PIN lock
        self.pending_project: Path | None = None  # an encrypted project waiting for its PIN
        self.errors: list[BaseException] = []
        # the open image's work beside the next one's prefetch and the resting-pen check
        self.jobs = JobRunner(workers=3)
        # versions stored off the UI thread, one at a time and in order (`run_write`)
        self.writes = JobRunner(workers=1)
        self.prefs: dict[str, Any] = {}
        self.sm: Screens | None = None
        self.message: MessageBar | None = None
        self._live: list[Job] = []
        self.selector_job: Job | None = None

    # ----- life cycle ----------------------------------------------------------------------
    def build(self) -> PalmGuard:
        from appliance.ui.screens import SCREENS

        Builder.load_file(str(STYLE))
        ExceptionManager.add_handler(_ShowErrors(self))
        self.prefs = self._load_prefs()
        self.annotator = str(self.prefs.get("annotator", ""))
        root = PalmGuard()
        root.bind(on_touch_down=self._touched)
        self.sm = Screens(transition=NoTransition())
        for name, cls in SCREENS.items():
            self.sm.add_widget(cls(name=name))
        root.add_widget(self.sm)
        self.message = MessageBar()
        self.apply_theme(str(self.prefs.get("theme", "dark")))
        Clock.schedule_once(lambda _dt: self.start(), 0)
        Clock.schedule_interval(self._poll_jobs, 0.2)
        Clock.schedule_interval(self._check_idle, 1.0)
        return root

    def start(self) -> None:
        """First screen: the name question on first start, else the single project or Home."""
        if not self.annotator:
            self.go("welcome")
        elif self.is_single_project():
            self.open_project(self.workspace)
        else:
            self.go("home")

    def on_stop(self) -> None:
        if self.sm is not None:
            self.sm.get_screen("annotate").leave()
        self.jobs.shutdown(wait=False)
        self.writes.shutdown(wait=True)  # the annotate screen settled its save on leaving
        if self.project is not None:
            self.project.close()
        forget_key()  # every unlocked key leaves with the app

    def _touched(self, *_args: object) -> None:
        """Any touch restarts the idle time (returns None: the touch goes on to the widgets)."""
        if self.idle_lock is not None:
            self.idle_lock.touch()

    def _check_idle(self, _dt: float) -> None:
        """Lock the open project after its idle minutes; the lock screen hides it."""
        if self.idle_lock is None or self.sm is None or self.sm.current == "lock":
            return
        self.idle_lock.tick()
        if self.idle_lock.locked and self.sm.current in VISITS:
            self.sm.get_screen("lock").back_to = self.sm.current
            self.go("lock")

    # ----- navigation and projects ---------------------------------------------------------
    def go(self, name: str) -> None:
        """Show a screen. Settings, Models, Gallery are visits: the annotate screen keeps its image,
        undo stack, class, zoom and pan; any other screen leaves the project's image."""
        assert self.sm is not None
        if self.sm.current == "annotate" and name not in VISITS:
            self.sm.get_screen("annotate").leave()
        if self.message is not None and name != self.sm.current:
            self.message.hide()  # it spoke of the screen left; on the next it covers buttons
        self.sm.current = name
        refresh = getattr(self.sm.current_screen, "refresh", None)
        if refresh is not None:
            self.safely(refresh)

    def is_single_project(self) -> bool:
        return (self.workspace / DB_NAME).is_file()

    def project_dirs(self) -> list[Path]:
        """Project folders of the workspace (or the workspace itself when it is a project)."""
        if self.is_single_project():
            return [self.workspace]
        if not self.workspace.is_dir():
            return []
        return sorted(p for p in self.workspace.iterdir() if (p / DB_NAME).is_file())

    def open_project(self, path: Path) -> None:
        """Open a project and go to its next image. An encrypted project cannot even be read
        before its PIN: the lock screen comes first and opens it (`unlocked`)."""
        lock = IdleLock(path, float(self.prefs.get("lock_minutes", DEFAULT_IDLE_MINUTES)))
        if lock.locked and is_encrypted(path):
            assert self.sm is not None
            if self.project is not None:
                self.go("home")
                self.project.close()
                forget_key(self.project.root)
                self.project = None
            self.idle_lock, self.pending_project = lock, path
            self.sm.get_screen("lock").back_to = "annotate"
            self.go("lock")
            return
        self._show_project(path, lock)

    def _show_project(self, path: Path, lock: IdleLock) -> None:
        project = Project.open(path)
        if self.project is not None:
            self.go("home")
            self.project.close()
            if self.project.root != project.root:
                forget_key(self.project.root)  # the other project's key leaves memory
        self.project = project
        self.idle_lock = lock
        self.go("annotate")
        if self.idle_lock.locked:
            self.go("lock")
        self.refresh_selector()

    def unlocked(self) -> bool:
        """The lock screen took a right PIN: open the project that waited for it (True), or
        nothing to do (False: the open project was only hidden)."""
        if self.pending_project is None or self.idle_lock is None:
            return False
        path, self.pending_project = self.pending_project, None
        self._show_project(path, self.idle_lock)
        return True

    def refresh_selector(self) -> Job | None:
        """Fill the selector's caches in the background (features, the active pre-label model's
        uncertainty); when done, the annotate screen's selector is rebuilt so every strategy's
        weight takes effect. Started on opening a project and on switching models; a newer
        start cancels an older one. The job opens its own connection (SQLite allows one
        writer per connection at a time, and the UI keeps saving labels meanwhile)."""
        from appliance.assist.selector_cache import refresh

        if self.project is None:
            return None
        root = self.project.root

        def work(ctx: JobContext) -> str:
            with Project.open(root) as project:
                return refresh(project, ctx).summary()

        def done(summary: str) -> None:
            if self.project is None or self.project.root != root or self.sm is None:
                return
            self.sm.get_screen("annotate").rebuild_selector()
            log.info("%s", summary)

        def failed(exc: BaseException) -> None:  # upkeep in the background: logged, not shown
            log.warning("selector caches not refreshed: %s", exc)

        self.selector_job = self.run_job(work, done, key="selector-cache", failed=failed)
        return self.selector_job

    def create_project(self, name: str, classes: list[str]) -> Path:
        name = name.strip()
        if not name or "/" in name or name.startswith("."):
            raise ApplianceError("give the project a simple name (letters, digits, spaces)")
        path = self.workspace / name
        Project.create(path, classes).close()
        return path

    # ----- annotator and theme -------------------------------------------------------------
    def set_annotator(self, name: str) -> None:
        name = " ".join(name.split())
        if not name:
            raise ApplianceError("type your name: it is recorded with every label you save")
        self.annotator = name
        known = [n for n in self.prefs.get("annotators", []) if n != name]
        self.prefs.update(annotator=name, annotators=[name, *known][:12])
        self._save_prefs()

    def image_source(self) -> ImageSource | None:
        """Where this tablet's images come from (first start's answer), or None if not asked."""
        return ImageSource.from_json(self.prefs.get("image_source"))

    def set_image_source(self, source: ImageSource) -> None:
        """Remember the image source in `tablet.json` (written durably, like the name)."""
        self.prefs["image_source"] = source.to_json()
        self._save_prefs()

    def apply_theme(self, name: str) -> None:
        pal = theme.palette(name)
        self.c_bg, self.c_panel, self.c_button = pal.background, pal.panel, pal.button
        Window.clearcolor = pal.background  # the screens' background (`ScreenBg`)
        self.c_active, self.c_text, self.c_muted = pal.button_active, pal.text, pal.muted
        self.c_error, self.c_ok, self.c_track = pal.error, pal.ok, pal.track
        if self.prefs.get("theme") != name:
            self.prefs["theme"] = name
            self._save_prefs()

    def _load_prefs(self) -> dict[str, Any]:
        try:
            data = json.loads((self.workspace / PREFS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_prefs(self) -> None:
        path = self.workspace / PREFS_FILE
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(self.prefs, indent=1).encode("utf-8"))
        except OSError as exc:
            self.notify(f"cannot save tablet preferences in {self.workspace} ({exc.strerror})")

    # ----- messages, errors and jobs -------------------------------------------------------
    def notify(self, text: str, error: bool = False) -> None:
        """Show a one-line message (see `MessageBar`); errors stay until solved or tapped."""
        log.info("message: %s", text)
        if self.message is not None:
            slot = getattr(self.sm.current_screen, "message_slot", None) if self.sm else None
            self.message.show(text, error, slot)

    def clear_error(self) -> None:
        """The problem a red message was about is solved: hide it."""
        if self.message is not None and self.message.error:
            self.message.hide()

    def show_error(self, exc: BaseException) -> None:
        if isinstance(exc, ApplianceError):
            self.notify(str(exc), error=True)
            return
        if isinstance(exc, OSError):  # a full disk, a read-only folder: not a bug
            self.notify(f"storage problem: {os_problem(exc)}", error=True)
            return
        if isinstance(exc, DatabaseError):  # locked, full or damaged project.db
            self.notify(f"project database problem ({exc}); run `appliance check`", error=True)
            return
        self.errors.append(exc)
        log.error("unexpected error\n%s", "".join(traceback.format_exception(exc)))
        detail = " ".join(str(exc).split())[:100]
        self.notify(f"Something went wrong ({type(exc).__name__}: {detail}); work is saved", True)

    def safely(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call `fn`; any failure becomes an on-screen message and None is returned."""
        try:
            return fn(*args)
        except Exception as exc:
            self.show_error(exc)
            return None

    def run_job(
        self,
        fn: Callable[[JobContext], Any],
        done: Callable[[Any], None],
        key: Any = None,
        failed: Callable[[BaseException], None] | None = None,
        runner: JobRunner | None = None,
    ) -> Job:
        """Run `fn` on a worker thread (of `runner`, default the job workers); `done(result)`
        or `failed(error)` run on the UI thread.

        `busy` counts jobs whose outcome has not reached the UI yet, so the spinner shows
        while any is in flight and `not busy` means every result is on screen: a job leaves
        the count when `done`/`failed` ran, or (polled, since it never reports back) once it
        ended cancelled. Counted down at `done()` alone, a finished job's result still waited
        for the next frame while `busy` already said nothing was left.
        """

        def finish(job: Job) -> None:
            Clock.schedule_once(lambda _dt: deliver(job), 0)

        def deliver(job: Job) -> None:
            try:
                if job.error is not None:
                    self.safely(failed or self.show_error, job.error)
                else:
                    self.safely(done, job.result(0))
            finally:
                if job in self._live:
                    self._live.remove(job)
                self.busy = len(self._live)

        job = (runner or self.jobs).submit(fn, key=key, on_done=finish)
        self._live.append(job)
        self.busy = len(self._live)
        return job

    def run_write(
        self,
        fn: Callable[[JobContext], Any],
        done: Callable[[Any], None],
        key: Any = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> Job:
        """As `run_job`, on the one writer thread: stores run in the order they were asked
        for and never wait behind a model running on the job workers."""
        return self.run_job(fn, done, key, failed, self.writes)

    def _poll_jobs(self, _dt: float) -> None:
        self._live = [j for j in self._live if not (j.done() and j.status == CANCELLED)]
        self.busy = len(self._live)
