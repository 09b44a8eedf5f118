"""`make demo` as a newcomer runs it: a fresh user home, no pinned key, no signing key set.

The demo signs as a lab without a server (its own lab key, pinned in the demo's own tablet
home), so its model bundles install through the signature check every bundle meets; after the
signed-bundle rule arrived, the demo stopped at its first install until it did.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.store import Project
from appliance.store.models import list_models

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_installs_its_signed_models_on_a_fresh_machine(tmp_path: Path) -> None:
    drop = {"APPLIANCE_HOME", "APPLIANCE_SIGNING_KEY", "DISPLAY"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "export", "demo", "--out", str(out), "--n", "6",
           "--labeled", "3", "--minutes", "0.1", "--app", "none"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    with Project.open(out / "project") as project:
        models = list_models(project)
    assert {m.role for m in models} >= {"prelabel", "upgrade"}
    assert all(m.signer for m in models)  # signed by the demo's lab key, none unsigned
    assert (out / "tablet-home").is_dir() and not (
        tmp_path / "home" / ".config" / "appliance"
    ).exists()
