"""High score (seed 000's gamification): annotators ranked by their hidden-control quality.

Shown only when the project switches it on (`appliance controls config DIR --highscore`);
points are the control quality in thousandths (`supervision.summary.high_score`), with the
number of controls behind them, so a lucky first control does not look like a record. The
screen draws what the core computes and nothing else.
"""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.boxlayout import BoxLayout

from appliance.supervision import config
from appliance.supervision.summary import leaderboard
from appliance.ui.widgets import ScreenBg, back_to_images, label, page


class HighScoreScreen(ScreenBg):
    """One row per annotator with scored controls, best first; the current one marked."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        root = page("High score", back_to_images())
        self.rows = BoxLayout(orientation="vertical", spacing=app.gap * 2)
        root.add_widget(self.rows)
        self.add_widget(root)
        self.shown: list[tuple[str, int, int]] = []

    def refresh(self) -> None:
        app = App.get_running_app()
        self.rows.clear_widgets()
        project = app.project
        if project is None or not config.load(project).highscore:
            self.shown = []
            self.rows.add_widget(label("The high score is switched off for this project."))
            return
        self.shown = leaderboard(project)
        if not self.shown:
            self.rows.add_widget(label("No scores yet: keep annotating."))
        for rank, (name, points, n) in enumerate(self.shown, start=1):
            me = " (you)" if name == app.annotator else ""
            row = Factory.Panel(orientation="horizontal", size_hint_y=None, height=app.touch * 1.4)
            row.add_widget(Factory.THeading(text=f"{rank}. {name}{me}"))
            checks = "1 check" if n == 1 else f"{n} checks"
            row.add_widget(Factory.TLabel(text=f"{points} points · {checks}"))
            self.rows.add_widget(row)
        self.rows.add_widget(BoxLayout())  # push the rows to the top
