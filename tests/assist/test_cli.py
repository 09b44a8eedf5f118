"""`appliance prelabel | next | inspect | upgrade` end to end on a small project."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.cli import main
from appliance.labels import Label


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prelabel_one_and_all(seq_project, capsys) -> None:
    root = seq_project.root
    code, out, _ = run(capsys, "prelabel", root, "--image", "f0", "--method", "otsu")
    assert code == 0 and "2 objects" in out
    code, out, _ = run(capsys, "prelabel", root, "--all", "--method", "otsu")
    assert code == 0 and "stored 3 pre-labels" in out
    assert {seq_project.latest_label(r.id).source for r in seq_project.images()} == {"prelabel"}


def test_prelabel_chooses_by_dice_and_refuses_poor_ones(seq_project, capsys) -> None:
    p, root = seq_project, seq_project.root
    code, out, _ = run(capsys, "prelabel", root, "--image", "f1")
    assert code == 0 and "none labeled yet" in out  # Otsu by default
    first = p.images()[0]
    bad = np.zeros((32, 32), np.uint32)
    bad[28:32, 0:4] = 1
    p.save_label(first.id, Label(bad, {1: 1}), author="ann", source="manual")
    code, _, err = run(capsys, "prelabel", root, "--image", "f2")
    assert code == 2 and "no pre-labeler is good enough" in err


def test_prelabel_previous_without_earlier_frame_is_error(seq_project, capsys) -> None:
    code, _, err = run(
        capsys, "prelabel", seq_project.root, "--image", "f0", "--method", "previous"
    )
    assert code == 2 and err.startswith("error: f0.tif: no pre-label")


def test_next_prints_strategy_scores(seq_project, capsys) -> None:
    seq_project.set_setting("selector.weights", {"sequential": 1, "random": 1, "diversity": 1})
    code, out, _ = run(capsys, "next", seq_project.root, "--n", "3")
    lines = out.strip().splitlines()
    assert code == 0 and "4 unlabeled" in lines[0]
    assert lines[1].split("\t") == [
        "rank",
        "image",
        "name",
        "score",
        "sequential",
        "random",
        "diversity",
    ]
    assert len(lines) == 5 and all(line.split("\t")[2].endswith(".tif") for line in lines[2:])


def test_inspect_reports_warnings_with_boxes(with_models, capsys) -> None:
    p = with_models
    first = p.images()[0]
    inst = np.zeros((32, 32), np.uint32)
    inst[4:12, 4:12] = 1
    inst[7, 7] = 0  # a hole
    p.save_label(first.id, Label(inst, {1: 1}), author="ann", source="manual")
    p.set_setting("inspection", {"warning_threshold": 0.95})
    code, out, _ = run(capsys, "inspect", p.root, "f0")
    assert code == 0 and "WARNING" in out
    assert "holes" in out and "object 1 at y 4-12, x 4-12" in out
    assert "model" in out  # the installed pre-label model is the reference


def test_inspect_and_upgrade_errors(seq_project, capsys) -> None:
    code, _, err = run(capsys, "inspect", seq_project.root, "f0")
    assert code == 2 and "has no label" in err
    code, _, err = run(capsys, "upgrade", seq_project.root, "--all")
    assert code == 2 and "no active upgrade model" in err
    code, _, err = run(capsys, "upgrade", seq_project.root, "--image", "f0", "--only-coarse")
    assert code == 2 and "--only-coarse goes with --all" in err


def test_upgrade_cli(with_models, capsys) -> None:
    p = with_models
    inst = np.zeros((32, 32), np.uint32)
    inst[6:9, 6:9] = 1
    for r in p.images()[:2]:
        p.save_label(r.id, Label(inst, {1: 1}), author="pl", source="prelabel")
    code, out, _ = run(capsys, "upgrade", p.root, "--image", "f0")
    assert code == 0 and "upgraded -> version" in out
    code, out, _ = run(capsys, "upgrade", p.root, "--all", "--only-coarse")
    assert code == 0 and "upgraded 1 label versions" in out
