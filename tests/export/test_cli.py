"""`python -m export`: user errors are one line and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")  # export trains with torch; the appliance never needs it

from export.cli import main


def test_missing_job_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "m.zip")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "nope.zip" in err and len(err.strip().splitlines()) == 1


def test_bad_perturbation_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(tmp_path / "j.zip"), "--out", str(tmp_path / "m.zip")]
    assert main([*args, "--task", "upgrade", "--perturb", "omission=2"]) == 2
    assert "omission rate must be in [0, 1]" in capsys.readouterr().err
