"""The Models screen says who signed each installed model, and says UNSIGNED plainly for one
installed with --allow-unsigned (real app, Xvfb)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.bundles.archive import BundleError
from appliance.bundles.install import install_model_bundle
from appliance.security.signing import default_signing_key
from tests.ui.projects import make_project, prelabel_bundle


@pytest.mark.slow
def test_models_screen_shows_the_signer(app, tmp_path: Path) -> None:
    project = make_project(app.workspace / "signer-test", n=2)
    key = default_signing_key()  # the test run's lab key: bundles written now carry it
    assert key is not None
    install_model_bundle(project, prelabel_bundle(tmp_path / "a", "signed-unet"))
    unsigned = _strip_signature(prelabel_bundle(tmp_path / "b", "plain-unet"), tmp_path)
    with pytest.raises(BundleError, match="unsigned"):
        install_model_bundle(project, unsigned)
    install_model_bundle(project, unsigned, allow_unsigned=True)
    project.close()
    app.errors.clear()
    app.open_project(app.workspace / "signer-test")
    app.go("models")
    texts = [str(w.text) for w in app.sm.get_screen("models").walk() if hasattr(w, "text")]
    assert any(f"signed by lab key {key.public.id}" in t for t in texts)
    assert any("UNSIGNED" in t for t in texts)
    app.go("home")
    assert not app.errors


def _strip_signature(bundle: Path, tmp: Path) -> Path:
    """The same bundle without its manifest.sig (as a tool without a key would write it)."""
    import zipfile

    out = tmp / f"unsigned-{bundle.name}"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != "manifest.sig":
                dst.writestr(info, src.read(info))
    return out
