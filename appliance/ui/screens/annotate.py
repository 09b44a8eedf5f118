"""Annotate: the main screen. Tools left, image centre, classes/assistance/navigation right.

The screen owns the flow around one image (see `ImageWork`): open the selector's choice, show a
suitable pre-label, let the expert edit, and on "Save & next" store a version, run post-
assistance (inspection warnings that point at objects, post-processing shown as before/after)
and move on. Every machine step runs as a background job with the spinner; results that arrive
for an image no longer on screen are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.input.motionevent import MotionEvent
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance.assist import selector as selector_mod
from appliance.editing import Rect
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.overlay import class_colour
from appliance.store.models import active_model as installed_model
from appliance.ui import assistant
from appliance.ui.canvas import LabelCanvas
from appliance.ui.screens.home import duration
from appliance.ui.widgets import BusySpinner, ScreenBg, button, label
from appliance.ui.workflow import ImageWork, pending_draft

TOOL_NAMES = {
    "brush": "Brush",
    "eraser": "Eraser",
    "fill": "Fill",
    "lasso": "Lasso",
    "pick": "Pick",
    "delete": "Delete",
    "reclass": "Set class",
}
BRUSH_KEY, OPACITY_KEY, FINGER_KEY = "ui.brush_size", "ui.opacity", "ui.finger_draws"
TOOL_KEYS = {
    "b": "brush",
    "e": "eraser",
    "f": "fill",
    "l": "lasso",
    "p": "pick",
    "d": "delete",
    "c": "reclass",
}


class AnnotateScreen(ScreenBg):
    """See the module doc; tests drive it through `canvas` touches and the named buttons."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        self.work: ImageWork | None = None
        self.selector: selector_mod.Selector | None = None
        self.visited: list[int] = []
        self.skipped: set[int] = set()
        self.failed: set[int] = set()
        self.reviewed_revision: int | None = None
        self.review_pending = False
        self.resume_id: int | None = None
        self._project_root: object = None
        self.prelabeler = assistant.PrelabelChooser()
        self.offer: tuple[str, Label] | None = None
        self._compare_accept: Callable[[], None] | None = None
        self.buttons: dict[str, Widget] = {}
        root = BoxLayout(spacing=app.gap)
        root.add_widget(self._tools())
        centre = BoxLayout(orientation="vertical", spacing=app.gap)
        centre.add_widget(self._top_bar())
        self.canvas_view = LabelCanvas()
        self.canvas_view.on_changed = self._on_changed
        self.canvas_view.on_stroke_done = self._on_stroke_done
        self.canvas_view.on_pick = self._on_pick
        self.canvas_view.on_message = app.notify
        centre.add_widget(self.canvas_view)
        self.compare_bar = BoxLayout(size_hint_y=None, height=0, spacing=app.gap, opacity=0)
        centre.add_widget(self.compare_bar)
        root.add_widget(centre)
        root.add_widget(self._side())
        self.add_widget(root)
        Clock.schedule_interval(self._tick, 1.0)
        Window.bind(on_key_down=self._on_key)

    # ----- layout --------------------------------------------------------------------------
    def _tools(self) -> BoxLayout:
        app = App.get_running_app()
        col = Factory.Panel(size_hint_x=None, width=app.sidebar * 0.62)
        for tool, title in TOOL_NAMES.items():
            toggle = Factory.TToggle(
                text=title, group="tool", state="down" if tool == "brush" else "normal"
            )
            toggle.bind(on_press=lambda _b, t=tool: self.set_tool(t))
            self.buttons[tool] = toggle
            col.add_widget(toggle)
        self.size_label = label("Size 20 px")
        col.add_widget(self.size_label)
        self.size_slider = Factory.TSlider(min=1, max=200, value=20, step=1)
        self.size_slider.bind(value=self._on_size)
        col.add_widget(self.size_slider)
        col.add_widget(label("Overlay"))
        self.opacity_slider = Factory.TSlider(min=0.0, max=1.0, value=0.45)
        self.opacity_slider.bind(on_touch_up=self._on_opacity)
        col.add_widget(self.opacity_slider)
        col.add_widget(BoxLayout())
        return col

    def _top_bar(self) -> BoxLayout:
        app = App.get_running_app()
        bar = Factory.Panel(orientation="horizontal", size_hint_y=None, height=app.touch * 1.3)
        self.buttons["Home"] = button(
            "Home",
            lambda: app.go("home"),
            size_hint_x=None,
            width=app.touch * 1.6,
            pos_hint={"center_y": 0.5},
        )
        bar.add_widget(self.buttons["Home"])
        self.title_label = Factory.TLabel(
            text="",
            size_hint_y=1,
            shorten=True,
            shorten_from="right",
            padding=(app.gap * 2, 0),
            font_size=app.font_small,
        )
        self.title_label.bind(size=lambda lab, size: setattr(lab, "text_size", size))
        bar.add_widget(self.title_label)
        bar.add_widget(BusySpinner(size_hint_x=None, width=app.touch))
        for name, action in (("Undo", self.undo), ("Redo", self.redo), ("Fit", self._fit)):
            self.buttons[name] = button(
                name, action, size_hint_x=None, width=app.touch * 1.6, pos_hint={"center_y": 0.5}
            )
            bar.add_widget(self.buttons[name])
        return bar

    def _side(self) -> BoxLayout:
        app = App.get_running_app()
        col = Factory.Panel(size_hint_x=None, width=app.sidebar)
        nav = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        for name, action in (
            ("Models", lambda: app.go("models")),
            ("Settings", lambda: app.go("settings")),
        ):
            self.buttons[name] = button(name, action)
            nav.add_widget(self.buttons[name])
        col.add_widget(nav)
        col.add_widget(Factory.THeading(text="Class"))
        self.class_box = GridLayout(cols=2, size_hint_y=None, spacing=app.gap)
        self.class_box.bind(minimum_height=self.class_box.setter("height"))
        col.add_widget(self.class_box)
        self.assist_box = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        self.assist_box.bind(minimum_height=self.assist_box.setter("height"))
        scroll = ScrollView(do_scroll_x=False)
        scroll.add_widget(self.assist_box)
        col.add_widget(scroll)
        self.buttons["Upgrade"] = button("Upgrade drawing", self.upgrade)
        col.add_widget(self.buttons["Upgrade"])
        col.add_widget(self._flag_toggle())
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        self.buttons["Previous"] = button("Previous", self.previous)
        self.buttons["Skip"] = button("Skip", self.skip)
        row.add_widget(self.buttons["Previous"])
        row.add_widget(self.buttons["Skip"])
        col.add_widget(row)
        self.buttons["Save & next"] = button(
            "Save & next", self.save_and_next, height=app.touch * 1.3, bold=True
        )
        col.add_widget(self.buttons["Save & next"])
        return col

    # ----- cherry-picking (seed 004): the expert flags images to be served first ----------
    def _flag_toggle(self) -> Widget:
        self.buttons["Flag"] = Factory.TToggle(text="Flag: label early")
        self.buttons["Flag"].bind(on_press=lambda b: self.set_flag(b.state == "down"))
        return self.buttons["Flag"]

    def set_flag(self, on: bool) -> None:
        """Flag or unflag the open image for cherry-picking (weight `cherry_pick`)."""
        app = App.get_running_app()
        if self.work is None:
            return
        app.project.set_cherry_picked(self.work.image_id, on)
        app.notify("Flagged: served early while cherry-pick weighs in" if on else "Flag removed")
        self.rebuild_selector()

    def _show_flag(self) -> None:
        app = App.get_running_app()
        flagged = self.work is not None and app.project.image(self.work.image_id).cherry_picked
        self.buttons["Flag"].state = "down" if flagged else "normal"

    def rebuild_selector(self) -> None:
        """Re-read flags, feature vectors and uncertainty scores; the open image stays."""
        project = App.get_running_app().project
        if project is not None:
            self.selector = selector_mod.from_project(project)

    def _show_classes(self) -> None:
        app = App.get_running_app()
        self.class_box.clear_widgets()
        active = self.work.session.active_class if self.work else 1
        for cid, name in app.project.classes().items():
            r, g, b = (v / 255 for v in class_colour(cid))
            dark_text = 0.299 * r + 0.587 * g + 0.114 * b > 0.55
            toggle = Factory.ClassToggle(
                text=name,
                group="class",
                state="down" if cid == active else "normal",
                color=(0, 0, 0, 1) if dark_text else (1, 1, 1, 1),
            )
            toggle.swatch = (r, g, b, 1)  # a kv-declared property: set after construction
            toggle.bind(on_press=lambda _b, c=cid: self.set_class(c))
            self.buttons[f"class:{name}"] = toggle
            self.class_box.add_widget(toggle)

    # ----- screen life cycle ---------------------------------------------------------------
    def refresh(self) -> None:
        """Entered the screen: (re)build the selector and open the draft or the next image."""
        app = App.get_running_app()
        project = app.project
        if project is None:
            app.go("home")
            return
        self.canvas_view.brush_size = float(project.get_setting(BRUSH_KEY, 20))
        self.size_slider.value = self.canvas_view.brush_size
        self.canvas_view.opacity_overlay = float(project.get_setting(OPACITY_KEY, 0.45))
        self.opacity_slider.value = self.canvas_view.opacity_overlay
        self.canvas_view.finger_draws = bool(project.get_setting(FINGER_KEY, False))
        self.selector = selector_mod.from_project(project)
        if project.root != self._project_root:
            self._project_root, self.resume_id = project.root, None
            self.prelabeler = assistant.PrelabelChooser()
            self.visited, self.skipped, self.failed = [], set(), set()
        draft = pending_draft(project)
        if self.resume_id is not None:
            self.open_image(self.resume_id, remember=False)
        elif draft is not None:
            app.notify("Unsaved strokes from last time were recovered")
            self.open_image(int(draft["image_id"]))
        else:
            self.open_next()

    def close_image(self) -> None:
        """Leave the current image: unsaved edits become a version (autosave)."""
        work, self.work = self.work, None
        self._clear_compare()
        self.offer = None
        if work is not None:
            self.resume_id = work.image_id
            App.get_running_app().safely(work.leave)
        self.canvas_view.clear()

    # ----- navigation ----------------------------------------------------------------------
    def next_choice(self) -> int | None:
        """The selector's best unlabeled image that was not skipped, failed or is open."""
        if self.selector is None:
            return None
        current = self.work.image_id if self.work else None
        excluded = self.skipped | self.failed | {current}
        for choice in self.selector.next(len(excluded) + 1):
            if choice.image_id not in excluded:
                return choice.image_id
        return None

    def open_next(self) -> None:
        image_id = self.next_choice()
        if image_id is None:
            self.close_image()
            self.title_label.text = "All images are labeled"
            App.get_running_app().notify("Nothing left to label: export a training job on Home")
            return
        self.open_image(image_id)

    def open_image(self, image_id: int, remember: bool = True) -> None:
        """Show an image; an unreadable one gives a message and the next image opens."""
        app = App.get_running_app()
        self.close_image()
        try:
            self.work = ImageWork(app.project, image_id, app.annotator, self._active_class())
        except ApplianceError as exc:
            self.failed.add(image_id)
            app.notify(f"Skipped an image that cannot be shown: {exc}", error=True)
            self.open_next()
            return
        if remember and (not self.visited or self.visited[-1] != image_id):
            self.visited.append(image_id)
        self.reviewed_revision = None
        self._show_work()
        if self.work.recovered:
            self.work.saved_revision = -1
        if self.work.parent_id is None and not self.work.recovered:
            self._start_prelabel()

    def _show_work(self) -> None:
        assert self.work is not None
        self.canvas_view.set_image(self.work.display, self.work.session)
        self._show_flag()
        self._show_classes()
        self._show_assist()
        self._tick(0)

    def save_and_next(self) -> None:
        """Save a version, run post-assistance once per revision, then go to the next image."""
        work = self.work
        if work is None:
            self.open_next()
            return
        if self.offer is not None or self._compare_accept is not None:
            App.get_running_app().notify("Accept or reject the suggestion first")
            return
        if work.dirty or work.parent_id is None:
            work.save("manual")
            if self.selector is not None:
                self.selector.mark_labeled(work.image_id)
        if self.reviewed_revision == work.session.revision:
            self.open_next()
            return
        self._start_review()

    def skip(self) -> None:
        if self.work is not None:
            self.skipped.add(self.work.image_id)
            self.work.leave("skipped")
            self.work = None
        self.open_next()

    def previous(self) -> None:
        if self.work is not None and self.visited and self.visited[-1] == self.work.image_id:
            self.visited.pop()
        if not self.visited:
            App.get_running_app().notify("This is the first image of this session")
            if self.work is not None:
                self.visited.append(self.work.image_id)
            return
        self.open_image(self.visited[-1], remember=False)

    # ----- tools ---------------------------------------------------------------------------
    def _on_key(self, _win: object, _key: int, _scan: int, text: str | None, mods: list) -> bool:
        """Docked keyboard: Ctrl+Z/Ctrl+Y undo/redo, Ctrl+S save & next, letters pick tools."""
        if self.manager is None or self.manager.current != self.name or self.work is None:
            return False
        app = App.get_running_app()
        key = (text or "").lower()
        if "ctrl" in mods and key in ("z", "y", "s"):
            action = {
                "z": self.redo if "shift" in mods else self.undo,
                "y": self.redo,
                "s": self.save_and_next,
            }[key]
            app.safely(action)
            return True
        if not mods and key in TOOL_KEYS:
            self.set_tool(TOOL_KEYS[key])
            return True
        return False

    def set_tool(self, tool: str) -> None:
        self.canvas_view.tool = tool
        self.buttons[tool].state = "down"

    def set_class(self, class_id: int) -> None:
        if self.work is not None:
            self.work.session.active_class = class_id
        self._show_classes()

    def _active_class(self) -> int:
        return self.work.session.active_class if self.work else 1

    def undo(self) -> None:
        self._history(self.work.session.undo if self.work else None, "Nothing to undo")

    def redo(self) -> None:
        self._history(self.work.session.redo if self.work else None, "Nothing to redo")

    def _history(self, step: Callable[[], Rect | None] | None, empty: str) -> None:
        rect = step() if step is not None else None
        if rect is None:
            App.get_running_app().notify(empty)
            return
        self.canvas_view.refresh(rect)
        self._on_stroke_done()

    def _fit(self) -> None:
        self.canvas_view.fit()

    def _on_size(self, _slider: object, value: float) -> None:
        self.canvas_view.brush_size = float(value)
        self.size_label.text = f"Size {int(value)} px"

    def _on_opacity(self, slider: Widget, touch: MotionEvent) -> None:
        if touch.grab_current is slider:
            self.canvas_view.opacity_overlay = float(slider.value)

    def _on_changed(self) -> None:
        self._tick(0)

    def _on_stroke_done(self) -> None:
        """A gesture finished: persist the draft so a crash loses no finished stroke."""
        if self.work is not None:
            App.get_running_app().safely(self.work.save_draft)
        self._tick(0)

    def _on_pick(self, instance_id: int) -> None:
        assert self.work is not None
        self.set_class(self.work.session.class_of(instance_id))
        App.get_running_app().notify(f"Picked object {instance_id}: its class is now active")

    def _tick(self, _dt: float) -> None:
        work = self.work
        if work is None:
            return
        rec = work.record
        n = len(work.session.classes)
        state = "unsaved" if work.dirty else "saved"
        self.title_label.text = (
            f"[b]{rec.name}[/b] · {n} objects · {state} · {duration(work.seconds())}"
        )
        self.buttons["Undo"].disabled = not work.session.can_undo
        self.buttons["Redo"].disabled = not work.session.can_redo

    # ----- pre-label -----------------------------------------------------------------------
    def _start_prelabel(self) -> None:
        app = App.get_running_app()
        work, project = self.work, app.project
        assert work is not None

        def done(result: tuple[str, Label] | None) -> None:
            if self.work is not work or result is None or work.parent_id is not None:
                return
            self.offer = result
            self.canvas_view.show_preview(result[1])
            self._show_assist()

        app.run_job(
            lambda ctx: self.prelabeler.prelabel_for(project, work.image_id, ctx),
            done,
            key="prelabel",
        )

    def accept_prelabel(self, edit: bool) -> None:
        """Take the offered pre-label: as it is (and move on), or as a start for editing."""
        if self.work is None or self.offer is None:
            return
        _method, proposal = self.offer
        self.offer = None
        self.canvas_view.show_preview(None)
        self.canvas_view.refresh(self.work.session.replace(proposal))
        self.work.save("prelabel", reviewed=not edit)
        if edit:
            self._show_assist()
            self._tick(0)
            return
        if self.selector is not None:
            self.selector.mark_labeled(self.work.image_id)
        self.reviewed_revision = None
        self._start_review()

    def clear_prelabel(self) -> None:
        self.offer = None
        self.canvas_view.show_preview(None)
        self._show_assist()

    # ----- upgrade -------------------------------------------------------------------------
    def upgrade(self) -> None:
        """Turn the quick drawing into the upgrade model's refinement, shown as before/after."""
        app = App.get_running_app()
        work, project = self.work, app.project
        if work is None:
            return
        if not work.has_label:
            app.notify("Draw a quick, rough outline of the objects first, then tap Upgrade")
            return
        if installed_model(project, "upgrade") is None:
            app.notify("No upgrade model is installed: install a model bundle on Home", True)
            return
        coarse = work.session.label()
        work.save("manual", coarse=True)

        def done(refined: Label) -> None:
            if self.work is not work:
                return
            self.compare("Upgrade", coarse, refined, lambda: self._accept(refined, "upgrade"))

        app.run_job(
            lambda ctx: assistant.upgrade_label(project, work.pixels, coarse, ctx),
            done,
            key="upgrade",
        )

    def _accept(self, label: Label, source: str) -> None:
        assert self.work is not None
        self.canvas_view.refresh(self.work.session.replace(label))
        self.work.save(source)
        self._tick(0)

    # ----- before/after --------------------------------------------------------------------
    def compare(self, title: str, before: Label, after: Label, accept: Callable[[], None]) -> None:
        """Show `after` over the image with Before/After, Accept and Reject buttons."""
        app = App.get_running_app()
        self._compare_accept = accept
        self.canvas_view.show_preview(after)
        bar = self.compare_bar
        bar.clear_widgets()
        bar.height, bar.opacity = app.touch, 1
        bar.add_widget(Factory.THeading(text=title, size_hint_y=1, shorten=True))
        show_before = Factory.TToggle(text="Before", group="compare")
        show_after = Factory.TToggle(text="After", group="compare", state="down")
        show_before.bind(on_press=lambda _b: self.canvas_view.show_preview(before))
        show_after.bind(on_press=lambda _b: self.canvas_view.show_preview(after))
        for widget in (show_before, show_after):
            bar.add_widget(widget)
        self.buttons["Accept"] = button("Accept", self._compare_done)
        self.buttons["Reject"] = button("Reject", self._clear_compare)
        bar.add_widget(self.buttons["Accept"])
        bar.add_widget(self.buttons["Reject"])

    def _compare_done(self) -> None:
        accept = self._compare_accept
        self._clear_compare()
        if accept is not None:
            accept()
            self.reviewed_revision = None
            if self.work is not None and self.review_pending:
                self._start_review()

    def _clear_compare(self) -> None:
        self._compare_accept = None
        self.compare_bar.clear_widgets()
        self.compare_bar.height, self.compare_bar.opacity = 0, 0
        self.buttons.pop("Accept", None)
        self.buttons.pop("Reject", None)
        if self.work is not None:
            self.canvas_view.show_preview(None)

    # ----- post-assistance -----------------------------------------------------------------
    def _start_review(self) -> None:
        app = App.get_running_app()
        work, project = self.work, app.project
        assert work is not None
        revision = work.session.revision
        label_now = work.session.label()
        self.review_pending = True

        def done(result: assistant.Review) -> None:
            if self.work is not work:
                return
            self.reviewed_revision = revision
            if result.empty:
                self.review_pending = False
                self.open_next()
                return
            self._show_assist(result)

        app.run_job(lambda ctx: assistant.review(project, label_now, ctx), done, key="review")

    def _show_assist(self, review: assistant.Review | None = None) -> None:
        """Fill the assistance panel: pre-label offer, or inspection warnings and suggestions."""
        app = App.get_running_app()
        box = self.assist_box
        box.clear_widgets()
        self.canvas_view.set_markers([])
        if self.offer is not None:
            method, proposal = self.offer
            box.add_widget(label(f"Pre-label ({method}): {len(proposal.ids())} objects shown"))
            for name, action in (
                ("Accept all", lambda: self.accept_prelabel(edit=False)),
                ("Accept and edit", lambda: self.accept_prelabel(edit=True)),
                ("Clear", self.clear_prelabel),
            ):
                self.buttons[name] = button(name, action)
                box.add_widget(self.buttons[name])
            return
        if review is None:
            self.review_pending = False
            box.add_widget(label("Draw with the pen; pan with one finger, zoom with two."))
            return
        box.add_widget(label(f"Check score {review.score:.2f}", color=app.c_muted))
        markers = []
        for warning in review.warnings:
            box.add_widget(Factory.TLabel(text=f"! {warning.message}", color=app.c_error))
            for obj in warning.objects:
                y0, x0, y1, x1 = obj.bbox
                r = max(y1 - y0, x1 - x0) / 2
                markers.append(((x0 + x1) / 2, (y0 + y1) / 2, r))
        if markers:
            self.canvas_view.fit()  # every object a warning points at is in view
        self.canvas_view.set_markers(markers)
        for s in review.suggestions:
            box.add_widget(label(f"{s.name}: changes {s.changed} objects"))
            self.buttons[f"Suggest:{s.name}"] = button(
                f"Show {s.name.lower()}", partial(self._suggest, s)
            )
            box.add_widget(self.buttons[f"Suggest:{s.name}"])
        self.buttons["Next image"] = button("Next image", self._review_done)
        box.add_widget(self.buttons["Next image"])
        box.add_widget(label("Or keep editing and tap Save & next again."))

    def _suggest(self, suggestion: assistant.Suggestion) -> None:
        assert self.work is not None
        before = self.work.session.label()
        self.compare(
            suggestion.name,
            before,
            suggestion.after,
            lambda: self._accept(suggestion.after, "postprocess"),
        )

    def _review_done(self) -> None:
        self.review_pending = False
        self._show_assist()
        self.open_next()
