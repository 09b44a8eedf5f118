"""First start (and "switch annotator"): who is annotating on this tablet.

The name becomes the author of every label version saved; a shared tablet keeps the last few
names as one-tap buttons.
"""

from __future__ import annotations

from functools import partial

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout

from appliance.ui.widgets import ScreenBg, button, label


class WelcomeScreen(ScreenBg):
    """Asks the annotator's name; known names are offered as buttons."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        outer = AnchorLayout()
        self.box = Factory.Panel(size_hint=(0.5, None))
        self.box.bind(minimum_height=self.box.setter("height"))
        outer.add_widget(self.box)
        self.add_widget(outer)
        self.field = Factory.TInput(hint_text="Your name")
        self.field.bind(on_text_validate=lambda _f: app.safely(self._continue))
        self.known = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        self.known.bind(minimum_height=self.known.setter("height"))

    def refresh(self) -> None:
        app = App.get_running_app()
        self.box.clear_widgets()
        self.box.add_widget(Factory.THeading(text="Who is annotating?"))
        self.box.add_widget(
            label("Your name is saved with every label you make. Change it any time on Home.")
        )
        self.field.text = ""
        self.box.add_widget(self.field)
        self.known.clear_widgets()
        for name in app.prefs.get("annotators", []):
            self.known.add_widget(button(name, partial(self._choose, name)))
        if self.known.children:
            self.box.add_widget(label("Or tap your name:"))
            self.box.add_widget(self.known)
        self.box.add_widget(button("Continue", self._continue))

    def _choose(self, name: str) -> None:
        self.field.text = name
        self._continue()

    def _continue(self) -> None:
        app = App.get_running_app()
        app.set_annotator(self.field.text)
        if app.is_single_project() and app.project is None:
            app.open_project(app.workspace)
        else:
            app.go("home")
