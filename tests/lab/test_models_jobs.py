"""Models and jobs through the lab server: the workstation pushes a model bundle, tablets
install it (verified) on their next sync; a tablet sends a training-job bundle and the
workstation pulls it. Real CLIs, real server."""

from __future__ import annotations

from pathlib import Path

from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.cli import main as appliance_main
from appliance.store import Project, oplog
from appliance.store.models import active_model
from appliance.sync.client import sync_project
from export.cli import main as export_main
from tests.bundles.onnx_models import contract, conv_model
from tests.lab.conftest import add_work, tablet


def test_model_push_reaches_tablets_and_jobs_reach_the_workstation(
    tmp_path: Path, lab, capsys
) -> None:
    t = tablet(tmp_path / "t", lab, "P", "tab")
    add_work(t, tmp_path / "imgs", 4, 4, seed=1)
    bundle = tmp_path / "model.zip"
    spec = ModelSpec("prelabel", "tiny", conv_model(tmp_path / "m.onnx", seed=0), contract())
    write_model_bundle(bundle, [spec], job_id="job-1")
    creds = tmp_path / "ws.json"
    code, _ = lab.store.create_enrollment("P", "workstation", "ws")
    assert (
        export_main(
            [
                "models",
                "push",
                str(bundle),
                "--server",
                lab.url,
                "--code",
                code,
                "--credentials",
                str(creds),
            ]
        )
        == 0
    )
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    assert export_main(["models", "push", str(bundle), "--credentials", str(creds)]) == 0
    assert len(lab.store.models(1)) == 1  # pushed twice, listed once

    report = sync_project(t)
    assert report.models_installed == 1
    assert active_model(t, "prelabel") is not None
    assert sync_project(t).models_installed == 0  # installed once
    # the activation is itself an operation the lab sees
    assert any(op.kind == "model.activated" for op in lab.store.pull_ops(1, 0, 1000))

    job = tmp_path / "job.zip"
    job_id, _ = write_training_job(t, job)
    t.close()
    assert appliance_main(["sync", str(tmp_path / "t"), "--job", str(job)]) == 0
    out = tmp_path / "jobs"
    assert export_main(["jobs", "pull", str(out), "--credentials", str(creds)]) == 0
    pulled = list(out.glob("*.zip"))
    assert len(pulled) == 1 and read_training_job(pulled[0]).id == job_id
    assert export_main(["jobs", "pull", str(out), "--credentials", str(creds)]) == 0
    assert "0 new training-job bundles" in capsys.readouterr().out


def test_a_tablet_code_cannot_enroll_a_workstation(tmp_path: Path, lab, capsys) -> None:
    code, _ = lab.store.create_enrollment("P", "tablet", "t")
    assert (
        export_main(
            [
                "jobs",
                "pull",
                str(tmp_path / "o"),
                "--server",
                lab.url,
                "--code",
                code,
                "--credentials",
                str(tmp_path / "c.json"),
            ]
        )
        == 2
    )
    assert "not a workstation" in capsys.readouterr().err


def test_cli_sync_enrolls_once_and_reports(tmp_path: Path, lab, capsys) -> None:
    p = Project.create(tmp_path / "t", ["n"])
    add_work(p, tmp_path / "imgs", 2, 2, seed=3)
    p.close()
    code, _ = lab.store.create_enrollment("P", "tablet", "t")
    assert appliance_main(["sync", str(tmp_path / "t"), "--server", lab.url, "--code", code]) == 0
    assert "pushed 4 operations and 2 blobs" in capsys.readouterr().out
    assert appliance_main(["sync", str(tmp_path / "t"), "--server", lab.url, "--code", code]) == 2
    assert "used or expired" in capsys.readouterr().err
    other, _ = lab.store.create_enrollment("Q", "tablet", "t")
    assert appliance_main(["sync", str(tmp_path / "t"), "--server", lab.url, "--code", other]) == 2
    assert "syncs with lab project P; the code is for Q" in capsys.readouterr().err
    assert appliance_main(["sync", str(tmp_path / "t"), "--status"]) == 0
    assert "0 operations pending" in capsys.readouterr().out
    with Project.open(tmp_path / "t") as p:
        assert oplog.get_state(p.db, "last_error") is None


def test_a_bundle_this_tablet_refuses_is_reported_once(tmp_path: Path, lab, monkeypatch) -> None:
    from appliance.bundles import install
    from appliance.bundles.archive import BundleError

    t = tablet(tmp_path / "t", lab, "P", "tab")
    bundle = tmp_path / "model.zip"
    spec = ModelSpec("prelabel", "tiny", conv_model(tmp_path / "m.onnx", seed=1), contract())
    write_model_bundle(bundle, [spec])
    code, _ = lab.store.create_enrollment("P", "workstation", "ws")
    creds = ["--credentials", str(tmp_path / "ws.json")]
    assert (
        export_main(["models", "push", str(bundle), "--server", lab.url, "--code", code, *creds])
        == 0
    )
    calls = []

    def refuse(project, path):
        calls.append(path)
        raise BundleError(str(path), "made for a newer appliance")

    monkeypatch.setattr(install, "install_model_bundle", refuse)
    report = sync_project(t)
    assert report.models_installed == 0 and "newer appliance" in report.line()
    assert sync_project(t).models_refused == [] and len(calls) == 1
    t.close()
