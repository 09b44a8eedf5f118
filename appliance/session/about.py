"""What the About box says: the app's version and the active models (Kivy-free, testable)."""

from __future__ import annotations

from appliance import __version__
from appliance.store.models import list_models
from appliance.store.project import Project

__all__ = ["about_text"]


def about_text(project: Project) -> str:
    """The app's version and the active models' names and bundles, for support questions."""
    lines = [f"Annotation appliance {__version__}"]
    for model in list_models(project):
        if model.active:
            lines.append(f"{model.role}: {model.name} (bundle {model.bundle_id[:8]})")
    return "\n".join(lines)
