"""The slide screen: one region of a whole slide, its cells marked as points and boxes.

Opened for a region image (`SlideScreen.open_region`); the viewer shows the whole slide for
context, the region outlined. Class buttons choose the active class; Fit shows the overview,
1:1 the region at full resolution, −/+ zoom; a finger tap selects a point or box, which
Delete removes and Re-class gives the active class; Undo takes back the last change; Save
stores a new version of the region's label. Every change is kept as the crash draft and
leaving keeps unsaved marks as a draft, as on the annotate screen. Widgets are keyed in
`buttons`: `back`, `fit`, `full`, `zoom_in`, `zoom_out`, `delete`, `reclass`, `undo`,
`save`, `class:<id>`.
"""

from __future__ import annotations

from kivy.app import App
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from appliance.overlay import class_colour
from appliance.session.slide_work import SlideWork
from appliance.store.classes import colours
from appliance.ui.slide_viewer import SlideViewer
from appliance.ui.widgets import ScreenBg, button, class_toggle, label

__all__ = ["SlideScreen"]


class SlideScreen(ScreenBg):
    """A region on its slide; see the module doc."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.work: SlideWork | None = None
        self.buttons: dict[str, Widget] = {}
        self.root = BoxLayout(orientation="vertical")
        self.bar = BoxLayout(size_hint_y=None)
        self.status = label("", size_hint_y=None)
        self.viewer = SlideViewer()
        self.viewer.on_marked = self._changed
        self.root.add_widget(self.bar)
        self.root.add_widget(self.viewer)
        self.root.add_widget(self.status)
        self.add_widget(self.root)

    def open_region(self, image_id: int) -> None:
        """Show region `image_id` on its slide (fitted) and switch to this screen."""
        app = App.get_running_app()
        self.close()
        self.viewer.selected = None
        self.work = SlideWork(app.project, image_id, app.annotator)
        self._build_bar()
        app.go(self.name)
        self.viewer.show(self.work)
        self._show_status()

    def _build_bar(self) -> None:
        app = App.get_running_app()
        self.bar.clear_widgets()
        self.buttons.clear()
        self.bar.height = app.touch
        self.status.height = app.touch / 2
        narrow = {"size_hint_x": None, "width": app.touch * 1.4}
        actions = [
            ("back", "Back", self.back),
            ("fit", "Fit", self.viewer.fit),
            ("full", "1:1", self.viewer.full_resolution),
            ("zoom_out", "−", lambda: self.viewer.zoom(0.5)),
            ("zoom_in", "+", lambda: self.viewer.zoom(2.0)),
            ("delete", "Delete", self.delete_selected),
            ("reclass", "Re-class", self.reclass_selected),
            ("undo", "Undo", self.undo),
            ("save", "Save", self.save),
        ]
        for key, text, fn in actions:
            self.buttons[key] = button(text, fn, **narrow)
            self.bar.add_widget(self.buttons[key])
        chosen = colours(app.project)
        assert self.work is not None
        for cid, name in app.project.classes().items():
            toggle = class_toggle(
                name,
                chosen.get(cid, class_colour(cid)),
                "slide-class",
                cid == self.work.active_class,
            )
            toggle.bind(on_release=lambda _t, c=cid: self.set_class(c))
            self.buttons[f"class:{cid}"] = toggle
            self.bar.add_widget(toggle)

    def _changed(self) -> None:
        """After every change: the label on screen becomes the crash draft (one transaction,
        as on the annotate screen), so a crash or a quit loses no mark."""
        if self.work is not None and self.work.work.dirty:
            self.work.work.save_draft()
        self._show_status()

    def set_class(self, class_id: int) -> None:
        if self.work is not None:
            self.work.active_class = class_id
            self._show_status()

    def delete_selected(self) -> None:
        """Remove the selected point or box (one undo step)."""
        if self.work is not None and self.viewer.selected is not None:
            self.work.delete_object(self.viewer.selected)
            self.viewer.selected = None
            self.viewer.redraw()
            self._changed()

    def reclass_selected(self) -> None:
        """Give the selected point or box the active class (one undo step)."""
        if self.work is not None and self.viewer.selected is not None:
            self.work.reclass_object(self.viewer.selected, self.work.active_class)
            self.viewer.redraw()
            self._changed()

    def undo(self) -> None:
        if self.work is not None and self.work.undo():
            self.viewer.selected = None
            self.viewer.redraw()
            self._changed()

    def save(self) -> None:
        if self.work is not None:
            version = self.work.save()
            App.get_running_app().notify(f"saved version {version}")
            self._show_status()

    def back(self) -> None:
        app = App.get_running_app()
        self.close()
        app.go("annotate")

    def close(self) -> None:
        """Park unsaved marks as a draft and release the slide."""
        if self.work is not None:
            work, self.work = self.work, None
            work.close()

    def _show_status(self) -> None:
        if self.work is None:
            return
        objects = self.work.objects()
        n_points = sum(1 for o in objects if o.kind == "point")
        r = self.work.region
        dirty = " (unsaved)" if self.work.work.dirty else ""
        self.status.text = (
            f"{self.work.record.name}  region {r.x},{r.y} {r.width}×{r.height}  "
            f"{n_points} points, {len(objects) - n_points} boxes{dirty}"
        )
