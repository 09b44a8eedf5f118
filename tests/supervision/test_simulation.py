"""The must-show simulation (issue 13): three scripted annotators work through a project with
hidden controls, by the real save path (`ImageWork`) and the CLI; their scores rank them.

- careful: takes the offered pre-label as a start and corrects it to the truth, now and then
  one pixel off;
- lazy: accepts every offered pre-label unchanged (Otsu, or the planted one on a control);
- sloppy: corrects the same way, but with a systematic boundary bias (two pixels too wide).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.assist import prelabel
from appliance.cli import main
from appliance.imageio import write_tiff
from appliance.labels import Label
from appliance.session.workflow import ImageWork
from appliance.store import Project
from appliance.store.controls import control_for_image
from appliance.supervision.serving import Queue
from export.synth import synth_sample

N_ORDINARY, N_GOLD, N_PLANTED, SIZE = 90, 20, 20, 80
Annotator = Callable[[Label, Label | None, np.random.Generator], Label | None]


def careful(truth: Label, _offered: Label | None, rng: np.random.Generator) -> Label:
    out = truth.instances.copy()
    for cid in truth.ids():
        if rng.random() < 0.2:  # now and then a cell one pixel short on one side
            cell = out == cid
            out[cell & ~np.roll(cell, 1, axis=int(rng.integers(0, 2)))] = 0
    return Label(out, dict(truth.classes))


def lazy(_truth: Label, offered: Label | None, _rng: np.random.Generator) -> Label | None:
    return offered


def sloppy(truth: Label, _offered: Label | None, _rng: np.random.Generator) -> Label:
    grown = cv2.dilate(truth.instances.astype(np.float32), np.ones((5, 5), np.uint8))
    out = np.where(truth.instances == 0, grown, truth.instances).astype(np.uint32)
    return Label(out, dict(truth.classes))


def _write(folder: Path, masks: Path | None, names: range, seed: int) -> dict[str, Label]:
    folder.mkdir()
    if masks is not None:
        masks.mkdir()
    truths = {}
    for k in names:
        s = synth_sample(np.random.default_rng([seed, k]), SIZE)
        name = f"img_{k:04d}.tif"
        write_tiff(folder / name, s.image)
        if masks is not None:
            write_tiff(masks / name, s.cells.astype(np.uint16))
        rng = np.random.default_rng(k)
        truths[name] = Label(
            s.cells, {int(i): int(rng.integers(1, 3)) for i in np.unique(s.cells) if i}
        )
    return truths


@pytest.mark.slow
def test_three_annotators_are_ranked_by_hidden_controls(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    assert main(["init", str(root), "--classes", "nucleus,other"]) == 0
    truths = _write(tmp_path / "images", None, range(N_ORDINARY), 0)
    assert main(["import", str(root), str(tmp_path / "images")]) == 0
    _write(tmp_path / "gold", tmp_path / "gold_masks", range(100, 100 + N_GOLD), 1)
    _write(tmp_path / "plant", tmp_path / "plant_masks", range(200, 200 + N_PLANTED), 2)
    assert main(["controls", "add", str(root), "--gold", str(tmp_path / "gold"),
                 "--labels", str(tmp_path / "gold_masks")]) == 0  # fmt: skip
    assert main(["controls", "add", str(root), "--gold", str(tmp_path / "plant"),
                 "--labels", str(tmp_path / "plant_masks"), "--plant", "medium",
                 "--errors", "deleted=1,false=1,class_flip=1,shifted=1,merged=1"]) == 0  # fmt: skip
    assert main(["controls", "config", str(root), "--rate", "0.5", "--k", "3"]) == 0
    prelabel_settings = {"channel": None, "polarity": "bright"}

    people: dict[str, Annotator] = {"careful": careful, "lazy": lazy, "sloppy": sloppy}
    served: dict[str, list[tuple[int, bool]]] = {}
    with Project.open(root) as project:
        project.set_setting(prelabel.OTSU_SETTING, prelabel_settings)
        for seed, (name, person) in enumerate(people.items()):
            queue = Queue(project, name, seed=seed)
            rng = np.random.default_rng(seed)
            served[name] = []
            controls_seen = 0
            while controls_seen < N_GOLD + N_PLANTED:
                image_id = queue.next()
                assert image_id is not None, f"{name} ran out of images"
                control = control_for_image(project, image_id)
                controls_seen += control is not None
                served[name].append((image_id, control is not None))
                work = ImageWork(project, image_id, name)
                assert work.parent_id is None  # blind: nobody else's label, not even on k > 1
                offered, _ = prelabel.run(project, image_id, "otsu", save=False)
                truth = control.truth if control else truths[work.record.name]
                label = person(truth, offered, rng)
                if label is None:  # nothing offered: the lazy one skips the image
                    work.leave("skipped")
                elif person is lazy:
                    work.save("prelabel", label=label, reviewed=True)
                else:  # take the offer as a start ("accept and edit"), then draw
                    if offered is not None:
                        work.save("prelabel", label=offered)
                    work.save("manual", label=label)
                queue.done(image_id)

    for items in served.values():
        kinds = [is_control for _, is_control in items]
        assert not any(a and b for a, b in pairwise(kinds))  # never two in a row
        for n in range(1, len(kinds) + 1):  # never more than the rate at any point
            assert sum(kinds[:n]) <= 0.5 * n
        assert len({i for i, _ in items}) == len(items)  # nothing served twice

    assert main(["scores", str(root), "--json", "--report", str(tmp_path / "reports")]) == 0
    with Project.open(root) as project:
        from appliance.store.controls import annotator_summaries

        summaries = {n: s for n, (_, s) in annotator_summaries(project).items()}
    assert set(summaries) == set(people)
    q = {n: summaries[n]["quality"] for n in people}
    for n in people:
        assert q[n]["n"] <= N_GOLD + N_PLANTED
    assert q["careful"]["low"] > q["sloppy"]["high"]
    assert q["sloppy"]["low"] > q["lazy"]["high"]
    assert summaries["lazy"]["planted_recall"]["value"] <= 0.05
    assert summaries["careful"]["planted_recall"]["value"] >= 0.9
    assert (
        summaries["careful"]["planted_recall"]["low"] > summaries["lazy"]["planted_recall"]["high"]
    )
    assert (tmp_path / "reports" / "scores-lazy.png").stat().st_size > 1000
    print(json.dumps({n: (q[n], summaries[n]["planted_recall"]) for n in people}))
