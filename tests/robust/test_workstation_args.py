"""The workstation refuses nonsense options in one line before any work starts (#6, #9)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from export.cli import main
from tests.robust.conftest import assert_one_line_refusal, cli, unchanged

TRAIN = ["train", "job.zip", "--out", "m.zip"]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["synth", "out", "--seed", "-1"], "--seed"),
        (["synth", "out", "--size", "200000"], "--size"),
        (["synth", "out", "--n", "0"], "--n"),
        ([*TRAIN, "--max-minutes", "0"], "--max-minutes"),
        ([*TRAIN, "--max-minutes", "-3"], "--max-minutes"),
        ([*TRAIN, "--batch", "0"], "--batch"),
        ([*TRAIN, "--width", "0"], "--width"),
        ([*TRAIN, "--depth", "0"], "--depth"),
        ([*TRAIN, "--epochs", "0"], "--epochs"),
        ([*TRAIN, "--patience", "0"], "--patience"),
        (["demo", "--n", "0"], "--n"),
        (["demo", "--labeled", "0"], "--labeled"),
        (["demo", "--minutes", "-1"], "--minutes"),
        (["demo", "--seed", "-1"], "--seed"),
    ],
)
def test_out_of_range_options_refused(
    tmp_path: Path, monkeypatch, args: list[str], option: str
) -> None:
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(args)
    assert rc == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option} must be"), lines
    assert not any(tmp_path.iterdir())  # nothing written, no run folder


def test_export_job_seed_refused(labeled: Path, tmp_path: Path) -> None:
    with unchanged(labeled):
        res = cli("export-job", labeled, tmp_path / "job.zip", "--seed", "-1")
    assert_one_line_refusal(res, "--seed must be")
    assert not (tmp_path / "job.zip").exists()
