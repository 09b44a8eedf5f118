"""Gallery: every image as a thumbnail with its label state; open, flag, or compare versions.

A visit like Settings: the annotate screen keeps its image while the gallery is open. *Open*
jumps to an image (the image being edited is saved first, as with Previous). *Flag* marks an
image for the selector's cherry-pick strategy (seed 004). *History* lists the stored versions
of the image's label and shows any two side by side. Thumbnails are drawn on the job worker.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from kivy.app import App
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.graphics.texture import Texture
from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.image import Image
from kivy.uix.modalview import ModalView
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance.assist.jobs import JobContext
from appliance.session import gallery_data
from appliance.store.conflicts import resolve
from appliance.supervision.blind import visible_conflict, visible_versions
from appliance.ui.widgets import ScreenBg, back_to_images, button, label, page

MAX_TILES = 240  # thumbnails drawn per visit; a tablet project rarely holds more


def texture_of(rgb: np.ndarray) -> Texture:
    h, w = rgb.shape[:2]
    tex = Texture.create(size=(w, h), colorfmt="rgb")
    tex.blit_buffer(np.ascontiguousarray(rgb[::-1]).tobytes(), colorfmt="rgb", bufferfmt="ubyte")
    return tex


def counted(count: int, noun: str) -> str:
    """'1 version', '3 versions', '0 objects'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


TILE_WIDTH = mm(55)  # the least width of a gallery tile


class GalleryScreen(ScreenBg):
    """A grid of tiles; `buttons` keyed `open:<id>`, `flag:<id>`, `history:<id>`."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        root = page("Gallery", back_to_images())
        self.grid = GridLayout(cols=4, size_hint_y=None, spacing=app.gap * 2)
        self.grid.bind(minimum_height=self.grid.setter("height"))
        scroll = ScrollView(do_scroll_x=False)
        scroll.add_widget(self.grid)
        root.add_widget(scroll)
        self.add_widget(root)
        self.buttons: dict[str, Widget] = {}
        self.images: dict[int, Image] = {}

    def refresh(self) -> None:
        app = App.get_running_app()
        project = app.project
        self.grid.clear_widgets()
        self.buttons.clear()
        self.images.clear()
        # as many columns as tiles of `TILE_WIDTH` fit: Open, Flag and History stay readable
        self.grid.cols = max(2, int(Window.width // TILE_WIDTH))
        if project is None:
            return
        current = app.sm.get_screen("annotate").work
        shown = gallery_data.items(project, app.annotator)[:MAX_TILES]
        for item in shown:
            self.grid.add_widget(
                self._tile(item, current is not None and current.image_id == item.image_id)
            )
        ids, annotator = [i.image_id for i in shown], app.annotator

        def draw(ctx: JobContext) -> dict[int, np.ndarray]:
            out = {}
            for image_id in ids:
                ctx.check()
                out[image_id] = gallery_data.thumbnail(project, image_id, annotator)
            return out

        app.run_job(draw, self._show_thumbnails, key="gallery")

    def _tile(self, item: gallery_data.GalleryItem, current: bool) -> BoxLayout:
        app = App.get_running_app()
        tile = Factory.Panel(size_hint_y=None, height=app.touch * 6.6)
        picture = Image(fit_mode="contain")
        self.images[item.image_id] = picture
        tile.add_widget(picture)
        state = {"unlabeled": app.c_muted, "labeled": app.c_ok}.get(item.state, app.c_text)
        where = "  (open now)" if current else ""
        tile.add_widget(Factory.TLabel(text=f"{item.name}{where}", shorten=True, max_lines=1))
        text = f"{item.state} · {counted(item.versions, 'version')}"
        if item.conflict:  # stays until the expert keeps one or merges (History, annotate)
            text, state = (
                f"conflict · {counted(item.versions, 'version')} · pick in History",
                app.c_error,
            )
        tile.add_widget(Factory.TLabel(text=text, color=state))
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        for wid, text, action in (
            (f"open:{item.image_id}", "Open", lambda i=item.image_id: self._open(i)),
            (
                f"flag:{item.image_id}",
                "Flagged" if item.flagged else "Flag",
                lambda i=item: self._flag(i),
            ),
            (f"history:{item.image_id}", "History", lambda i=item: self._history(i)),
        ):
            wide = 1.4 if wid.startswith("history") else 0.8
            self.buttons[wid] = button(text, action, font_size=app.font_small, size_hint_x=wide)
            row.add_widget(self.buttons[wid])
        if item.flagged:
            self.buttons[f"flag:{item.image_id}"].background_color = app.c_active
        tile.add_widget(row)
        return tile

    def _show_thumbnails(self, pictures: dict[int, np.ndarray]) -> None:
        for image_id, rgb in pictures.items():
            if image_id in self.images:
                self.images[image_id].texture = texture_of(rgb)

    def _open(self, image_id: int) -> None:
        app = App.get_running_app()
        annotate = app.sm.get_screen("annotate")
        app.go("annotate")
        if annotate.presenter is not None:
            annotate.presenter.jump(image_id)

    def _flag(self, item: gallery_data.GalleryItem) -> None:
        app = App.get_running_app()
        app.project.set_cherry_picked(item.image_id, not item.flagged)
        self.refresh()

    def _history(self, item: gallery_data.GalleryItem) -> HistoryPopup | None:
        if item.versions == 0:
            App.get_running_app().notify(f"{item.name} has no label yet")
            return None
        popup = HistoryPopup(item)
        popup.open()
        return popup


class HistoryPopup(ModalView):
    """The versions of one image's label; tap B (before) and A (after) to compare any two."""

    def __init__(self, item: gallery_data.GalleryItem) -> None:
        super().__init__(size_hint=(0.92, 0.84), pos_hint={"top": 0.97}, auto_dismiss=False)
        app = App.get_running_app()
        self.item = item
        self.versions = visible_versions(app.project, item.image_id, app.annotator)
        self.before = self.versions[-2].id if len(self.versions) > 1 else self.versions[-1].id
        self.after = self.versions[-1].id
        self.buttons: dict[str, Widget] = {}
        heads = {v.id for v in visible_conflict(app.project, item.image_id, app.annotator)}
        box = Factory.Panel()
        box.add_widget(Factory.THeading(text=f"Versions of {item.name}"))
        if heads:
            box.add_widget(
                label(
                    f"Conflict: {len(heads)} versions from different tablets. Keep one, or "
                    "open the image, edit it and save it as the merge.",
                    color=app.c_error,
                )
            )
        body = BoxLayout(spacing=app.gap * 2)
        rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        rows.bind(minimum_height=rows.setter("height"))
        for v in reversed(self.versions):
            row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
            flags = " (coarse)" if v.coarse else " (reviewed)" if v.reviewed else ""
            when, found = v.created[:16].replace("T", " "), counted(v.n_instances, "object")
            # wrapped, never shortened: the row grows to the lines its words need
            text = label(
                f"v{v.id} {v.source}{flags} · {v.author} · {when} · {found}",
                font_size=app.font_small,
            )
            text.bind(height=lambda t, h, r=row: setattr(r, "height", max(app.touch, h)))
            row.add_widget(text)
            for side in ("before", "after"):
                toggle = Factory.TToggle(
                    text="B" if side == "before" else "A",
                    group=f"{side}-{id(self)}",
                    size_hint_x=None,
                    width=app.touch,
                    state="down" if getattr(self, side) == v.id else "normal",
                )
                toggle.bind(on_press=lambda _t, s=side, i=v.id: self._choose(s, i))
                self.buttons[f"{side}:{v.id}"] = toggle
                row.add_widget(toggle)
            if v.id in heads:
                self.buttons[f"keep:{v.id}"] = button(
                    "Keep", partial(self._keep, v.id), size_hint_x=None, width=app.touch * 1.6
                )
                row.add_widget(self.buttons[f"keep:{v.id}"])
            rows.add_widget(row)
        # the list beside the two pictures (a share of the width, each picture 0.29), above
        # them on an upright window
        upright = Window.height > Window.width
        body.orientation = "vertical" if upright else "horizontal"
        scroll = ScrollView(do_scroll_x=False, size_hint=(1, 0.8) if upright else (1.45, 1))
        scroll.add_widget(rows)
        body.add_widget(scroll)
        pictures = BoxLayout(spacing=app.gap * 2) if upright else body
        self.picture_before, self.picture_after = (
            Image(fit_mode="contain"),
            Image(fit_mode="contain"),
        )
        for title, picture in (("Before", self.picture_before), ("After", self.picture_after)):
            col = BoxLayout(orientation="vertical")
            self.buttons[f"title:{title}"] = label(title)
            col.add_widget(self.buttons[f"title:{title}"])
            col.add_widget(picture)
            pictures.add_widget(col)
        if pictures is not body:
            body.add_widget(pictures)
        box.add_widget(body)
        self.buttons["close"] = button("Close", self.dismiss)
        box.add_widget(self.buttons["close"])
        self.add_widget(box)
        self.shown: tuple[int, int] | None = None
        self._draw()

    def _keep(self, version: int) -> None:
        """The expert picked this version: it closes the conflict (the others merged)."""
        app = App.get_running_app()
        resolve(app.project, self.item.image_id, keep=version, author=app.annotator or "expert")
        app.notify(f"Kept v{version}; the conflict on {self.item.name} is closed")
        self.dismiss()
        app.sm.get_screen("gallery").refresh()

    def _choose(self, side: str, version: int) -> None:
        setattr(self, side, version)
        self._draw()

    def _draw(self) -> None:
        app = App.get_running_app()
        project, image_id, pair = app.project, self.item.image_id, (self.before, self.after)

        def done(pictures: tuple[np.ndarray, np.ndarray]) -> None:
            self.picture_before.texture = texture_of(pictures[0])
            self.picture_after.texture = texture_of(pictures[1])
            self.shown = pair

        app.run_job(
            lambda _ctx: gallery_data.version_pair(project, image_id, *pair), done, key="history"
        )
