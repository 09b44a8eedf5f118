"""The object list beside the image: every object of the open label, tap one to find it.

A panel the expert opens with *Objects* on the annotate screen. Each row shows the object's
class swatch, id, class and area; objects of a pre-label on offer are listed after the expert's
own with a hollow swatch, in muted italics ("suggested"). Tapping a row selects the object:
it is highlighted on the image and the view is centred on it (`viewport.focus`). For one of the
expert's objects the panel then offers *Delete* and a class pick list (one tap, no typing); each
is one undo step (`AnnotatePresenter.delete_object` / `reclass_object`).

The rows come from the Kivy-free presenter (`AnnotatePresenter.objects`); this widget only
draws them and turns taps into presenter calls. It follows the label: the screen calls
`refresh()` whenever it redraws its status line, and the panel rebuilds only when the label,
the offer, the classes or the selection changed (never in the middle of a pen stroke).
Widgets are keyed in the screen's `buttons`: `object:<id>`, `suggested:<id>`, `point:<index>`,
`box:<index>` (the label's point and box objects, after its masks), `object_delete`,
`object_class:<class id>`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from kivy.app import App
from kivy.clock import Clock
from kivy.factory import Factory
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance.overlay import class_colour
from appliance.session.objects import ObjectRow
from appliance.session.presenter import AnnotatePresenter
from appliance.ui.canvas import LabelCanvas
from appliance.ui.widgets import button, class_toggle, label, scroll_only_when_needed

MAX_ROWS = 300  # rows built at most: beyond, the expert finds objects with Pick on the image
ACTIONS_SHARE = 0.4  # of the panel's height, for the selected object's actions
PREFIXES = ("object:", "suggested:", "point:", "box:", "object_delete", "object_class:")


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
        self._shown: Hashable = None
        box = Factory.Panel()
        self.add_widget(box)
        # no heading: the Objects toggle above says what this is, the summary line counts them
        self.summary = label("", color=app.c_muted, font_size=app.font_small)
        box.add_widget(self.summary)
        self.list = GridLayout(cols=1, size_hint_y=None, spacing=app.gap / 2)
        self.list.bind(minimum_height=self.list.setter("height"))
        self.scroll = ScrollView(do_scroll_x=False, bar_width=app.gap * 2)
        self.scroll.add_widget(self.list)
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
        """Everything the panel shows depends on; None while a stroke is being drawn."""
        p = self.presenter()
        work = p.work if p else None
        if p is None or work is None:
            return ("none",)
        session = work.session
        if session.stroke_active:
            return None
        offer = id(p.offer) if p.offer else 0
        return (
            id(work),
            session.revision,
            session.classes_version,
            offer,
            p.selected_object,
            self.classes_changed(),
        )

    def refresh(self, force: bool = False) -> None:
        """Rebuild the rows if what they show changed (or `force`), keeping the scroll."""
        if self.parent is None:
            return  # closed: nothing to keep in sync
        state = self._state()
        if state is None or (state == self._shown and not force):
            return
        self._shown = state
        p = self.presenter()
        rows = p.objects() if p else []
        self._rows(rows, p.selected_object if p else None)
        self._actions(p)
        self._highlight()

    def _rows(self, rows: list[ObjectRow], selected: str | None) -> None:
        app = App.get_running_app()
        for key in [k for k in self.buttons if k.startswith(PREFIXES)]:
            del self.buttons[key]
        self.list.clear_widgets()
        self.rows = {r.key: r for r in rows}
        own = sum(not r.suggested for r in rows)
        text = f"{own} objects"
        if len(rows) > own:
            text += f" + {len(rows) - own} suggested"
        self.summary.text = text if rows else "No objects yet: draw with the pen"
        picked = None
        for row in rows[:MAX_ROWS]:
            if row.suggested and row is rows[own]:  # the pre-label's objects under a heading
                self.list.add_widget(
                    label("Suggested (pre-label)", color=app.c_muted, font_size=app.font_small)
                )
            toggle = Factory.ObjectRowToggle(
                text=row.text,
                state="down" if row.key == selected else "normal",
            )
            toggle.suggested = row.suggested  # kv properties, set after construction
            toggle.swatch = (*(v / 255 for v in row.colour), 1)
            toggle.bind(
                on_release=lambda b, k=row.key: self.select(k if b.state == "down" else None)
            )
            self.buttons[row.key] = toggle
            self.list.add_widget(toggle)
            if row.key == selected:
                picked = toggle
        if len(rows) > MAX_ROWS:
            more = len(rows) - MAX_ROWS
            self.list.add_widget(label(f"… and {more} more: tap one with Pick", color=app.c_muted))
        if picked is not None:
            Clock.schedule_once(lambda _dt: self._scroll_to(picked), 0)

    def _scroll_to(self, row: Widget) -> None:
        if row.parent is self.list and self.list.height > self.scroll.height:
            self.scroll.scroll_to(row, padding=App.get_running_app().gap, animate=False)

    def _actions(self, p: AnnotatePresenter | None) -> None:
        """What can be done to the selected object: Delete, and its class from a pick list."""
        app = App.get_running_app()
        box = self.actions
        box.clear_widgets()
        row = self.rows.get(p.selected_object or "") if p else None
        if p is None or row is None:
            box.add_widget(label("Tap a row to find the object", color=app.c_muted))
            return
        if row.suggested:
            box.add_widget(label("Suggested: accept the pre-label to edit it", color=app.c_muted))
            return
        key = row.key
        delete = button(f"Delete {row.name}", lambda: self._call(lambda q: q.delete_row(key)))
        self.buttons["object_delete"] = delete
        box.add_widget(delete)
        box.add_widget(label("Class of this object", font_size=app.font_small))
        grid = GridLayout(cols=2, size_hint_y=None, spacing=app.gap)
        grid.bind(minimum_height=grid.setter("height"))
        chosen = self.canvas_view.renderer.colours  # the classes' colours, as on the overlay
        for cid, name in p.project.classes().items():
            colour = chosen.get(cid, class_colour(cid))
            toggle = class_toggle(name, colour, f"object_class_{id(self)}", cid == row.class_id)
            toggle.bind(on_release=lambda _b, c=cid: self._call(lambda q: q.reclass_row(key, c)))
            self.buttons[f"object_class:{cid}"] = toggle
            grid.add_widget(toggle)
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

    def _tapped(self, row: Widget, key: str) -> None:
        """A row toggles: tapped once it selects its object, tapped again it lets go."""
        self.select(key if row.state == "down" else None)

    def select(self, key: str | None) -> None:
        """Select a row's object (None: nothing), highlight it and centre the view on it."""
        p = self.presenter()
        if p is None:
            return
        box = p.select_object(key)
        if box is not None:
            self.canvas_view.focus_on(box)
        self.refresh()
