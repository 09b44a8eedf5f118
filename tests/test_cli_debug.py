"""`--debug` on every CLI: the one-line error, then the chain of causes that led to it.

Errors are raised `from` what caused them (`raise ApplianceError(...) from exc`), so the chain
survives; without `--debug` a user still sees one line and no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLIS = {
    "appliance": "from appliance.cli import main",
    "export": "from export.cli import main",
    "lab": "from export.lab.cli import main",
}


def cli(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys; {CLIS[name]}; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("name", sorted(CLIS))
def test_every_cli_explains_debug(name: str) -> None:
    assert "--debug" in cli(name, "--help").stdout


@pytest.mark.parametrize("name", sorted(CLIS))
def test_debug_prints_the_chain_after_the_one_line(tmp_path: Path, name: str) -> None:
    damaged = tmp_path / "bundle.zip"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    args = {
        "appliance": ["install-model", str(tmp_path), str(damaged)],
        "export": ["train", str(damaged), "--out", str(tmp_path / "m.zip")],
        "lab": ["serve", str(damaged)],  # a file where the lab folder should be
    }[name]
    quiet = cli(name, *args)
    loud = cli(name, *args[:1], "--debug", *args[1:])  # anywhere on the line
    assert quiet.returncode == loud.returncode == 2
    assert len(quiet.stderr.strip().splitlines()) == 1 and "Traceback" not in quiet.stderr
    assert loud.stderr.splitlines()[0] == quiet.stderr.strip()
    assert "Traceback" in loud.stderr


def test_the_cause_of_a_refused_bundle_is_kept(tmp_path: Path) -> None:
    """The zip library's own complaint is the cause of the one line a user reads."""
    (tmp_path / "m.zip").write_bytes(b"PK\x03\x04 not really a zip")
    cli("appliance", "init", str(tmp_path / "p"), "--classes", "cell")
    loud = cli(
        "appliance", "--debug", "install-model", str(tmp_path / "p"), str(tmp_path / "m.zip")
    )
    assert "zipfile.BadZipFile: File is not a zip file" in loud.stderr
