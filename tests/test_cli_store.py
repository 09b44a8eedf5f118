import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from bench._machine import PEAK_RSS

APP = [sys.executable, "-m", "appliance"]


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*APP, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_flow_and_bad_folder(tmp_path: Path, bad_folder: Path) -> None:
    proj = tmp_path / "p"
    assert run("init", proj, "--classes", "nucleus,debris").returncode == 0
    res = run("import", proj, bad_folder)
    assert res.returncode == 1
    assert "imported 3, duplicates 0, failed 4" in res.stdout
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("failed:")]) == 4
    assert "Traceback" not in res.stderr
    res = run("import", proj, bad_folder)
    assert "imported 0, duplicates 3" in res.stdout
    status = json.loads(run("status", proj, "--json").stdout)
    assert status["images"] == 3 and status["sequences"] == 1 and status["classes"] == 2


def test_import_peak_memory_stays_small(tmp_path: Path, bad_folder: Path) -> None:
    """The 100000×100000 PNG header must be refused before any pixel buffer is allocated."""
    proj = tmp_path / "p"
    run("init", proj, "--classes", "a")
    res = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "import", str(proj), str(bad_folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    peak_mb = int(res.stderr.split("peak_kb")[-1]) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB"


def test_user_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    cases = [
        ("status", tmp_path / "nothing"),
        ("log", tmp_path / "nothing", "x"),
        ("import", tmp_path / "nothing", tmp_path),
        ("init", tmp_path / "q", "--classes", ","),
    ]
    for args in cases:
        res = run(*args)
        assert res.returncode == 2, args
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error:")
    run("init", tmp_path / "p", "--classes", "a")
    res = run("import", tmp_path / "p", tmp_path / "missing-folder")
    assert res.returncode == 2 and "no such file or folder" in res.stderr


def test_log_and_export_coco(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    tifffile.imwrite(tmp_path / "img" / "c1.tif", np.zeros((16, 16), np.uint16))
    mask = np.zeros((16, 16), np.uint16)
    mask[2:6, 2:6] = 4
    mask[8:12, 8:14] = 9
    tifffile.imwrite(tmp_path / "lab" / "c1.tif", mask)
    run("init", proj, "--classes", "a,b")
    assert run("import", proj, tmp_path / "img", "--labels", tmp_path / "lab").returncode == 0
    log = run("log", proj, "c1")
    assert log.returncode == 0 and "import" in log.stdout and "2 instances" in log.stdout
    res = run("export-coco", proj, tmp_path / "out.json")
    assert res.returncode == 0
    doc = json.loads((tmp_path / "out.json").read_text())
    assert sorted(a["instance_id"] for a in doc["annotations"]) == [4, 9]
