"""Settings of the open project: selector weights, pre-processing, pre-labeler, inspection
threshold, brush defaults, finger drawing, theme. All but the theme are stored in the project
(its `settings` table) so that every tablet working on it behaves the same.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from kivy.app import App
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.input.motionevent import MotionEvent
from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from appliance import settings
from appliance.assist import inspection, preprocess
from appliance.assist import selector as selector_mod
from appliance.session.about import about_text
from appliance.store.project import Project
from appliance.ui.widgets import ScreenBg, back_to_images, button, label, page

TWO_COLUMNS = mm(200)  # window width from which the settings sit in two columns
# the denoisers in words (the stored values stay the short names)
DENOISING = {"none": "off", "gaussian": "Gaussian", "median": "median", "nlm": "NL-means"}


def _save_number(project: Project, setting: settings.Setting[Any], value: float) -> object:
    """Store a slider's value, rounded for an integer setting."""
    return setting.set(project, round(value) if setting.kind is int else value)


class SettingsScreen(ScreenBg):
    """Two columns of labelled controls; every change is saved at once."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        root = page("Project settings", back_to_images())
        self.grid = GridLayout(cols=2, size_hint_y=None, spacing=(app.gap * 6, app.gap * 2))
        self.grid.bind(minimum_height=self.grid.setter("height"))
        scroll = ScrollView(do_scroll_x=False)
        scroll.add_widget(self.grid)
        root.add_widget(scroll)
        self.add_widget(root)
        self.buttons: dict[str, Widget] = {}  # "<title>:-", "<title>:+" (fine steps)
        self.sliders: dict[str, Widget] = {}  # by title
        self._fillers: dict[Widget, Widget] = {}  # column -> its filler (see _even)

    def refresh(self) -> None:
        app = App.get_running_app()
        project = app.project
        self.grid.clear_widgets()
        self.buttons.clear()
        self.sliders.clear()
        self._fillers.clear()
        if project is None:
            return
        self.grid.cols = 2 if Window.width >= TWO_COLUMNS else 1  # a small tablet: one column
        left, right = self._column(), self._column()
        left.add_widget(Factory.THeading(text="Which image next (selector weights)"))
        weights = settings.SELECTOR_WEIGHTS.get(project)
        for name in selector_mod.STRATEGIES:
            self._slider(
                left,
                name.replace("_", " "),
                weights.get(name, 0.0),
                0,
                1,
                partial(self._weight, name),
            )
        left.add_widget(Factory.THeading(text="Pre-label"))
        self._choice(
            left,
            settings.PRELABEL.choices,
            settings.PRELABEL.get(project),
            lambda v: settings.PRELABEL.set(project, v),
        )
        left.add_widget(Factory.THeading(text="Label check"))
        checks = inspection.load_settings(project, learn=False)
        self._slider(
            left, "warn below score", checks.warning_threshold, 0, 1, self._warning_threshold
        )
        shown = preprocess.load(project)
        right.add_widget(Factory.THeading(text="Image display (pre-processing)"))
        percent = "{:.1f} %".format
        low, high = shown.low, shown.high
        self._slider(right, "dark cut-off", low, 0, 20, lambda v: self._pre(low=v), percent)
        self._slider(right, "bright cut-off", high, 80, 100, lambda v: self._pre(high=v), percent)
        right.add_widget(label("Denoise", font_size=app.font_small))  # the row's words: how
        self._choice(
            right, preprocess.DENOISERS, shown.denoise, lambda v: self._pre(denoise=v), DENOISING
        )
        self._choice(
            right,
            ("off", "on"),
            "on" if shown.clahe else "off",
            lambda v: self._pre(clahe=v == "on"),
            {"off": "plain contrast", "on": "local contrast"},  # CLAHE, in words
        )
        right.add_widget(Factory.THeading(text="Drawing"))
        for setting, title, shown_as in (
            (settings.BRUSH_SIZE, "brush size", "{:.0f} px".format),
            (settings.OPACITY, "overlay opacity", "{:.0%}".format),
        ):
            assert setting.low is not None and setting.high is not None, (
                "drawing settings have a range"
            )
            self._slider(
                right,
                title,
                setting.get(project),
                setting.low,
                setting.high,
                partial(_save_number, project, setting),
                shown_as,
                step=1 if setting.kind is int else None,  # a brush 1 px wider, not 0.37 px
            )
        self._toggle(right, settings.FINGER_DRAWS, ("pen draws", "finger draws"))
        self._toggle(right, settings.LEFT_HANDED, ("right-handed", "left-handed"))
        right.add_widget(Factory.THeading(text="Theme (this tablet)"))
        self._choice(right, ("dark", "light"), app.prefs.get("theme", "dark"), app.apply_theme)
        right.add_widget(Factory.THeading(text="About"))
        right.add_widget(label(about_text(project), color=app.c_muted))
        for col in (left, right):
            col.add_widget(self._fillers[col])
            self.grid.add_widget(col)
        self._even()

    def _column(self) -> BoxLayout:
        app = App.get_running_app()
        col = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        self._fillers[col] = Widget(size_hint_y=None, height=0)
        col.bind(minimum_height=self._even)
        return col

    def _even(self, *_: object) -> None:
        """Side by side, the shorter column gets an empty filler at its end, so that both
        start at the top (a grid cell puts a shorter one at its bottom, leaving a hole under
        the title); one under the other, no filler."""
        fillers = {col: self._fillers[col] for col in self.grid.children if col in self._fillers}
        natural = {col: col.minimum_height - filler.height for col, filler in fillers.items()}
        tallest = max(natural.values(), default=0)
        for col, filler in fillers.items():
            filler.height = tallest - natural[col] if self.grid.cols == 2 else 0
        for col in fillers:
            col.height = col.minimum_height

    def _slider(
        self,
        parent: BoxLayout,
        title: str,
        value: float,
        lo: float,
        hi: float,
        save: Callable[[float], object],
        shown_as: Callable[[float], str] = "{:.2f}".format,
        step: float | None = None,
    ) -> None:
        """A labelled slider that saves when the finger lifts (not on every move); the label
        (two short lines at most: title, then the value as `shown_as` writes it) fits its row.
        With a `step`, the slider moves in steps and − / + buttons beside it change the value
        by one step: a finger cannot hit 7 px on a slider from 1 to 200."""
        app = App.get_running_app()
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        text = Factory.TLabel(
            text=f"{title}\n{shown_as(value)}",
            size_hint=(0.45, 1),
            font_size=app.font_small,
            max_lines=2,
        )
        slider = Factory.TSlider(min=lo, max=hi, value=float(value), step=step or 0)
        slider.bind(value=lambda _s, v: setattr(text, "text", f"{title}\n{shown_as(v)}"))
        self.sliders[title] = slider

        def released(s: Widget, touch: MotionEvent) -> None:
            if touch.grab_current is s:
                app.safely(save, float(s.value))

        def nudge(by: float) -> None:
            slider.value = min(hi, max(lo, slider.value + by))
            save(float(slider.value))

        slider.bind(on_touch_up=released)
        row.add_widget(text)
        if step:
            thin = {"size_hint_x": None, "width": app.touch}
            self.buttons[f"{title}:-"] = button("−", partial(nudge, -step), **thin)
            row.add_widget(self.buttons[f"{title}:-"])
        row.add_widget(slider)
        if step:
            self.buttons[f"{title}:+"] = button("+", partial(nudge, step), **thin)
            row.add_widget(self.buttons[f"{title}:+"])
        parent.add_widget(row)

    def _choice(
        self,
        parent: BoxLayout,
        options: tuple[str, ...],
        current: str,
        save: Callable[[str], object],
        words: dict[str, str] | None = None,
    ) -> None:
        """One toggle per option (shown as `words[option]` where given); saves on a tap."""
        app = App.get_running_app()
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        group = f"choice-{id(row)}"
        for option in options:
            toggle = Factory.TToggle(
                text=(words or {}).get(option, option),
                group=group,
                state="down" if option == current else "normal",
                font_size=app.font_small,
            )
            toggle.bind(on_press=lambda _b, o=option: app.safely(save, o))
            row.add_widget(toggle)
        parent.add_widget(row)

    def _toggle(
        self, parent: BoxLayout, setting: settings.Setting[bool], names: tuple[str, str]
    ) -> None:
        """A two-way choice for a yes/no setting (`names`: the no and the yes)."""
        project = App.get_running_app().project
        self._choice(
            parent,
            names,
            names[setting.get(project)],
            lambda v: setting.set(project, v == names[1]),
        )

    def _weight(self, name: str, value: float) -> None:
        project = App.get_running_app().project
        weights = settings.SELECTOR_WEIGHTS.get(project)
        weights[name] = round(value, 3)
        settings.SELECTOR_WEIGHTS.set(project, weights)

    def _warning_threshold(self, value: float) -> None:
        project = App.get_running_app().project
        checks = inspection.load_settings(project, learn=False)
        checks.warning_threshold = round(value, 3)
        settings.INSPECTION.set(project, checks.to_dict())

    def _pre(self, **change: object) -> None:
        project = App.get_running_app().project
        current = preprocess.load(project).to_dict()
        current.update(change)
        preprocess.save(project, preprocess.Preprocessing.from_dict(current))
