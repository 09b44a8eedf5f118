"""Annotate: the main screen. Tools on one side, image centre, navigation and assistance on the
other (mirrored for left-handed experts).

The flow (which image, pre-label offer, before/after, post-assistance, saving) lives in the
Kivy-free `AnnotatePresenter`; this screen only lays out widgets, turns touches into presenter
calls and draws the presenter's state. Widgets are keyed by ids in `self.buttons` (`save_next`,
`skip`, `tool:brush`, `class:1`, ...), never by their on-screen text.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from kivy.app import App
from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.input.motionevent import MotionEvent
from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance import settings
from appliance.editing import Rect
from appliance.overlay import class_colour
from appliance.session.marks import MARK_TOOLS
from appliance.session.presenter import AnnotatePresenter, Offer, PanelState, Phase
from appliance.session.workflow import ImageWork
from appliance.store import classes as class_store
from appliance.supervision import config as supervision_config
from appliance.ui.canvas import LabelCanvas
from appliance.ui.classes_popup import ClassEditor
from appliance.ui.object_panel import ObjectPanel
from appliance.ui.screens.home import duration
from appliance.ui.widgets import (
    BusySpinner,
    ScreenBg,
    button,
    class_toggle,
    label,
    scroll_only_when_needed,
    whole_words,
)

TOOL_NAMES = {
    "brush": "Brush",
    "eraser": "Eraser",
    "point": "Point",  # cells as points and boxes (appliance.session.marks), one row
    "box": "Box",
    "fill": "Fill",
    "lasso": "Lasso",
    "pick": "Pick",
    "delete": "Delete",
    "reclass": "Set class",
}
TOOL_KEYS = {
    "b": "brush",
    "e": "eraser",
    "o": "point",
    "x": "box",
    "f": "fill",
    "l": "lasso",
    "p": "pick",
    "d": "delete",
    "c": "reclass",
}
BRUSH_STEP = 1.25  # the − / + buttons scale the brush by this factor
PINNED_TOOLS = ("brush", "eraser")  # never scrolled out of view, with Undo and Redo
TOP_BAR_ONE_ROW = mm(110)  # the image's width below which the status lines get their own row
LONG_NAME = 20  # characters: a longer class name may be shortened in its button
CLASS_BUTTON = mm(24)  # the least width of a class button: fewer columns rather than less
PORTRAIT_BAND = 0.4  # share of a portrait window's height for tools and navigation


def _scrolled(panel: Widget) -> BoxLayout:
    """A column that scrolls inside `panel` when the window is too short for it; the
    caller adds the column's `parent` (the ScrollView) where it belongs."""
    app = App.get_running_app()
    column = BoxLayout(orientation="vertical", size_hint_y=None, spacing=panel.spacing)
    column.bind(minimum_height=column.setter("height"))
    scroll = ScrollView(do_scroll_x=False, bar_width=app.gap * 2, scroll_type=["bars", "content"])
    scroll.add_widget(column)
    scroll_only_when_needed(scroll, column)
    return column


class AnnotateScreen(ScreenBg):
    """See the module doc; tests drive it through `canvas_view` touches and `buttons` ids."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.presenter: AnnotatePresenter | None = None
        self.buttons: dict[str, Widget] = {}
        self.left_handed = False
        self.hidden: set[int] = set()  # classes hidden from view (Edit classes)
        self.canvas_view = LabelCanvas()
        self.canvas_view.on_changed = self.show_status
        self.canvas_view.on_stroke_done = self._act("stroke_done")
        self.canvas_view.on_pick = self._on_pick
        self.canvas_view.on_mark = self._on_mark
        self.canvas_view.on_message = lambda text: App.get_running_app().notify(text, True)
        self.canvas_view.on_pen_down = self._act("pen_down")
        self.canvas_view.on_brush_sized = self._store_brush
        self._classes_stamp = 0  # bumped when the classes' names, colours or visibility change
        self.object_panel = ObjectPanel(
            lambda: self.presenter, self.canvas_view, self.buttons, lambda: self._classes_stamp
        )
        self.tools_panel = self._tools()
        self.centre = self._centre()
        self.side_panel = self._side()
        gap = App.get_running_app().gap
        self.root_box = BoxLayout(spacing=gap)
        self.band = BoxLayout(size_hint_y=None, spacing=gap)  # portrait: tools and navigation
        self.add_widget(self.root_box)
        self._arrange()
        Window.bind(size=self._arrange)
        Clock.schedule_interval(lambda _dt: self.show_status(), 1.0)
        Window.bind(on_key_down=self._on_key)

    # ----- convenience for tests and other screens -----------------------------------------
    @property
    def work(self) -> ImageWork | None:
        return self.presenter.work if self.presenter else None

    @property
    def offer(self) -> Offer | None:
        return self.presenter.offer if self.presenter else None

    def _call(self, action: Callable[[AnnotatePresenter], object]) -> None:
        if self.presenter is not None:
            App.get_running_app().safely(action, self.presenter)

    def _line(self, bold: bool = False) -> Widget:
        app = App.get_running_app()
        line = Label(
            shorten=True,
            max_lines=1,
            font_size=app.font_small,
            bold=bold,
            halign="left",
            valign="middle",
            color=app.c_text,
        )
        app.bind(c_text=line.setter("color"))
        # width only: a height would clip the texture to half the bar, cutting descenders
        line.bind(width=lambda lab, width: setattr(lab, "text_size", (width, None)))
        return line

    def _act(self, method: str, *args: object) -> Callable[[], None]:
        """A button action: call the presenter's `method` (failures become messages)."""
        return lambda: self._call(lambda p: getattr(p, method)(*args))

    def _button(self, wid: str, text: str, action: Callable[[], object], **kw: object) -> Widget:
        widget = button(text, action, **kw)
        self.buttons[wid] = widget
        return widget

    # ----- layout --------------------------------------------------------------------------
    def _arrange(self, *_: object) -> None:
        """Lay the three parts out for the window: landscape puts tools, image and navigation
        side by side (tools left and navigation right, mirrored for a left-handed expert, so
        the hand resting on the screen lies on neither Save & next nor Skip); portrait puts
        the image on top, full width, and tools and navigation in a band below it. Side
        panels narrow on small windows; what does not fit scrolls (see `_tools`, `_side`)."""
        app = App.get_running_app()
        width, height = Window.size
        portrait = height > width
        for part in (self.tools_panel, self.centre, self.side_panel):
            if part.parent is not None:
                part.parent.remove_widget(part)
        self.root_box.clear_widgets()
        self.band.clear_widgets()
        side = max(min(app.sidebar, width * 0.26), mm(36))
        self.tools_panel.width = max(min(app.sidebar * 0.76, width * 0.2), mm(32))
        share = 0.36 if portrait else 0.22  # upright, the image has the whole width to share
        self.object_panel.width = max(min(app.sidebar, width * share), mm(30))
        inner = (width - self.tools_panel.width if portrait else side) - app.gap * 4
        self._class_room = inner
        self._class_columns()
        pair = [self.tools_panel, self.side_panel]
        centre = width if portrait else width - self.tools_panel.width - side - app.gap * 6
        self._top_bar(two_rows=centre < TOP_BAR_ONE_ROW)
        if portrait:
            self.root_box.orientation = "vertical"
            self.side_panel.size_hint_x, self.side_panel.width = 1, side
            self.band.height = height * PORTRAIT_BAND
            for widget in reversed(pair) if self.left_handed else pair:
                self.band.add_widget(widget)
            self.root_box.add_widget(self.centre)
            self.root_box.add_widget(self.band)
            return
        self.root_box.orientation = "horizontal"
        self.side_panel.size_hint_x, self.side_panel.width = None, side
        order = [self.tools_panel, self.centre, self.side_panel]
        for widget in reversed(order) if self.left_handed else order:
            self.root_box.add_widget(widget)

    def _top_bar(self, two_rows: bool) -> None:
        """The status lines beside the buttons, or (`two_rows`) in a row of their own."""
        app = App.get_running_app()
        bar, row, lines = self.top_bar, self.top_row, self.top_lines
        lines.parent.remove_widget(lines)
        if two_rows:
            lines.size_hint_y, lines.height = None, app.font_small * 2.8
            bar.add_widget(lines)
            row.add_widget(Widget(), index=len(row.children) - 1)  # after Home: a spacer
        else:
            for spacer in [w for w in row.children if type(w) is Widget]:
                row.remove_widget(spacer)
            lines.size_hint_y = 1
            row.add_widget(lines, index=len(row.children) - 1)
        row.size_hint_y, row.height = None, app.touch * 1.3 - app.gap
        padding = bar.padding[1] + bar.padding[3]
        bar.height = row.height + padding + (lines.height + bar.spacing if two_rows else 0)

    def _tools(self) -> BoxLayout:
        """Undo/Redo, Brush and Eraser always in view at the top, Raw (hold) and Fit at the
        bottom; the other tools, brush size and overlay between them, in a part that scrolls
        when the window is short."""
        app = App.get_running_app()
        col = Factory.Panel(size_hint_x=None, width=app.sidebar * 0.76)
        # undo/redo beside the tools: the hand that does not hold the pen reaches them
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        row.add_widget(self._button("undo", "Undo", self._act("undo")))
        row.add_widget(self._button("redo", "Redo", self._act("redo")))
        col.add_widget(row)
        more = _scrolled(col)
        pair = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)  # Point, Box
        more.add_widget(pair)
        for tool, title in TOOL_NAMES.items():
            toggle = Factory.TToggle(
                text=title, group="tool", state="down" if tool == "brush" else "normal"
            )
            toggle.bind(on_press=lambda _b, t=tool: self.set_tool(t))
            self.buttons[f"tool:{tool}"] = toggle
            (col if tool in PINNED_TOOLS else pair if tool in MARK_TOOLS else more).add_widget(
                toggle
            )
        col.add_widget(more.parent)
        # the size on a line of its own: between − and + a narrow panel read "2..." (issue 25)
        self.size_label = label(f"{settings.BRUSH_SIZE.default} px", halign="center")
        more.add_widget(self.size_label)
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        row.add_widget(self._button("brush_smaller", "−", lambda: self.scale_brush(1 / BRUSH_STEP)))
        row.add_widget(self._button("brush_bigger", "+", lambda: self.scale_brush(BRUSH_STEP)))
        more.add_widget(row)
        size = settings.BRUSH_SIZE
        self.size_slider = Factory.TSlider(min=size.low, max=size.high, value=size.default, step=1)
        self.size_slider.bind(value=self._on_size)
        self.size_slider.bind(on_touch_up=self._on_size_released)
        # a two-finger drag on the image changes the canvas's size: the slider follows
        self.canvas_view.bind(brush_size=lambda _c, v: setattr(self.size_slider, "value", v))
        more.add_widget(self.size_slider)
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        row.add_widget(label("Overlay", size_hint=(0.8, 1), font_size=app.font_small))
        self.opacity_slider = Factory.TSlider(min=0.0, max=1.0, value=settings.OPACITY.default)
        self.opacity_slider.bind(on_touch_up=self._on_opacity)
        row.add_widget(self.opacity_slider)
        more.add_widget(row)
        # pinned under the scrolling part: a scrolling panel would hold the press 0.25 s
        hold = Factory.TButton(text="Raw", font_size=app.font_small)  # while held: no overlay
        hold.bind(on_press=lambda _b: setattr(self.canvas_view, "hide_overlay", True))
        hold.bind(on_release=lambda _b: setattr(self.canvas_view, "hide_overlay", False))
        self.buttons["hold_compare"] = hold
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        row.add_widget(hold)
        row.add_widget(self._button("fit", "Fit", self.canvas_view.fit, font_size=app.font_small))
        col.add_widget(row)
        return col

    def _centre(self) -> BoxLayout:
        app = App.get_running_app()
        centre = BoxLayout(orientation="vertical", spacing=app.gap)
        # the top bar: Home, the two status lines, zoom, Objects, spinner in one row; where
        # the image is narrow (a small tablet) the lines get a row of their own below
        bar = Factory.Panel(size_hint_y=None, padding=(app.gap * 2, app.gap * 0.5))
        row = BoxLayout(spacing=app.gap)
        bar.add_widget(row)
        small = {"size_hint_x": None, "width": app.touch * 1.6, "pos_hint": {"center_y": 0.5}}
        row.add_widget(self._button("home", "Home", lambda: app.go("home"), **small))
        # two lines, each shortened only when it really does not fit: the image's name, then
        # objects (with a pre-label's suggested ones), saved/unsaved and time on this image
        lines = BoxLayout(orientation="vertical", padding=(app.gap * 2, 0))
        self.title_label = self._line(bold=True)
        self.status_label = self._line()
        self.status_label.shorten_from = "right"  # counts stay whole, the time gives way
        lines.add_widget(self.title_label)
        lines.add_widget(self.status_label)
        row.add_widget(lines)
        self.zoom_label = Factory.TLabel(
            text="", size_hint=(None, 1), width=app.touch * 1.15, font_size=app.font_small
        )
        self.canvas_view.bind(zoom=lambda _c, z: setattr(self.zoom_label, "text", f"{z:.0%}"))
        row.add_widget(self.zoom_label)
        # compact, so that the status line keeps its room
        objects = Factory.TToggle(
            text="Objects",
            size_hint_x=None,
            width=app.touch * 1.75,
            font_size=app.font_small,
            pos_hint={"center_y": 0.5},
        )
        objects.bind(on_release=lambda b: self.show_objects(b.state == "down"))
        self.buttons["objects"] = objects
        row.add_widget(objects)
        row.add_widget(BusySpinner(size_hint_x=None, width=app.touch))
        self.top_bar, self.top_row, self.top_lines = bar, row, lines
        centre.add_widget(bar)
        # the image, and the object list beside it while it is open
        self.canvas_row = BoxLayout(spacing=app.gap)
        self.canvas_row.add_widget(self.canvas_view)
        centre.add_widget(self.canvas_row)
        # one band under the image, as high as a button: the before/after bar while one is
        # on show, else the messages' slot, so that the image keeps its size (issue 25)
        self.compare_bar = BoxLayout(
            size_hint_y=None, height=0, spacing=app.gap, opacity=0, padding=(app.gap * 2, 0)
        )  # padded: upright, the band reaches the window's edges
        centre.add_widget(self.compare_bar)
        self._slot = Widget(size_hint_y=None, height=app.touch)
        centre.add_widget(self._slot)
        return centre

    def _side(self) -> BoxLayout:
        """Save & next, Previous and Skip always in view at the top, then what the machine
        offers (Accept/Reject never leave the window: this part takes the room it needs, up
        to all but one row), then classes and the visits, scrolling when they do not fit."""
        app = App.get_running_app()
        col = Factory.Panel(size_hint_x=None, width=app.sidebar)
        self.progress_label = label("", color=app.c_muted, font_size=app.font_small)
        col.add_widget(self.progress_label)
        save = self._button(
            "save_next",
            "Save & next",
            self._act("save_and_next"),
            height=app.touch * 1.3,
            bold=True,
        )
        col.add_widget(save)
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        small = {"font_size": app.font_small}  # so that "Previous" fits a narrow panel
        row.add_widget(
            self._button("previous", "Previous", self._act("previous"), size_hint_x=1.8, **small)
        )
        row.add_widget(self._button("skip", "Skip", self._act("skip"), **small))
        col.add_widget(row)
        pinned = (self.progress_label, save, row)
        self.assist_box = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        self.assist_box.bind(minimum_height=self.assist_box.setter("height"))
        assist = ScrollView(do_scroll_x=False, size_hint_y=None, bar_width=app.gap * 2)
        assist.add_widget(self.assist_box)
        scroll_only_when_needed(assist, self.assist_box)
        col.add_widget(assist)
        rest = _scrolled(col)
        col.add_widget(rest.parent)

        def fit_assist(*_: object) -> None:
            used = sum(w.height for w in pinned) + col.spacing * 4 + col.padding[1] + col.padding[3]
            free = col.height - used - app.touch / 2  # the classes' heading peeks out
            assist.height = max(0, min(self.assist_box.height, free))

        for widget in (self.assist_box, col, self.progress_label):
            widget.bind(height=fit_assist)
        self.class_heading = Factory.TLabel(text="Class", bold=True)
        rest.add_widget(self.class_heading)
        self.class_box = GridLayout(cols=2, size_hint_y=None, spacing=app.gap)
        self._class_room = float(app.sidebar)  # the class grid's width, set by _arrange
        self.class_box.bind(minimum_height=self.class_box.setter("height"))
        rest.add_widget(self.class_box)
        rest.add_widget(self._button("edit_classes", "Edit classes", self.edit_classes))
        # the visits two to a row, or one where two would cut a word: three in a row of the
        # narrow side panel read "U...e", "M...ls", "S...gs" (issue 25)
        nav = GridLayout(cols=2, size_hint_y=None, spacing=app.gap, row_default_height=app.touch)
        nav.bind(minimum_height=nav.setter("height"), width=whole_words)
        for wid, text, action in (
            ("upgrade", "Upgrade", self._act("upgrade")),
            ("gallery", "Gallery", lambda: app.go("gallery")),
            ("on_slide", "On slide", self.open_on_slide),
            ("models", "Models", lambda: app.go("models")),
            ("settings", "Settings", lambda: app.go("settings")),
        ):
            nav.add_widget(self._button(wid, text, action))
        flag = Factory.TToggle(text="Flag: label early", size_hint_y=None, height=app.touch)
        flag.bind(on_press=lambda b: self._call(lambda p: p.set_flag(b.state == "down")))
        self.buttons["flag"] = flag
        rest.add_widget(flag)
        # the high score (gamification): in the grid only where the project switched it on
        self._button("scores", "Scores", lambda: app.go("highscore"))
        self.nav_row = nav
        rest.add_widget(nav)
        return col

    def _class_columns(self) -> None:
        """As many class columns as leave `CLASS_BUTTON` to each and every name of up to
        `LONG_NAME` characters whole; a longer name is shortened (the heading says it whole)."""
        app = App.get_running_app()
        names = app.project.classes().values() if app.project is not None else ()
        measure = CoreLabel(font_size=app.font, bold=True)  # the chosen one is bold
        widest = max((measure.get_extents(n)[0] for n in names if len(n) <= LONG_NAME), default=0)
        need, gap = max(CLASS_BUTTON, widest + app.gap * 3 + 2), app.gap
        self.class_box.cols = max(1, int((self._class_room + gap) // (need + gap)))

    def _show_classes(self) -> None:
        app = App.get_running_app()
        self._class_columns()
        self.class_box.clear_widgets()
        for key in [k for k in self.buttons if k.startswith("class:")]:
            del self.buttons[key]
        active = self.presenter.active_class if self.presenter else 1
        chosen = class_store.colours(app.project)
        renderer = self.canvas_view.renderer
        if (chosen, frozenset(self.hidden)) != (renderer.colours, renderer.hidden):
            renderer.colours, renderer.hidden = chosen, frozenset(self.hidden)
            self.canvas_view.refresh()
        self._classes_stamp += 1
        self.object_panel.refresh()
        names = app.project.classes()
        self.class_heading.text = f"Class: {names.get(active, '')}"  # whole, wrapped
        for cid, name in names.items():
            colour = chosen.get(cid, class_colour(cid))
            toggle = class_toggle(name, colour, "class", cid == active, cid in self.hidden)
            toggle.bind(on_press=lambda _b, c=cid: self.set_class(c))
            self.buttons[f"class:{cid}"] = toggle
            self.class_box.add_widget(toggle)

    # ----- screen life cycle ---------------------------------------------------------------
    def refresh(self) -> None:
        """Entered the screen: back from Settings/Models to the same image as it was left, or
        a fresh start on the project (the crash draft's image or the selector's choice)."""
        app = App.get_running_app()
        project = app.project
        if project is None:
            app.go("home")
            return
        self._apply_settings()
        if self.presenter is not None and self.presenter.project is project:
            self.presenter.resume()
            self._show_classes()
            return
        self.presenter = AnnotatePresenter(
            project, app.annotator, self, app.run_job, run_write=app.run_write
        )
        self._show_classes()
        self.presenter.start()

    def _apply_settings(self) -> None:
        project = App.get_running_app().project
        self.canvas_view.brush_size = float(settings.BRUSH_SIZE.get(project))
        self.size_slider.value = self.canvas_view.brush_size
        self.canvas_view.opacity_overlay = settings.OPACITY.get(project)
        self.opacity_slider.value = self.canvas_view.opacity_overlay
        self.canvas_view.finger_draws = settings.FINGER_DRAWS.get(project)
        highscore = supervision_config.load(project).highscore  # per project, off by default
        scores = self.buttons["scores"]
        scores.disabled, scores.opacity = not highscore, 1.0 if highscore else 0.0
        if highscore and scores.parent is None:
            self.nav_row.add_widget(scores)
        elif not highscore and scores.parent is not None:
            self.nav_row.remove_widget(scores)
        whole_words(self.nav_row, self.nav_row.width)
        left = settings.LEFT_HANDED.get(project)
        if left != self.left_handed:
            self.left_handed = left
            self._arrange()

    def rebuild_selector(self) -> None:
        """The background cache job finished: every selector strategy can weigh in now."""
        if self.presenter is not None:
            self.presenter.rebuild_selector()

    def leave(self) -> None:
        """Leaving the project (Home, quitting): unsaved edits stay a draft, no version."""
        if self.presenter is not None:
            view = self.canvas_view.view_state()  # kept with the draft (issue 25)
            App.get_running_app().safely(partial(self.presenter.leave, view))
            self.presenter = None
        self.canvas_view.clear()

    # ----- AnnotateView: drawing the presenter's state -------------------------------------
    def show_work(self, keep_view: bool) -> None:
        p = self.presenter
        work = p.work if p else None
        if work is None:
            self.canvas_view.clear()
            self._enable_tools(False)
        elif keep_view:
            self.canvas_view.set_display(work.display)
        else:
            self.canvas_view.set_image(work.display, work.session)
            if work.resumed_view is not None:  # where the expert left it before quitting
                self.canvas_view.show_view_state(work.resumed_view)
                work.resumed_view = None
            self._show_classes()
            self._enable_tools(True)
        if p is not None:
            self.buttons["flag"].state = "down" if p.flagged() else "normal"
        self.show_status()

    def _enable_tools(self, on: bool) -> None:
        for wid, widget in self.buttons.items():
            if wid.startswith(("tool:", "class:")) or wid in (
                "undo", "redo", "fit", "upgrade", "skip", "save_next", "hold_compare", "objects"
            ):  # fmt: skip
                widget.disabled = not on

    def show_label(self, rect: Rect | None) -> None:
        self.canvas_view.refresh(rect)

    def show_layers(self) -> None:
        p = self.presenter
        offer = p.offer if p else None
        self.canvas_view.show_offer(offer.label if offer else None)
        compare = p.compare if p else None
        self._show_compare_bar()
        self.canvas_view.show_preview(compare.after if compare else None)

    def _show_compare_bar(self) -> None:
        app = App.get_running_app()
        bar = self.compare_bar
        bar.clear_widgets()
        for wid in ("compare_before", "compare_after", "compare_accept", "compare_reject"):
            self.buttons.pop(wid, None)
        compare = self.presenter.compare if self.presenter else None
        if compare is None:
            bar.height, bar.opacity, self._slot.height = 0, 0, app.touch
            return
        if app.message is not None:
            app.message.leave_slot(self._slot)  # the bar takes the slot's room
        bar.height, bar.opacity, self._slot.height = app.touch, 1, 0
        # the title gives way first: Accept and Reject keep their words on a narrow image;
        # it is shown whole or not at all ("U..." said nothing; issue 25)
        title = Factory.TLabel(text=compare.title, size_hint=(0.7, 1), bold=True, shorten=True)
        room = (bar.width - app.gap * 4) * 0.7 / (0.7 + 1 + 1 + 1.2 + 1.2) - app.gap
        if title._label.get_extents(compare.title)[0] <= room:
            bar.add_widget(title)
        small = {"font_size": app.font_small}
        before = Factory.TToggle(text="Before", group="compare", **small)
        after = Factory.TToggle(text="After", group="compare", state="down", **small)
        before.bind(on_press=lambda _b: self.canvas_view.show_preview(compare.before))
        after.bind(on_press=lambda _b: self.canvas_view.show_preview(compare.after))
        self.buttons["compare_before"], self.buttons["compare_after"] = before, after
        bar.add_widget(before)
        bar.add_widget(after)
        wide = {"size_hint_x": 1.2}
        accept, reject = self._act("accept_compare"), self._act("reject_compare")
        bar.add_widget(self._button("compare_accept", "Accept", accept, **wide))
        bar.add_widget(self._button("compare_reject", "Reject", reject, **wide))

    def show_panel(self) -> None:
        """The assistance panel: renders the presenter's `PanelState` (one phase at a time)."""
        p = self.presenter
        box = self.assist_box
        box.clear_widgets()
        for wid in [k for k in self.buttons if k.startswith(("offer_", "suggest:", "review_"))]:
            del self.buttons[wid]
        for wid in ("cancel_prelabel", "next_image", "export", "conflict_merge"):
            self.buttons.pop(wid, None)
        self.canvas_view.set_markers(p.markers() if p else [])
        state = p.panel() if p else PanelState(Phase.CLOSED)
        self.buttons["upgrade"].disabled = not state.can_upgrade
        render = {
            Phase.ALL_DONE: self._panel_all_done,
            Phase.LOADING: self._panel_loading,
            Phase.PRELABELING: self._panel_prelabeling,
            Phase.OFFER: self._panel_offer,
            Phase.UPGRADING: self._panel_upgrading,
            Phase.REVIEWING: self._panel_reviewing,
            Phase.REVIEW: self._panel_review,
            Phase.DRAWING: self._panel_drawing,
        }.get(state.phase)
        if state.conflict:  # beside whatever else the panel shows, until resolved
            self._panel_conflict(box, state)
        if render is not None:
            render(box, state)

    def _panel_conflict(self, box: Widget, state: PanelState) -> None:
        box.add_widget(
            label(
                f"Conflict: {state.conflict} versions from different tablets. Keep one "
                "(Gallery, Versions) or edit this one and save it as the merge.",
                color=App.get_running_app().c_error,
            )
        )
        box.add_widget(
            self._button("conflict_merge", "Save as the merge", self._act("resolve_conflict"))
        )

    def _panel_all_done(self, box: Widget, _state: PanelState) -> None:
        total = len(App.get_running_app().project.images())
        box.add_widget(Factory.THeading(text="All images are labeled"))
        box.add_widget(label(f"All {total} images of this project have a label."))
        box.add_widget(self._button("export", "Export training job", self._export))

    def _panel_loading(self, box: Widget, state: PanelState) -> None:
        assert state.loading is not None
        name = App.get_running_app().project.image(state.loading).name
        box.add_widget(label(f"Opening {name} …"))

    def _panel_prelabeling(self, box: Widget, _state: PanelState) -> None:
        box.add_widget(label("Computing a pre-label — keep drawing meanwhile."))
        box.add_widget(self._button("cancel_prelabel", "Cancel", self._act("cancel_prelabel")))

    def _panel_offer(self, box: Widget, state: PanelState) -> None:
        assert state.offer is not None
        n = state.offer.label.count()  # masks, points and boxes
        box.add_widget(label(f"Pre-label ({state.offer.method}): {n} objects"))
        for wid, text, action in (
            ("offer_accept_all", "Accept all", self._act("accept_offer", False)),
            ("offer_accept_edit", "Accept and edit", self._act("accept_offer", True)),
            ("offer_reject", "Reject", self._act("reject_offer")),
        ):
            box.add_widget(self._button(wid, text, action))

    def _panel_upgrading(self, box: Widget, _state: PanelState) -> None:
        box.add_widget(label("Upgrading the drawing — a new stroke makes this result stale."))

    def _panel_reviewing(self, box: Widget, _state: PanelState) -> None:
        box.add_widget(label("Checking the label …", color=App.get_running_app().c_muted))

    def _panel_drawing(self, box: Widget, _state: PanelState) -> None:
        box.add_widget(
            label(
                "Draw with the pen (Point: tap a cell, Box: drag around it); pan with one "
                "finger, pinch to zoom, two fingers up or down: brush size."
            )
        )

    def _panel_review(self, box: Widget, state: PanelState) -> None:
        app = App.get_running_app()
        review = state.review
        assert review is not None and self.presenter is not None
        box.add_widget(label(f"Check score {review.score:.2f}", color=app.c_muted))
        for warning in review.warnings:
            box.add_widget(Factory.TLabel(text=f"! {warning.message}", color=app.c_error))
        if review.warnings:
            self.canvas_view.fit()  # every object a warning points at is in view
            self.canvas_view.set_markers(self.presenter.markers())
        if review.empty:
            box.add_widget(label("Nothing else to check."))
        for s in review.suggestions:
            box.add_widget(label(f"{s.name}: changes {s.changed} objects"))
            box.add_widget(
                self._button(
                    f"suggest:{s.name}",
                    f"Show {s.name.lower()}",
                    self._act("suggest", s.name),
                )
            )
        box.add_widget(self._button("next_image", "Next image", self._act("review_done")))
        box.add_widget(label("Or keep editing and tap Save & next again."))

    @property
    def message_slot(self) -> Widget:
        """Where messages appear (see MessageBar): under the image, or over the status lines
        while the before/after bar has the room under the image."""
        return self.top_lines if self.compare_bar.height else self._slot

    def show_status(self) -> None:
        self.object_panel.refresh()  # the list follows strokes, undo, offers (if it changed)
        p = self.presenter
        status = p.status() if p else None
        work = p.work if p else None
        if status is None or work is None:
            self.title_label.text = "All images are labeled" if p and p.all_done else ""
            self.status_label.text = self.progress_label.text = ""
            return
        kinds = ((status.points, "points"), (status.boxes, "boxes"))
        counts = [f"{n} {kind}" for n, kind in kinds if n]
        if status.objects or not counts:  # "0 objects" only where nothing is marked
            counts.insert(0, f"{status.objects} {'masks' if counts else 'objects'}")
        objects = " · ".join(counts)
        if status.suggested:
            objects += f" + {status.suggested} suggested"
        self.title_label.text = status.name
        self.status_label.text = " · ".join(
            (objects, status.saved_state, duration(status.seconds))
        ) + (f" · conflict: {status.conflict} versions" if status.conflict else "")
        self.progress_label.text = (
            f"Image {status.position} of {status.total} · "
            f"{status.done_this_session} done this session"
        )
        self.buttons["undo"].disabled = not work.session.can_undo
        self.buttons["redo"].disabled = not work.session.can_redo

    def open_on_slide(self) -> None:
        """A region of a slide opens in the slide viewer (points and boxes on the slide)."""
        from appliance.store.slides import region_of

        app = App.get_running_app()
        if self.work is None or region_of(app.project, self.work.image_id) is None:
            self.notify("this image is not a region of a slide", error=True)
            return
        app.sm.get_screen("slide").open_region(self.work.image_id)

    def notify(self, text: str, error: bool = False) -> None:
        App.get_running_app().notify(text, error)

    def clear_error(self) -> None:
        App.get_running_app().clear_error()

    # ----- tools ---------------------------------------------------------------------------
    def _on_key(self, _win: object, _key: int, _scan: int, text: str | None, mods: list) -> bool:
        """Docked keyboard: Ctrl+Z/Ctrl+Y undo/redo, Ctrl+S save & next, letters pick tools."""
        if self.manager is None or self.manager.current != self.name or self.work is None:
            return False
        key = (text or "").lower()
        if "ctrl" in mods and key in ("z", "y", "s"):
            action: Callable[[AnnotatePresenter], object] = {
                "z": (lambda p: p.redo()) if "shift" in mods else (lambda p: p.undo()),
                "y": lambda p: p.redo(),
                "s": lambda p: p.save_and_next(),
            }[key]
            self._call(action)
            return True
        if not mods and key in TOOL_KEYS:
            self.set_tool(TOOL_KEYS[key])
            return True
        return False

    def set_tool(self, tool: str) -> None:
        self.canvas_view.tool = tool
        for name in TOOL_NAMES:  # a state set in code does not release the group's others
            self.buttons[f"tool:{name}"].state = "down" if name == tool else "normal"

    def set_class(self, class_id: int) -> None:
        self._call(lambda p: p.set_class(class_id))
        self._show_classes()

    def scale_brush(self, factor: float) -> None:
        size = settings.BRUSH_SIZE
        value = min(size.high, max(size.low, round(self.canvas_view.brush_size * factor)))
        if value == round(self.canvas_view.brush_size):
            value = min(size.high, max(size.low, value + (1 if factor > 1 else -1)))
        self.size_slider.value = value
        self._store_brush(value)

    def _on_size(self, _slider: object, value: float) -> None:
        self.canvas_view.brush_size = float(value)
        self.size_label.text = f"{int(value)} px"

    def _on_size_released(self, slider: Widget, touch: MotionEvent) -> None:
        if touch.grab_current is slider:
            self._store_brush(slider.value)

    def _store_brush(self, value: float) -> None:
        """Keep the brush size the expert chose (−/+, slider, two-finger drag) as the project's
        setting, so that a visit to Settings or the next session starts with it."""
        project = App.get_running_app().project
        if project is not None:
            settings.BRUSH_SIZE.set(project, round(value))

    def _on_opacity(self, slider: Widget, touch: MotionEvent) -> None:
        if touch.grab_current is slider:
            self.canvas_view.opacity_overlay = float(slider.value)

    def show_objects(self, on: bool) -> None:
        """Open or close the object list beside the image (the image keeps its zoom)."""
        panel = self.object_panel
        self.buttons["objects"].state = "down" if on else "normal"
        if on and panel.parent is None:
            self.canvas_row.add_widget(panel)
            panel.refresh(force=True)
        elif not on and panel.parent is not None:
            self.canvas_row.remove_widget(panel)

    def _on_pick(self, instance_id: int) -> None:
        work = self.work
        assert work is not None
        if self.object_panel.parent is not None and self.presenter is not None:
            self.presenter.select_object(f"object:{instance_id}")  # its row, highlighted
        self.set_class(work.session.class_of(instance_id))
        App.get_running_app().notify(f"Picked object {instance_id}: its class is now active")

    def _on_mark(self, index: int | None, picked: bool) -> None:
        """A point or box tapped (its row selected; None: nothing) or picked (its class made
        the active one)."""
        p, work = self.presenter, self.work
        if p is None or work is None:
            return
        obj = work.session.objects[index] if index is not None else None
        p.select_object(None if obj is None else f"{obj.kind}:{index}")
        self.object_panel.refresh()
        if picked and obj is not None:
            self.set_class(obj.class_id)

    def edit_classes(self) -> ClassEditor:
        editor = ClassEditor(self.hidden, self._show_classes)
        editor.open()
        return editor

    def _export(self) -> None:
        app = App.get_running_app()
        project_dir = app.project.root
        app.go("home")
        app.sm.get_screen("home").export(project_dir)
