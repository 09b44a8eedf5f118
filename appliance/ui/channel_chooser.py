"""Before an import: which channel (and series) of each microscope file the expert annotates.

A CZI with three channels would otherwise import its first channel without a word. After the
folder is chosen, `appliance.importer.microscope_files` lists each file's channels and series
(off the UI thread); every group of files with the same channel names is asked once (one big
button per channel, and for files of several series: the first only or every series), so a
folder of 40 CZIs of one experiment is one tap. The expert may still ask for each file of a
group on its own. Cancel in any popup imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from kivy.app import App
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.modalview import ModalView
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance.importer import StackChoice
from appliance.microscope import MicroscopeInfo, listed, same_channels
from appliance.ui.widgets import button, label, scroll_only_when_needed

CHANNEL_ROOM = 1.3  # a channel's button, in touch heights: big, and room for a 2-line name
MESSAGE_ROOM = 0.13  # of the window's height, left free at the bottom for the message bar


class ChannelChooser(ModalView):
    """One question for a group of files with the same channels: tap the channel to import
    (which confirms); toggles above it choose the series (files of several series) and whether
    the answer holds for the whole group (groups of several files).
    `on_choose(choice, whole_group)`; `on_cancel()`."""

    def __init__(
        self,
        group: list[MicroscopeInfo],
        on_choose: Callable[[StackChoice, bool], object],
        on_cancel: Callable[[], object],
    ) -> None:
        app = App.get_running_app()
        wide = Window.width * 0.6 >= mm(110)  # else nearly the whole width (a small tablet)
        super().__init__(
            size_hint=(0.6 if wide else 0.94, None), pos_hint={"top": 0.97}, auto_dismiss=False
        )
        self.on_choose, self.on_cancel = on_choose, on_cancel
        first = group[0]
        channels, series = first.channels, first.series
        panel = Factory.Panel(size_hint_y=None)
        panel.bind(minimum_height=panel.setter("height"))
        self.heading = Factory.THeading(text=first.path.name)
        panel.add_widget(self.heading)

        self.series_toggles: dict[str, Widget] = {}
        if len(series) > 1:
            panel.add_widget(label(f"{len(series)} series: {listed(series, 3)}", color=app.c_muted))
            texts = {
                "first": f"First series only ({series[0]})",
                "all": f"All {len(series)} series",
            }
            panel.add_widget(self._toggles(self.series_toggles, f"series-{id(self)}", texts))
        self.group_toggles: dict[str, Widget] = {}
        if len(group) > 1:
            texts = {"all": f"Same for all {len(group)} files", "each": "Ask for each file"}
            panel.add_widget(self._toggles(self.group_toggles, f"group-{id(self)}", texts))

        files = f" in each of {len(group)} files" if len(group) > 1 else ""
        many = len(channels) > 1  # else only the series is a choice: the channel says "go"
        ask = (
            f"{len(channels)} channels{files}: pick the one to annotate"
            if many
            else f"1 channel{files}: tap it to import"
        )
        self.question = label(ask)
        panel.add_widget(self.question)
        self.channel_buttons: dict[str, Widget] = {}
        grid = GridLayout(cols=1, size_hint_y=None, spacing=app.gap)
        grid.bind(minimum_height=grid.setter("height"))
        for index, name in enumerate(channels):
            if channels.count(name) > 1:  # two channels of one name: told apart by index
                name = f"{name} ({index})"
            widget = button(
                name, partial(self._choose, index, name, channels), shorten=False, max_lines=2
            )
            widget.height = app.touch * CHANNEL_ROOM  # after the kv rule's `app.touch`
            self.channel_buttons[name] = widget
            grid.add_widget(widget)
        grid.bind(width=lambda _g, width: side_by_side(grid, width))
        scroll = ScrollView(do_scroll_x=False, bar_width=app.gap * 2, size_hint_y=None)
        scroll.add_widget(grid)
        scroll_only_when_needed(scroll, grid)

        def fit(*_: object) -> None:
            """As tall as the channels, but the popup stays above the bottom of the window,
            where messages show (as the file chooser does): the channels scroll when the
            rest of the popup leaves them less room."""
            rest = panel.minimum_height - scroll.height
            room = Window.height * (0.97 - MESSAGE_ROOM) - rest
            scroll.height = max(app.touch * CHANNEL_ROOM, min(grid.height, room))
            self.question.text = ask + (" (scroll for all)" if grid.height > room else "")

        grid.bind(height=fit)
        panel.bind(minimum_height=fit)
        panel.add_widget(scroll)
        self.cancel = button("Cancel: import nothing", self._cancel)
        panel.add_widget(self.cancel)
        panel.bind(height=self.setter("height"))
        self.height = panel.height
        self.add_widget(panel)

    def _toggles(self, into: dict[str, Widget], group: str, texts: dict[str, str]) -> BoxLayout:
        """A row of touch-sized toggles of one group, the first one chosen; a text that does
        not fit one line wraps onto a second (the row grows) rather than being cut."""
        app = App.get_running_app()
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        for k, (key, text) in enumerate(texts.items()):
            toggle = Factory.TToggle(
                text=text, group=group, state="down" if k == 0 else "normal", shorten=False
            )
            toggle.bind(texture_size=lambda t, size: self._grow(row, t, size))
            into[key] = toggle
            row.add_widget(toggle)
        return row

    @staticmethod
    def _grow(row: Widget, _toggle: Widget, _size: tuple[float, float]) -> None:
        app = App.get_running_app()
        texts = (child.texture_size[1] for child in row.children)
        row.height = max(app.touch, *(height + app.gap * 2 for height in texts))
        for child in row.children:
            child.height = row.height

    def _down(self, toggles: dict[str, Widget], key: str) -> bool:
        return bool(toggles) and toggles[key].state == "down"

    def _choose(self, index: int, name: str, channels: tuple[str, ...]) -> None:
        # by name where the names tell the channels apart: with every series, each series
        # is searched for it (a series that lacks it is reported, not given another channel)
        channel: int | str = name if channels.count(name) == 1 and not name.isdigit() else index
        series = None if self._down(self.series_toggles, "all") else 0
        whole = not self.group_toggles or self._down(self.group_toggles, "all")
        self.dismiss()
        self.on_choose(StackChoice(channel, series), whole)

    def _cancel(self) -> None:
        self.dismiss()
        self.on_cancel()


def side_by_side(grid: GridLayout, width: float) -> None:
    """Up to three channel buttons to a row of `grid`, as many as keep every name whole on
    one line: three channels in one row leave the popup short enough for an 8-inch tablet."""
    app = App.get_running_app()
    buttons = grid.children
    widest = max((b._label.get_extents(b.text)[0] for b in buttons), default=0)
    most = max(1, min(3, len(buttons)))
    grid.cols = next(
        (k for k in range(most, 1, -1) if (width - app.gap * (k - 1)) / k >= widest + app.gap * 4),
        1,
    )


def ask_choices(
    infos: list[MicroscopeInfo],
    done: Callable[[dict[Path, StackChoice]], object],
    cancelled: Callable[[], object],
) -> None:
    """Ask for each group of files that offer a choice (several channels or series), one
    popup after the other; then `done(choices)` with a choice per such file, or `cancelled()`
    at the first Cancel. Nothing to ask: `done({})` at once."""
    queue = same_channels([info for info in infos if info.asks])
    choices: dict[Path, StackChoice] = {}

    def ask_next() -> None:
        if not queue:
            done(choices)
            return
        group = queue.pop(0)

        def chosen(choice: StackChoice, whole: bool) -> None:
            for info in group if whole else group[:1]:
                choices[info.path] = choice
            if not whole:  # the others of the group, one by one
                queue[:0] = [[info] for info in group[1:]]
            ask_next()

        ChannelChooser(group, chosen, cancelled).open()

    ask_next()
