"""The object list beside the image: every object of the open label, tap one to find it.

A panel the expert opens with *Objects* on the annotate screen. Each row shows the object's
class swatch, id, class and area; objects of a pre-label on offer are listed after the expert's
own with a hollow swatch, in muted italics ("suggested"). Tapping a row selects the object:
it is highlighted on the image and the view is centred on it (`viewport.focus`). For one of the
expert's objects the panel then offers *Delete* and a class pick list (one tap, no typing); each
is one undo step (`AnnotatePresenter.delete_object` / `reclass_object`).

The rows come from the Kivy-free presenter (`AnnotatePresenter.objects`); this widget only
draws them and turns taps into presenter calls. It follows the label: the screen calls
`refresh()` whenever it redraws its status line, and the panel updates only when the label,
the offer, the classes or the selection changed (never in the middle of a pen stroke).

The list is virtualised (a `RecycleView`): the rows are plain data (`row_data`), and only the
rows in sight are widgets, recycled while the list scrolls. Building one widget per row made
opening a 256-object list block the UI thread for 0.5-2 s and every stroke with it open cost
another second (issue 25, defect 6); now a stroke replaces the data and the dozen visible
widgets take the new values; when the rows listed are the same (an area or the selection
changed), only the widgets of the rows that changed are refreshed. Widgets are keyed in the
screen's `buttons` while they show a row: `object:<id>`, `suggested:<id>`, `point:<index>`,
`box:<index>` (the label's point and box objects, after its masks), then `object_delete`,
`object_class:<class id>`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.factory import Factory
from kivy.graphics import Color, Line, Rectangle
from kivy.properties import BooleanProperty, ListProperty, StringProperty
from kivy.uix.behaviors import ToggleButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.recycleboxlayout import RecycleBoxLayout
from kivy.uix.recycleview import RecycleView
from kivy.uix.recycleview.views import RecycleDataViewBehavior
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance.overlay import class_colour
from appliance.session.objects import ObjectRow
from appliance.session.presenter import AnnotatePresenter
from appliance.ui.canvas import LabelCanvas
from appliance.ui.widgets import (
    button,
    class_toggle,
    label,
    scroll_only_when_needed,
    whole_words,
)

ACTIONS_SHARE = 0.4  # of the panel's height, for the selected object's actions
HEADING = "Suggested (pre-label)"


def row_data(rows: list[ObjectRow], selected: str | None) -> list[dict[str, Any]]:
    """The list's data: one dict per row (what its widget shows), the pre-label's rows under a
    heading. Generic over `ObjectRow`: whatever kind of object a row stands for (mask, point,
    box), its widget shows `row.text`."""
    data: list[dict[str, Any]] = []
    own = sum(not r.suggested for r in rows)
    for i, row in enumerate(rows):
        if row.suggested and i == own:
            data.append({"viewclass": "ObjectListHeading", "text": HEADING})
        data.append(
            {
                "viewclass": "ObjectRowView",
                "key": row.key,
                "text": row.text,
                "suggested": row.suggested,
                "swatch": [*(v / 255 for v in row.colour), 1],
                "state": "down" if row.key == selected else "normal",
            }
        )
    return data


class _Rows(RecycleView):
    """The scrolling list; knows its panel so that its row widgets can reach it."""

    def __init__(self, panel: ObjectPanel, **kwargs: Any) -> None:
        self.panel = panel
        super().__init__(**kwargs)


class ObjectListHeading(RecycleDataViewBehavior, Label):
    """The heading above the suggested rows (style in style.kv)."""

    def refresh_view_attrs(self, rv: Any, index: int, data: dict[str, Any]) -> None:
        super().refresh_view_attrs(rv, index, {"text": data["text"]})


class ObjectRowView(RecycleDataViewBehavior, ToggleButtonBehavior, Label):
    """One visible row: class swatch, id, class, area; a suggested object (pre-label on offer)
    has a hollow swatch and muted italic text. Recycled: it shows whichever row scrolled into
    its place, and it is `buttons[key]` only while it is on the list showing that row.

    A label with a toggle's behaviour, drawn here in a few instructions rather than a kv rule
    over a `ToggleButton`: applying Kivy's rules (Button's, ToggleButton's and a row's own,
    ~25 bound expressions) was most of the cost of opening the list (issue 25, defect 6)."""

    key = StringProperty("")
    swatch = ListProperty([1, 1, 1, 1])
    suggested = BooleanProperty(False)
    panel: ObjectPanel | None = None

    def __init__(self, **kwargs: Any) -> None:
        app = App.get_running_app()
        super().__init__(
            font_size=app.font_small,
            size_hint_y=None,
            height=app.touch,
            halign="left",
            valign="middle",
            padding=[app.touch * 0.75, 0, app.gap, 0],
            # a narrow list (8-inch tablet, upright) wraps a row onto a second line rather than
            # cut its class or size (issue 25 defect 9): two small lines fit a touch's height
            max_lines=2,
            line_height=0.9,
            **kwargs,
        )
        with self.canvas.before:
            self._back_colour = Color()
            self._back = Rectangle()
        with self.canvas.after:
            self._fill_colour = Color()
            self._fill = Rectangle()
            self._edge_colour = Color()
            self._edge = Line(width=2)
        self.fbind("pos", self._place)
        self.fbind("size", self._place)
        for name in ("state", "suggested", "swatch"):
            self.fbind(name, self._paint)
        for name in ("c_button", "c_active", "c_text", "c_muted"):  # the theme can change
            app.fbind(name, self._paint)
        self._place()
        self._paint()

    def _place(self, *_: object) -> None:
        app = App.get_running_app()
        self.text_size = self.size
        self._back.pos, self._back.size = self.pos, self.size
        side = app.touch * 0.4
        x, y = self.x + app.gap * 1.5, self.center_y - side / 2
        self._fill.pos, self._fill.size = (x, y), (side, side)
        self._edge.rectangle = (x, y, side, side)

    def _paint(self, *_: object) -> None:
        app = App.get_running_app()
        down = self.state == "down"
        self._back_colour.rgba = app.c_active if down else app.c_button
        self.color = app.c_muted if self.suggested and not down else app.c_text
        self.italic = self.suggested
        self._fill_colour.rgba = (0, 0, 0, 0) if self.suggested else self.swatch
        self._edge_colour.rgba = self.swatch if self.suggested else (0, 0, 0, 0)

    def refresh_view_attrs(self, rv: Any, index: int, data: dict[str, Any]) -> None:
        self.panel = rv.panel
        self._unregister()
        attrs = {k: v for k, v in data.items() if k != "viewclass"}
        super().refresh_view_attrs(rv, index, attrs)
        self._register()

    def on_parent(self, _widget: Widget, parent: Widget | None) -> None:
        if parent is None:
            self._unregister()  # scrolled out of sight or the list shrank: kept for reuse
        else:
            self._register()

    def _register(self) -> None:
        if self.panel is not None and self.key and self.parent is not None:
            self.panel.buttons[self.key] = self

    def _unregister(self) -> None:
        if self.panel is not None and self.panel.buttons.get(self.key) is self:
            del self.panel.buttons[self.key]

    def on_release(self) -> None:
        """Tapped once it selects its object, tapped again it lets go."""
        if self.panel is not None:
            self.panel.select(self.key if self.state == "down" else None)


Factory.register("ObjectListHeading", cls=ObjectListHeading)
Factory.register("ObjectRowView", cls=ObjectRowView)


class ObjectPanel(BoxLayout):
    """See the module doc. `presenter()` is the screen's current presenter (or None)."""

    def __init__(
        self,
        presenter: Callable[[], AnnotatePresenter | None],
        canvas: LabelCanvas,
        buttons: dict[str, Widget],
        classes_changed: Callable[[], Hashable],
    ) -> None:
        app = App.get_running_app()
        super().__init__(orientation="vertical", size_hint_x=None, width=app.sidebar)
        self.presenter, self.canvas_view, self.buttons = presenter, canvas, buttons
        self.classes_changed = classes_changed
        self.rows: dict[str, ObjectRow] = {}
        self._shown: tuple[Hashable, str | None] | None = None
        self._actions_shown: object = None  # what the actions were last built for
        box = Factory.Panel()
        self.add_widget(box)
        # no heading: the Objects toggle above says what this is, the summary line counts them
        self.summary = label("", color=app.c_muted, font_size=app.font_small)
        box.add_widget(self.summary)
        self.row_height, self.row_gap = app.touch, app.gap / 2
        self.list = RecycleBoxLayout(
            orientation="vertical",
            size_hint_y=None,
            default_size=(None, self.row_height),
            default_size_hint=(1, None),
            spacing=self.row_gap,
            key_viewclass="viewclass",  # rows and the suggested heading
        )
        self.list.bind(minimum_height=self.list.setter("height"))
        self.scroll = _Rows(self, do_scroll_x=False, bar_width=app.gap * 2)
        self.scroll.add_widget(self.list)
        scroll_only_when_needed(self.scroll, self.list)
        box.add_widget(self.scroll)
        self.actions = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        self.actions.bind(minimum_height=self.actions.setter("height"))
        # Delete and the class pick list: as tall as they need, at most `ACTIONS_SHARE` of the
        # panel (12 classes would squeeze the list to nothing), scrolling beyond
        actions = ScrollView(do_scroll_x=False, size_hint_y=None, bar_width=app.gap * 2)
        actions.add_widget(self.actions)
        scroll_only_when_needed(actions, self.actions)
        box.add_widget(actions)

        def fit(*_: object) -> None:
            actions.height = min(self.actions.height, box.height * ACTIONS_SHARE)

        self.actions.bind(height=fit)
        box.bind(height=fit)

    # ----- drawing -------------------------------------------------------------------------
    def _state(self) -> Hashable:
        """Everything the rows depend on (the selection aside); None while a stroke is being
        drawn."""
        p = self.presenter()
        work = p.work if p else None
        if p is None or work is None:
            return ("none",)
        session = work.session
        if session.stroke_active:
            return None
        offer = id(p.offer) if p.offer else 0
        return (id(work), session.revision, session.classes_version, offer, self.classes_changed())

    def refresh(self, force: bool = False) -> None:
        """Update the rows if what they show changed (or `force`), keeping the scroll; a new
        selection alone reuses the rows (counting 2048² pixels per tap is not needed)."""
        if self.parent is None:
            return  # closed: nothing to keep in sync
        state = self._state()
        if state is None:
            return
        p = self.presenter()
        selected = p.selected_object if p else None
        if (state, selected) == self._shown and not force:
            return
        same_rows = self._shown is not None and self._shown[0] == state and not force
        self._shown = (state, selected)
        rows = list(self.rows.values()) if same_rows else (p.objects() if p else [])
        self._rows(rows, selected)
        self._actions(p)
        self._highlight()

    def _rows(self, rows: list[ObjectRow], selected: str | None) -> None:
        """New data for the list: its visible widgets take it on the next frame."""
        self.rows = {r.key: r for r in rows}
        own = sum(not r.suggested for r in rows)
        text = f"{own} objects"
        if len(rows) > own:
            text += f" + {len(rows) - own} suggested"
        self.summary.text = text if rows else "No objects yet: draw with the pen"
        data = row_data(rows, selected)
        if not self._update_in_place(data):
            self.scroll.data = data
        index = next((i for i, d in enumerate(data) if d.get("key") == selected), None)
        if index is not None:
            Clock.schedule_once(lambda _dt: self._scroll_to(index), 0)

    def _update_in_place(self, data: list[dict[str, Any]]) -> bool:
        """Take `data` row by row when it lists the same rows as now (a stroke changed an
        area, a tap the selection): only the widgets of rows that changed are refreshed.
        Replacing `data` refreshes every visible row and lays the whole list out again."""
        old = self.scroll.data
        if len(old) != len(data) or any(
            a.get("key") != b.get("key") or a["viewclass"] != b["viewclass"]
            for a, b in zip(old, data, strict=True)
        ):
            return False
        for index, (was, now) in enumerate(zip(old, data, strict=True)):
            if was != now:
                was.update(now)  # a row scrolled into sight later reads it from here
                view = self.scroll.view_adapter.get_visible_view(index)
                if view is not None:
                    view.refresh_view_attrs(self.scroll, index, was)
        return True

    def _scroll_to(self, index: int) -> None:
        """Scroll just enough that row `index` is in sight (all rows are equally tall)."""
        step = self.row_height + self.row_gap
        content, view = self.list.height, self.scroll.height
        if content <= view:
            return
        pad = App.get_running_app().gap
        top = (1 - self.scroll.scroll_y) * (content - view)  # content px above the view
        row_top = index * step
        if row_top - pad < top:
            top = row_top - pad
        elif row_top + self.row_height + pad > top + view:
            top = row_top + self.row_height + pad - view
        else:
            return
        self.scroll.scroll_y = 1 - min(max(top, 0.0), content - view) / (content - view)

    def _actions(self, p: AnnotatePresenter | None) -> None:
        """What can be done to the selected object: Delete, and its class from a pick list.
        Rebuilt only when the selected object, its class or the classes changed (not after a
        stroke that only changed an area: rebuilding and laying it out cost ~20 ms)."""
        app = App.get_running_app()
        row = self.rows.get(p.selected_object or "") if p else None
        classes = p.project.classes() if p and row and not row.suggested else {}
        chosen = self.canvas_view.renderer.colours  # the classes' colours, as on the overlay
        shown = (row and (row.key, row.suggested, row.class_id, row.name), classes, dict(chosen))
        if shown == self._actions_shown:
            for key, widget in self.buttons.items():  # a tap on the class it has let go of it
                if key.startswith("object_class:") and row is not None:
                    widget.state = "down" if key == f"object_class:{row.class_id}" else "normal"
            return
        self._actions_shown = shown
        box = self.actions
        box.clear_widgets()
        for key in [k for k in self.buttons if k.startswith(("object_delete", "object_class:"))]:
            del self.buttons[key]
        if p is None or row is None:
            box.add_widget(label("Tap a row to find the object", color=app.c_muted))
            return
        if row.suggested:
            box.add_widget(label("Suggested: accept the pre-label to edit it", color=app.c_muted))
            return
        key = row.key
        delete = button(  # two lines rather than a cut word when the panel is narrow
            f"Delete {row.name}",
            lambda: self._call(lambda q: q.delete_row(key)),
            shorten=False,
            max_lines=2,
            font_size=app.font_small,
        )
        self.buttons["object_delete"] = delete
        box.add_widget(delete)
        box.add_widget(label("Class of this object", font_size=app.font_small))
        grid = GridLayout(cols=2, size_hint_y=None, spacing=app.gap)
        grid.bind(minimum_height=grid.setter("height"))
        # one column where two would cut a class name (upright, the panel is narrow)
        grid.bind(width=lambda g, w: whole_words(g, w, inset=3))
        for cid, name in classes.items():
            colour = chosen.get(cid, class_colour(cid))
            toggle = class_toggle(name, colour, f"object_class_{id(self)}", cid == row.class_id)
            # the list is narrow: a name takes two lines of the small font rather than a cut
            toggle.font_size, toggle.shorten, toggle.max_lines = app.font_small, False, 2
            toggle.bind(on_release=lambda _b, c=cid: self._call(lambda q: q.reclass_row(key, c)))
            self.buttons[f"object_class:{cid}"] = toggle
            grid.add_widget(toggle)
        whole_words(grid, grid.width, inset=3)
        box.add_widget(grid)

    def _highlight(self) -> None:
        """Highlight the selected object on the image (an offer's object in its outline)."""
        p = self.presenter()
        key = p.selected_object if p else None
        kind, _, number = (key or "").partition(":")
        canvas = self.canvas_view
        canvas.selected = int(number) if kind == "object" else 0
        canvas.offer_selected = int(number) if kind == "suggested" else 0
        canvas.selected_mark = int(number) if kind in ("point", "box") else -1

    # ----- taps ----------------------------------------------------------------------------
    def _call(self, action: Callable[[AnnotatePresenter], object]) -> None:
        p = self.presenter()
        if p is not None:
            App.get_running_app().safely(action, p)
        self.refresh()

    def select(self, key: str | None) -> None:
        """Select a row's object (None: nothing), highlight it and centre the view on it."""
        p = self.presenter()
        if p is None:
            return
        box = p.select_object(key)
        if box is not None:
            self.canvas_view.focus_on(box)
        self.refresh()
