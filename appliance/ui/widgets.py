"""Small touch-sized widgets: message bar, busy spinner, folder/file chooser, prompts.

Kivy's stock FileChooser has tiny rows and relies on double-click; the chooser here has rows as
tall as any button, big "Up" and location shortcuts (home, removable media under /media and
/mnt, Windows drive letters), and selects with one tap.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.graphics import Color, Rectangle, SmoothLine
from kivy.input.motionevent import MotionEvent
from kivy.properties import BooleanProperty, NumericProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen, ScreenManager
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance.media import find_media

MESSAGE_SECONDS = 7.0


def button(text: str, on_press: Callable[[], object], **kwargs: object) -> Widget:
    """A themed, touch-sized button whose handler failures become on-screen messages."""
    app = App.get_running_app()
    btn = Factory.TButton(text=text, **kwargs)
    btn.bind(on_release=lambda _b: app.safely(on_press))
    return btn


def class_toggle(
    name: str, colour: tuple[int, int, int], group: str, down: bool, faded: bool = False
) -> Widget:
    """A class button filled with the class's colour (RGB 0..255; `faded`: hidden from view),
    its text black or white, whichever reads on that colour; the chosen one is framed."""
    r, g, b = (v / 255 for v in colour)
    dark_text = 0.299 * r + 0.587 * g + 0.114 * b > 0.55
    toggle = Factory.ClassToggle(
        text=name,
        group=group,
        state="down" if down else "normal",
        color=(0, 0, 0, 1) if dark_text else (1, 1, 1, 1),
    )
    toggle.swatch = (r, g, b, 0.35 if faded else 1)  # kv property
    return toggle


def whole_words(grid: GridLayout, width: float, inset: float = 2) -> None:
    """Two buttons to a row of `grid` where each one's text fits whole, else one (bind it to
    the grid's width); `inset`: the buttons' text margin in gaps (TButton 2, ClassToggle 3).
    A narrow panel stacks its buttons rather than cut their words."""
    app = App.get_running_app()
    widest = max((b._label.get_extents(b.text)[0] for b in grid.children), default=0)
    grid.cols = 2 if (width - app.gap) / 2 >= widest + app.gap * inset + 2 else 1


def page(title: str, *actions: Widget) -> BoxLayout:
    """A full-screen page: a title bar with `actions` on the right; content is added below."""
    app = App.get_running_app()
    root = BoxLayout(orientation="vertical", padding=app.gap * 3, spacing=app.gap * 2)
    top = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap * 2)
    top.add_widget(Factory.THeading(text=title, size_hint_y=None))
    for action in actions:
        top.add_widget(action)
    root.add_widget(top)
    return root


def back_to_images() -> Widget:
    app = App.get_running_app()
    return button("Back to images", lambda: app.go("annotate"), size_hint_x=None, width=app.sidebar)


def scroll_only_when_needed(scroll: ScrollView, content: Widget) -> None:
    """Let `scroll` scroll only while `content` is taller than it. A scrolling ScrollView holds
    every touch until it knows the touch is no drag, and releases a tapped button 0.2 s late;
    a panel whose content fits must not do that to its buttons."""

    def update(*_: object) -> None:
        scroll.do_scroll_y = content.height > scroll.height + 1
        if not scroll.do_scroll_y:
            scroll.scroll_y = 1

    content.bind(height=update)
    scroll.bind(height=update)
    update()


def label(text: str = "", **kwargs: object) -> Widget:
    return Factory.TLabel(text=text, **kwargs)


class ScreenBg(Screen):
    """A screen on the theme's background colour, which is the window's clear colour
    (`ApplianceApp.apply_theme`): a full-window rectangle under every screen was one more
    window-sized fill per frame, all but hidden by the panels and the image (issue 25)."""


class Screens(ScreenManager):
    """Kivy's ScreenManager without its stencil clip (rule `<-Screens>` in style.kv): with
    no transition a screen never draws outside the window, and the clip drew two window-sized
    stencil passes per frame."""


class MessageBar(Label):
    """One message at a time, drawn above everything (file chooser included) but over nothing
    the expert needs: on the annotate screen it fills a slot reserved for it under the image,
    elsewhere it floats at the bottom of the window, below the chooser's buttons.

    A long message is shortened to one line; a tap shows it whole (the bar grows upward) and
    a second tap hides it. Plain messages hide after `MESSAGE_SECONDS`; errors (red) stay until
    the problem is solved (`App.clear_error`), another message replaces them, or a tap.
    """

    error = BooleanProperty(False)
    expanded = BooleanProperty(False)

    def __init__(self, **kwargs: object) -> None:
        app = App.get_running_app()
        super().__init__(
            size_hint=(None, None),
            font_size=app.font,
            opacity=0,
            halign="center",
            valign="middle",
            shorten=True,
            shorten_from="right",
            max_lines=1,
            **kwargs,
        )
        with self.canvas.before:
            self._color = Color(0, 0, 0, 0.85)
            self._rect = Rectangle()
        self.bind(pos=self._redraw, size=self._redraw)
        self._hide = Clock.create_trigger(lambda _dt: self.hide(), MESSAGE_SECONDS)
        self._slot: Widget | None = None

    def _redraw(self, *_: object) -> None:
        self._rect.pos, self._rect.size = self.pos, self.size

    def show(self, text: str, error: bool = False, slot: Widget | None = None) -> None:
        app = App.get_running_app()
        self.text = text
        self.error = error
        self._slot = slot
        self._color.rgba = (*app.c_error[:3], 0.95) if error else (0.1, 0.1, 0.12, 0.92)
        self.color = (1, 1, 1, 1)
        self.opacity = 1
        self.expanded = False
        self._place()
        if self.parent is not None:  # on top of anything opened since (a chooser, a prompt)
            self.parent.remove_widget(self)
        Window.add_widget(self)
        self._hide.cancel()
        if not error:
            self._hide()

    def hide(self) -> None:
        self.opacity = 0
        self.expanded = False
        if self.parent is not None:
            self.parent.remove_widget(self)

    def leave_slot(self, slot: Widget) -> None:
        """Hide the message if it sits in `slot`: the slot gives its room to something else."""
        if self._slot is slot:
            self.hide()

    @property
    def shortened(self) -> bool:
        """Whether the one-line text hides part of the message."""
        if self.expanded or self._label is None:
            return False
        return bool(self._label.get_extents(self.text)[0] > (self.text_size[0] or self.width))

    def _place(self) -> None:
        app = App.get_running_app()
        modal = any(isinstance(w, ModalView) for w in Window.children)
        slot = self._slot if self._slot is not None and not modal else None
        if slot is not None and slot.get_root_window() is not None:
            x, y = slot.to_window(slot.x, slot.y)
            width, base = slot.width, slot.height
        else:
            width, base = Window.width * 0.6, app.touch
            x, y = (Window.width - width) / 2, app.gap * 2
        self.shorten = not self.expanded
        self.max_lines = 0 if self.expanded else 1
        self.text_size = (width - app.gap * 4, None)
        self.width = width
        if self.expanded:
            self.texture_update()
            self.height = max(base, self.texture_size[1] + app.gap * 2)
        else:
            self.height = base
            self.text_size = (width - app.gap * 4, base)
        self.pos = (x, y)

    def on_touch_down(self, touch: MotionEvent) -> bool:
        if not self.opacity or not self.collide_point(*touch.pos):
            return False
        if not self.expanded and self.shortened:
            self.expanded = True
            self._place()
            self._hide.cancel()
        else:
            self.hide()
        return True


class BusySpinner(Widget):
    """A rotating arc shown while background work (pre-label, upgrade, checks) runs."""

    angle = NumericProperty(0)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        with self.canvas:
            self._color = Color(1, 1, 1, 0)
            self._line = SmoothLine(width=5)  # antialiased: no multisampling
        self.bind(pos=self._redraw, size=self._redraw, angle=self._redraw)
        app = App.get_running_app()
        app.bind(busy=self._on_busy)
        self._tick = Clock.schedule_interval(self._spin, 1 / 20)

    def _on_busy(self, _app: object, busy: int) -> None:
        self._color.a = 1 if busy else 0

    def _spin(self, _dt: float) -> None:
        if self._color.a:
            self.angle = (self.angle + 18) % 360

    def _redraw(self, *_: object) -> None:
        r = min(self.width, self.height) * 0.35
        cx, cy = self.center
        self._line.circle = (cx, cy, r, self.angle, self.angle + 270)


class ChooserPopup(ModalView):
    """Pick a folder or a file (by suffix) with large rows; `on_choose(path)` on confirmation.

    In folder mode a tapped file may be chosen instead of the folder; the button then says so
    ("Use this file") and the tapped row stays highlighted. `accept(path)` hides files that
    match the suffix but are not what is asked for (a training job offered as model bundle).
    The popup leaves the bottom of the window free for messages.
    """

    def __init__(
        self,
        title: str,
        on_choose: Callable[[Path], object],
        start: Path | None = None,
        suffixes: tuple[str, ...] = (),
        pick_folder: bool = True,
        accept: Callable[[Path], bool] | None = None,
    ) -> None:
        super().__init__(size_hint=(0.8, 0.84), pos_hint={"top": 0.97}, auto_dismiss=False)
        app = App.get_running_app()
        self.on_choose, self.suffixes, self.pick_folder = on_choose, suffixes, pick_folder
        self.accept = accept
        self.selected: Path | None = None
        self._picked_row: Widget | None = None
        box = Factory.Panel()
        self.heading = Factory.THeading(text=title)
        box.add_widget(self.heading)
        places = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        for name, path in removable_places():
            places.add_widget(button(name, partial(self.show, path)))
        box.add_widget(places)
        self.where = label("")
        box.add_widget(self.where)
        self.rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap / 2)
        self.rows.bind(minimum_height=self.rows.setter("height"))
        scroll = ScrollView(do_scroll_x=False, bar_width=app.gap * 2, scroll_type=["content"])
        scroll.add_widget(self.rows)
        box.add_widget(scroll)
        actions = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        self.cancel = button("Cancel", self.dismiss)
        actions.add_widget(self.cancel)
        self.ok = button(self._ok_text(), self._confirm)
        actions.add_widget(self.ok)
        box.add_widget(actions)
        self.add_widget(box)
        self.show(start or Path.home())

    def show(self, folder: Path) -> None:
        """List `folder`: sub-folders first, then matching files."""
        app = App.get_running_app()
        folder = Path(folder)
        try:
            entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
        except OSError as exc:
            app.notify(f"{folder}: cannot open ({exc.strerror})", error=True)
            return
        self.folder = folder
        self.selected = folder if self.pick_folder else None
        self._picked_row = None
        self.ok.text = self._ok_text()
        hint = "tap Use this folder, or a file" if self.pick_folder else "tap a file"
        self.where.text = f"{folder}  ({hint})"
        self.rows.clear_widgets()
        self.entries: dict[str, Widget] = {}  # name -> row button
        if folder.parent != folder:
            self.rows.add_widget(button("..  (up one folder)", lambda: self.show(folder.parent)))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                row = button(f"[ {entry.name} ]", partial(self.show, entry))
            elif (not self.suffixes or entry.suffix.lower() in self.suffixes) and (
                self.accept is None or self.accept(entry)
            ):
                row = Factory.ChooserRow(text=entry.name)
                row.bind(on_release=lambda _b, e=entry: app.safely(partial(self._pick, e)))
            else:
                continue
            self.entries[entry.name] = row
            self.rows.add_widget(row)

    def _ok_text(self, file: bool = False) -> str:
        if not self.pick_folder:
            return "Open"
        return "Use this file" if file else "Use this folder"

    def _pick(self, path: Path) -> None:
        if self._picked_row is not None:
            self._picked_row.picked = False
        row = self.entries[path.name]
        # a kv property, not the colour itself: Kivy's release, deferred to keep a quick
        # tap visible, re-applies the colour rule and would undo a colour set here
        row.picked = True  # stays until another row is picked
        self._picked_row = row
        self.selected = path
        self.ok.text = self._ok_text(file=True)
        self.where.text = f"{path}  (tap {self.ok.text})"

    def _confirm(self) -> None:
        if self.selected is None:
            App.get_running_app().notify("choose a file first")
            return
        self.dismiss()
        self.on_choose(self.selected)


def removable_places() -> list[tuple[str, Path]]:
    """Where a user looks for images: home and the USB sticks `appliance.media` finds."""
    media = find_media(count=False)
    return [("Home", Path.home()), *((m.name, m.path) for m in media)][:6]


class Prompt(ModalView):
    """Ask for one line of text (name, project name) with a big keyboard-friendly field."""

    def __init__(
        self, title: str, on_ok: Callable[[str], object], text: str = "", hint: str = ""
    ) -> None:
        super().__init__(size_hint=(0.6, None), pos_hint={"top": 0.95}, auto_dismiss=False)
        app = App.get_running_app()
        box = Factory.Panel()
        box.add_widget(Factory.THeading(text=title))
        self.field = Factory.TInput(text=text, hint_text=hint)
        box.add_widget(self.field)
        actions = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        actions.add_widget(button("Cancel", self.dismiss))
        actions.add_widget(button("OK", lambda: self._ok(on_ok)))
        box.add_widget(actions)
        self.height = app.touch * 4
        self.add_widget(box)
        self.bind(on_open=lambda _p: setattr(self.field, "focus", True))  # brings the keyboard

    def _ok(self, on_ok: Callable[[str], object]) -> None:
        on_ok(self.field.text)
        self.dismiss()
