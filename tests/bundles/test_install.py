"""Model bundles: install, list, activate, roll back; atomic under injected crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.bundles import install as install_mod
from appliance.bundles.install import activate_model, install_model_bundle
from appliance.bundles.model_bundle import ModelSpec, read_model_bundle, write_model_bundle
from appliance.cli import main
from appliance.durable import file_sha256
from appliance.errors import ApplianceError
from appliance.store import Project
from appliance.store.models import active_model, list_models

from .conftest import snapshot
from .onnx_models import contract, conv_model


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project.create(tmp_path / "proj", ["nucleus"])
    yield p
    p.close()


def test_install_list_activate_and_roll_back(project: Project, model_bundle) -> None:
    first = install_model_bundle(project, model_bundle("b1.zip", seed=1))
    model = active_model(project, "prelabel")
    assert model is not None and [model.id] == first
    assert model.path == project.root / "models" / f"{model.sha256}.onnx"
    assert model.path.is_file() and model.contract == contract()
    assert model.metrics == {"dice": 0.51} and model.job_id == "job-1"

    second = install_model_bundle(project, model_bundle("b2.zip", seed=2))
    assert active_model(project, "prelabel").id == second[0]
    assert [(m.id, m.active) for m in list_models(project)] == [
        (first[0], False),
        (second[0], True),
    ]
    activate_model(project, first[0][:8])  # a unique prefix is enough
    assert active_model(project, "prelabel").id == first[0]
    assert active_model(project, "upgrade") is None


def test_installing_the_same_bundle_twice_only_reactivates(project: Project, model_bundle) -> None:
    b1, b2 = model_bundle("b1.zip", seed=1), model_bundle("b2.zip", seed=2)
    install_model_bundle(project, b1)
    install_model_bundle(project, b2)
    again = install_model_bundle(project, b1)
    assert len(list_models(project)) == 2
    assert active_model(project, "prelabel").id == again[0]


def test_activate_refuses_a_changed_model_file(project: Project, model_bundle) -> None:
    [model_id] = install_model_bundle(project, model_bundle())
    active_model(project, "prelabel").path.write_bytes(b"tampered")
    with pytest.raises(ApplianceError, match="missing or changed"):
        activate_model(project, model_id)
    with pytest.raises(ApplianceError, match="no installed model"):
        activate_model(project, "nope")


def test_bundle_with_two_roles_and_extra_files(tmp_path: Path, project: Project) -> None:
    seg = conv_model(tmp_path / "seg.onnx", channels=1, classes=3)
    up = conv_model(tmp_path / "up.onnx", channels=2, classes=2)
    (tmp_path / "curves.txt").write_text("loss 0.1")
    out = tmp_path / "two.zip"
    bundle_id = write_model_bundle(
        out,
        [
            ModelSpec("prelabel", "seg", seg, contract(classes=3)),
            ModelSpec("upgrade", "up", up, contract(channels=1, mask=True)),
        ],
        job_id="j",
        extra_files={"curves.txt": tmp_path / "curves.txt"},
    )
    bundle = read_model_bundle(out)
    assert bundle.id == bundle_id and bundle.extra == ["extra/curves.txt"]
    with pytest.raises(ApplianceError, match="predicts debris"):
        install_model_bundle(project, out)  # this project has no class "debris"
    with pytest.raises(ApplianceError, match="one class twice"):
        install_model_bundle(project, out, {"debris": "nucleus"})
    with Project.create(tmp_path / "both", ["nucleus", "debris"]) as both:
        install_model_bundle(both, out)
        assert active_model(both, "upgrade").contract.mask_channel is True
        assert active_model(both, "prelabel").name == "seg"


def test_writer_refuses_a_model_that_breaks_its_contract(tmp_path: Path) -> None:
    onnx_path = conv_model(tmp_path / "m.onnx", channels=3)
    with pytest.raises(ApplianceError, match="input_channels: graph input has 3 channels, the"):
        write_model_bundle(tmp_path / "x.zip", [ModelSpec("prelabel", "m", onnx_path, contract())])
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.parametrize("where", ["staged", "after_first_move", "in_transaction"])
def test_crash_at_any_step_leaves_the_old_state(
    project: Project, model_bundle, monkeypatch, where: str
) -> None:
    first = install_model_bundle(project, model_bundle("b1.zip", seed=1))
    bundle = model_bundle("b2.zip", seed=2)
    before = snapshot(project.root)

    def crash(*_args: object) -> None:
        raise RuntimeError(f"simulated crash: {where}")

    if where == "staged":
        monkeypatch.setattr(install_mod, "_check_ids", crash)
    elif where == "after_first_move":
        real = install_mod.replace_durably

        def move_then_crash(*args: Path) -> None:
            real(*args)
            crash()

        monkeypatch.setattr(install_mod, "replace_durably", move_then_crash)
    else:
        monkeypatch.setattr(install_mod.stored, "set_active", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        install_model_bundle(project, bundle)
    assert active_model(project, "prelabel").id == first[0]
    assert len(list_models(project)) == 1
    monkeypatch.undo()
    assert snapshot(project.root) == before
    second = install_model_bundle(project, bundle)
    assert active_model(project, "prelabel").id == second[0]


def test_cli_install_models_activate(tmp_path: Path, model_bundle, capsys) -> None:
    root = str(tmp_path / "cli")
    assert main(["init", root, "--classes", "nucleus"]) == 0
    capsys.readouterr()
    assert main(["install-model", root, str(model_bundle("b1.zip", seed=1))]) == 0
    first_id = capsys.readouterr().out.split()[1]
    assert main(["install-model", root, str(model_bundle("b2.zip", seed=2))]) == 0
    assert main(["activate", root, first_id]) == 0
    capsys.readouterr()
    assert main(["models", root]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].startswith(f"* {first_id}")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    assert main(["install-model", root, str(tmp_path / "bad.zip")]) == 2
    assert "not a readable zip archive" in capsys.readouterr().err


def test_install_sweeps_staging_left_by_a_crash(project: Project, model_bundle) -> None:
    stale = project.root / "models" / ".staging-crashed"
    stale.mkdir(parents=True)
    (stale / "half.onnx").write_bytes(b"partial")
    fresh = project.root / "models" / ".staging-running"
    fresh.mkdir()
    old = time.time() - install_mod.STALE_STAGING_SECONDS - 60
    os.utime(stale, (old, old))
    install_model_bundle(project, model_bundle())
    assert not stale.exists() and fresh.exists()


CHILD = """
import sys
from appliance.bundles import install
from appliance.store import Project
from appliance.store import models as stored

root, bundle, step = sys.argv[1:4]


def pause(name):
    if name == step:
        print(name, flush=True)
        sys.stdin.readline()  # the parent kills this process here


def after(owner, attr, name):
    real = getattr(owner, attr)

    def hooked(*args, **kwargs):
        out = real(*args, **kwargs)
        pause(name)
        return out

    setattr(owner, attr, hooked)


after(install, "_check_ids", "verified")  # bundle verified and extracted into staging
after(install, "replace_durably", "moved")  # model file renamed into models/
after(stored, "add_model", "recorded")  # row written, transaction still open
after(install, "_record", "committed")  # transaction committed
install.install_model_bundle(Project.open(root), bundle)
print("finished", flush=True)
"""


@pytest.mark.parametrize(
    ("step", "committed"),
    [("verified", False), ("moved", False), ("recorded", False), ("committed", True)],
)
def test_sigkill_during_install_leaves_old_or_new_state(
    tmp_path: Path, model_bundle, step: str, committed: bool
) -> None:
    """SIGKILL at each step of an install: before the commit the old state, after it the new."""
    root = tmp_path / "proj"
    with Project.create(root, ["nucleus"]) as project:
        [first] = install_model_bundle(project, model_bundle("b1.zip", seed=1))
    bundle = model_bundle("b2.zip", seed=2)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(bundle), step],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == step
    child.send_signal(signal.SIGKILL)
    child.wait()
    with Project.open(root) as project:
        models = list_models(project)
        assert len(models) == (2 if committed else 1)
        for model in models:
            assert model.path.is_file() and file_sha256(model.path) == model.sha256
        active = active_model(project, "prelabel")
        assert active.id == (models[1].id if committed else first)
        again = install_model_bundle(project, bundle)
        assert active_model(project, "prelabel").id == again[0]
