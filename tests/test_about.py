"""Settings says which app version and which models run here (what support asks first)."""

from __future__ import annotations

from pathlib import Path

from appliance import __version__
from appliance.bundles.install import install_model_bundle
from appliance.session.about import about_text
from tests.ui.projects import make_project, prelabel_bundle


def test_about_names_the_version_and_the_active_models(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", n=1, size=64)
    assert about_text(project) == f"Annotation appliance {__version__}"
    install_model_bundle(project, prelabel_bundle(tmp_path / "b", name="thresholds-v2"))
    text = about_text(project)
    assert text.splitlines()[0] == f"Annotation appliance {__version__}"
    assert "prelabel: thresholds-v2 (bundle " in text
    project.close()
