"""First start (and "switch annotator"): who is annotating on this tablet, and where the images
come from.

The name becomes the author of every label version saved; a shared tablet keeps the last few
names as one-tap buttons. Only on first start (no `image_source` in `tablet.json` yet) a second
step asks where images come from: the USB sticks found now (`appliance.media`), each with its
image count, "Choose another folder" (the touch file chooser) or "Later". Everything is a tap:
the expert needs no keyboard beyond typing a name once. Home's import then starts there.
"""

from __future__ import annotations

from functools import partial

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from appliance.media import ImageSource, Medium, find_media
from appliance.ui.widgets import ChooserPopup, ScreenBg, button, label


class WelcomeScreen(ScreenBg):
    """Asks the annotator's name; known names are offered as buttons."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        # at the top: the on-screen keyboard docks at the bottom and must not cover Continue
        outer = AnchorLayout(anchor_y="top", padding=app.gap * 6)
        self.box = Factory.Panel(size_hint=(0.5, None))
        self.box.bind(minimum_height=self.box.setter("height"))
        outer.add_widget(self.box)
        self.add_widget(outer)
        self.field = Factory.TInput(hint_text="Your name")
        self.field.bind(on_text_validate=lambda _f: app.safely(self._continue))
        self.known = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap)
        self.known.bind(minimum_height=self.known.setter("height"))
        self.step = "name"  # or "source": the first start's second question
        self.media: dict[str, object] = {}  # stick name -> its button (the UI tests tap it)

    def refresh(self) -> None:
        app = App.get_running_app()
        self.step = "name"
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
        self.go_on = button("Continue", self._continue)
        self.cancel: Widget | None = None
        if not app.annotator:
            self.box.add_widget(self.go_on)
            return
        # switching annotator from Home: the expert may change their mind (issue 25)
        row = BoxLayout(size_hint_y=None, height=app.touch, spacing=app.gap)
        self.cancel = button("Cancel", self._done)  # the name stays as it was
        row.add_widget(self.cancel)
        row.add_widget(self.go_on)
        self.box.add_widget(row)

    def _choose(self, name: str) -> None:
        self.field.text = name
        self._continue()

    def _continue(self) -> None:
        app = App.get_running_app()
        app.set_annotator(self.field.text)
        if app.image_source() is None:  # first start: one more question
            self.ask_source()
        else:
            self._done()

    def ask_source(self) -> None:
        """Second step: tap a USB stick, another folder, or Later. Counting a stick's images
        looks at a bounded number of files, so a big disk cannot stall the screen."""
        self.step = "source"
        self.media = {}
        self.box.clear_widgets()
        self.box.add_widget(Factory.THeading(text="Where do your images come from?"))
        found = find_media()
        if found:
            self.box.add_widget(label("Tap the USB stick (or card) that holds them:"))
        else:
            self.box.add_widget(
                label("No USB stick found. Plug one in and tap Look again, or choose a folder.")
            )
        for medium in found:
            self.media[medium.name] = button(medium.label(), partial(self._pick_medium, medium))
            self.box.add_widget(self.media[medium.name])
        self.again = button("Look again", self.ask_source)
        self.other = button("Choose another folder", self._choose_folder)
        self.later = button("Later", partial(self._pick, ImageSource("later")))
        for widget in (self.again, self.other, self.later):
            self.box.add_widget(widget)

    def _pick_medium(self, medium: Medium) -> None:
        self._pick(ImageSource.of_medium(medium))

    def _choose_folder(self) -> None:
        ChooserPopup(
            "Where do your images come from?",
            lambda folder: self._pick(ImageSource("folder", str(folder))),
        ).open()

    def _pick(self, source: ImageSource) -> None:
        app = App.get_running_app()
        app.set_image_source(source)
        if source.kind != "later":
            app.notify(f"images will be imported from {source.describe()}")
        self._done()

    def _done(self) -> None:
        app = App.get_running_app()
        if app.is_single_project() and app.project is None:
            app.open_project(app.workspace)
        else:
            app.go("home")
