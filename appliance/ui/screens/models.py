"""Models: the bundles installed in the open project, with role, metrics and origin.

"Activate" on an older model is the rollback: the store re-hashes its file first, so a model
whose file went missing or changed is refused with a message instead of being activated.
"""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView

from appliance.bundles.install import activate_model
from appliance.store.models import InstalledModel, list_models
from appliance.ui.widgets import ScreenBg, back_to_images, button, label, page


def metrics_text(metrics: dict) -> str:
    """`dice 0.87 · f1 0.80`: numbers rounded, nested values left out."""
    parts = [
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in metrics.items()
        if isinstance(v, int | float | str)
    ]
    return " · ".join(parts[:5]) or "no metrics"


class ModelsScreen(ScreenBg):
    """One row per installed model; the active one per role is marked."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        app = App.get_running_app()
        root = page("Installed models", back_to_images())
        self.rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=app.gap * 2)
        self.rows.bind(minimum_height=self.rows.setter("height"))
        scroll = ScrollView(do_scroll_x=False)
        scroll.add_widget(self.rows)
        root.add_widget(scroll)
        self.add_widget(root)

    def refresh(self) -> None:
        app = App.get_running_app()
        self.rows.clear_widgets()
        models = list_models(app.project) if app.project else []
        if not models:
            self.rows.add_widget(
                label("No models yet. Install a model bundle from Home (Install models).")
            )
        for model in reversed(models):
            self.rows.add_widget(self._row(model))

    def _row(self, model: InstalledModel) -> BoxLayout:
        app = App.get_running_app()
        row = Factory.Panel(orientation="horizontal", size_hint_y=None, height=app.touch * 2.6)
        text = BoxLayout(orientation="vertical")
        state = "ACTIVE" if model.active else "inactive"
        text.add_widget(Factory.THeading(text=f"{model.role}: {model.name}  [{state}]"))
        text.add_widget(Factory.TLabel(text=metrics_text(model.metrics), color=app.c_muted))
        origin = f"training job {model.job_id[:8]}" if model.job_id else "no training job"
        signer = f"signed by lab key {model.signer}" if model.signer else "UNSIGNED"
        text.add_widget(
            Factory.TLabel(
                text=f"installed {model.installed[:16]} · bundle {model.bundle_id[:8]} · {origin}"
                f" · {signer}",
                color=app.c_muted,
            )
        )
        row.add_widget(text)
        if not model.active:
            row.add_widget(
                button(
                    "Activate",
                    lambda: self._activate(model),
                    size_hint=(None, None),
                    width=app.sidebar * 0.6,
                    pos_hint={"center_y": 0.5},
                )
            )
        return row

    def _activate(self, model: InstalledModel) -> None:
        app = App.get_running_app()
        activate_model(app.project, model.id)
        app.notify(f"{model.role} model {model.name} is active")
        app.refresh_selector()  # a new pre-label model: its uncertainty for the selector
        self.refresh()
