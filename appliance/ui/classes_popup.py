"""Edit the classes while annotating: add, rename, recolour, hide one from view.

Names are typed on the on-screen keyboard (a `Prompt`); colours are picked from the colour-blind
safe palette with one tap each; hiding is a view setting of this screen only (the label keeps
the hidden class's objects). Changes are stored at once through `appliance.store.classes`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from kivy.app import App
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance.overlay import PALETTE, class_colour
from appliance.store import classes as class_store
from appliance.ui.widgets import Prompt, button, scroll_only_when_needed


def colour_of(project: object, class_id: int) -> tuple[int, int, int]:
    """The class's chosen colour, else its palette colour."""
    return class_store.colours(project).get(class_id, class_colour(class_id))


class ClassEditor(ModalView):
    """One row per class: colour swatch (tap: next colour), name (tap: rename), Hide/Show."""

    def __init__(self, hidden: set[int], changed: Callable[[], None]) -> None:
        app = App.get_running_app()
        wide = Window.width * 0.6 >= mm(110)  # else nearly the whole width (a small tablet)
        super().__init__(
            size_hint=(0.6 if wide else 0.94, 0.8), pos_hint={"top": 0.97}, auto_dismiss=False
        )
        self.hidden, self.changed = hidden, changed
        self.buttons: dict[str, Widget] = {}
        panel = Factory.Panel()
        panel.add_widget(Factory.THeading(text="Classes"))
        # one row per class, scrolling when there are more than fit (12 classes on 800 px)
        self.box = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        self.box.bind(minimum_height=self.box.setter("height"))
        self.scroll = ScrollView(do_scroll_x=False, bar_width=app.gap * 2)
        self.scroll.add_widget(self.box)
        scroll_only_when_needed(self.scroll, self.box)
        panel.add_widget(self.scroll)
        actions = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        self.add_button = button("Add class", self._add)
        self.done_button = button("Done", self.dismiss)
        actions.add_widget(self.add_button)
        actions.add_widget(self.done_button)
        panel.add_widget(actions)
        self.add_widget(panel)
        self.refresh()

    def refresh(self) -> None:
        app = App.get_running_app()
        project = app.project
        self.box.clear_widgets()
        self.buttons.clear()
        for cid, name in project.classes().items():
            row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
            swatch = button("", partial(self._recolour, cid), size_hint_x=0.2)
            swatch.background_color = (*(v / 255 for v in colour_of(project, cid)), 1)
            self.buttons[f"colour:{cid}"] = swatch
            row.add_widget(swatch)
            rename = button(name, partial(self._rename, cid, name))
            self.buttons[f"rename:{cid}"] = rename
            row.add_widget(rename)
            shown = cid not in self.hidden
            hide = button("Hide" if shown else "Show", partial(self._hide, cid), size_hint_x=0.3)
            self.buttons[f"hide:{cid}"] = hide
            row.add_widget(hide)
            self.box.add_widget(row)
        self.buttons["add"], self.buttons["done"] = self.add_button, self.done_button

    def _done(self) -> None:
        self.refresh()
        self.changed()

    def _recolour(self, class_id: int) -> None:
        project = App.get_running_app().project
        current = colour_of(project, class_id)
        nxt = (
            PALETTE[(PALETTE.index(current) + 1) % len(PALETTE)]
            if current in PALETTE
            else PALETTE[0]
        )
        class_store.set_colour(project, class_id, "#{:02x}{:02x}{:02x}".format(*nxt))
        self._done()

    def _rename(self, class_id: int, name: str) -> None:
        project = App.get_running_app().project

        def save(new: str) -> None:
            class_store.rename_class(project, class_id, new)
            self._done()

        Prompt(f"Rename class {name}", save, text=name).open()

    def _hide(self, class_id: int) -> None:
        self.hidden.symmetric_difference_update({class_id})
        self._done()

    def _add(self) -> None:
        project = App.get_running_app().project

        def save(name: str) -> None:
            class_store.add_class(project, name)
            self._done()

        Prompt("Name of the new class", save, hint="e.g. mitosis").open()
