"""The lock screen: the open project stays hidden until the annotator types their PIN.

Shown when a project with PINs opens and after its idle minutes (`appliance.session.idle_lock`);
a wrong PIN says so in one line, with the wait the back-off imposes. The annotate screen keeps
its image and undo history underneath, so unlocking returns to the same place.
"""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.anchorlayout import AnchorLayout

from appliance.security.vault import WrongPin
from appliance.ui.widgets import ScreenBg, button


class LockScreen(ScreenBg):
    """A PIN field and an Unlock button; `back_to` is the screen the lock interrupted."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        outer = AnchorLayout()
        box = Factory.Panel(size_hint=(0.5, None))
        box.bind(minimum_height=box.setter("height"))
        self.title = Factory.THeading(text="Locked")
        self.note = Factory.TLabel(text="")
        self.field = Factory.TInput(hint_text="PIN", password=True)
        self.field.bind(on_text_validate=lambda _f: App.get_running_app().safely(self.unlock))
        self.unlock_button = button("Unlock", self.unlock)
        for widget in (self.title, self.note, self.field, self.unlock_button):
            box.add_widget(widget)
        outer.add_widget(box)
        self.add_widget(outer)
        self.back_to = "annotate"

    def refresh(self) -> None:
        app = App.get_running_app()
        root = app.pending_project or (app.project.root if app.project is not None else None)
        name = root.name if root is not None else ""
        self.title.text = f"{name} is locked · {app.annotator}"
        self.note.text = "Type your PIN to go on."
        self.field.text = ""

    def unlock(self) -> None:
        app = App.get_running_app()
        try:
            app.idle_lock.unlock(app.annotator, self.field.text)
        except WrongPin as exc:
            self.note.text = str(exc).split(": ", 1)[-1]
            self.field.text = ""
            return
        self.field.text = ""
        if not app.unlocked():  # an encrypted project opens now; a hidden one shows again
            app.go(self.back_to)
