"""The frozen tablet app builds, starts under Xvfb on a project, runs its model, imports no torch.

The build takes about a minute; it runs once per session. Where PyInstaller cannot be had (no
package index) the test is skipped with the reason, never passed quietly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from appliance.bundles.install import install_model_bundle
from tests.ui.projects import make_project, prelabel_bundle

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frozen_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is missing (package xvfb): the frozen app cannot show a window")
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py"), "--dist", str(dist)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        if any("No matching distribution" in line for line in tail):
            pytest.skip(f"PyInstaller or a tablet dependency cannot be installed: {tail}")
        pytest.fail(f"the tablet app did not build: {tail}")
    return dist / "appliance"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    project = make_project(tmp_path / "ws" / "Nuclei", n=3, size=256)
    install_model_bundle(project, prelabel_bundle(tmp_path / "bundles"))
    project.close()
    (tmp_path / "ws" / "Nuclei" / "tablet.json").write_text(json.dumps({"annotator": "Smoke"}))
    return tmp_path / "ws" / "Nuclei"


def _frozen_env() -> dict[str, str]:
    """No display and no path into the source tree: the build must stand on its own."""
    drop = {"PYTHONPATH", "DISPLAY", "VIRTUAL_ENV", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_frozen_app_ships_no_torch_and_no_workstation(frozen_app: Path) -> None:
    names = {p.name for p in (frozen_app / "_internal").iterdir()}
    assert (frozen_app / "appliance").is_file()
    assert not {"torch", "export", "matplotlib"} & names
    assert "kivy" in names and "onnxruntime" in names


def test_frozen_app_runs_a_project_and_its_model(
    frozen_app: Path, workspace: Path, tmp_path: Path
) -> None:
    report = tmp_path / "smoke.json"
    proc = subprocess.run(
        [str(frozen_app / "appliance"), "run", str(workspace), "--smoke-report", str(report)],
        capture_output=True,
        text=True,
        timeout=180,
        env=_frozen_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["frozen"] is True
    assert result["torch_imported"] is False
    assert result["errors"] == []
    assert result["model"] and result["prelabel_objects"] > 0
    assert set(result["libraries"].values()) == {"ok"}, result["libraries"]
    shot = cv2.imread(result["screenshot"])
    assert shot is not None and shot.shape[:2] == (1200, 1920)
    assert shot.std() > 10  # a drawn screen, not a black frame


def test_frozen_binary_is_also_the_command_line(frozen_app: Path, workspace: Path) -> None:
    binary = str(frozen_app / "appliance")
    status = subprocess.run(
        [binary, "status", str(workspace), "--json"],
        capture_output=True, text=True, timeout=60, env=_frozen_env(),
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["images"] == 3
    missing = subprocess.run(
        [binary, "status", str(workspace.parent / "nowhere")],
        capture_output=True, text=True, timeout=60, env=_frozen_env(),
    )  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
