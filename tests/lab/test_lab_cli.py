"""`appliance-lab`: enroll prints a working one-time code, devices lists, revoke refuses the
token at once; bad input is one line and exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.security.home import HOME_ENV
from appliance.security.lock import Locked
from appliance.store import Project
from appliance.sync.client import enroll, sync_project
from appliance.sync.http import Revoked
from export.lab.app import LabConfig
from export.lab.cli import main
from export.lab.serve import LabServer


def test_enroll_devices_revoke(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "tablet-home"))  # the revoke locks this tablet
    root = tmp_path / "lab"
    assert main(["enroll", str(root), "--project", "kidney", "--name", "tablet-anna"]) == 0
    code = re.search(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", capsys.readouterr().out).group(0)
    with LabServer(LabConfig(root, page_key="k")) as lab:
        project = Project.create(tmp_path / "t", ["n"])
        enroll(project, lab.url, code.lower())  # codes are read aloud: case does not matter
        sync_project(project)
        assert main(["devices", str(root)]) == 0
        listing = capsys.readouterr().out
        assert "kidney" in listing and "tablet-anna" in listing and "last sync 20" in listing
        assert main(["revoke", str(root), "1"]) == 0
        try:
            sync_project(project)
            raise AssertionError("a revoked token still syncs")
        except Revoked as exc:
            assert "revoked" in str(exc)
        project.close()
        with pytest.raises(Locked):  # a revoked tablet opens none of its projects
            Project.open(tmp_path / "t")
    assert main(["revoke", str(root), "1"]) == 2
    assert "no active device 1" in capsys.readouterr().err
    assert main(["enroll", str(root), "--project", "../etc"]) == 2
    assert "letters, digits" in capsys.readouterr().err


def test_serve_takes_the_labs_slide_limit_and_quota(tmp_path: Path, monkeypatch, capsys) -> None:
    """`serve --max-slide-gb`: the lab sets how large a slide may be (scanners write tens of
    GB); `--project-quota-gb` what one project may store."""
    from export.lab import serve as serve_module

    started: list[LabConfig] = []

    class Started:
        url = "http://127.0.0.1:1"

        def __init__(self, config: LabConfig, *_args: object) -> None:
            started.append(config)

        def serve_forever(self) -> None:
            return None

    monkeypatch.setattr(serve_module, "LabServer", Started)
    root = str(tmp_path / "lab")
    flags = ["--insecure", "--max-slide-gb", "40", "--project-quota-gb", "500"]
    assert main(["serve", root, *flags]) == 0
    assert started[0].max_slide_bytes == 40 << 30 and started[0].max_project_bytes == 500 << 30
    assert main(["serve", root, "--insecure", "--max-slide-gb", "0"]) == 2
    assert "--max-slide-gb 0: a size in GiB above 0" in capsys.readouterr().err
