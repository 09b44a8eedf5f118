"""The must-show simulation (issues 13 and 22): scripted annotators of known skill work through
a project with hidden controls by the app's own annotate presenter, on one tablet and, after a
sync, on a second one. Nothing about a control differs from an ordinary image in what they can
see or reach: queue position, gallery, counts, names, sequence and frame, offers (method,
classes, precision), leaving and coming back. Their scores rank them, and control truth never
reaches a training job or a COCO export on either tablet.

- careful: takes the offered pre-label as a start and corrects it to the truth, now and then
  one pixel off; leaves the first two controls it meets via Previous and meets them again;
- lazy: accepts every offered pre-label unchanged (Otsu, or the planted one on a control);
- sloppy: corrects the same way, but with a systematic boundary bias (two pixels too wide).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance import settings
from appliance.assist import prelabel
from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.cli import main
from appliance.imageio import write_tiff
from appliance.label_io import export_coco
from appliance.labels import Label
from appliance.metrics import dice
from appliance.session.presenter import AnnotatePresenter
from appliance.store import Project
from appliance.store.controls import annotator_summaries, control_for_image, score_rows
from appliance.sync.client import enroll, sync_project
from export.lab.serve import LabServer
from export.synth import synth_sample
from tests.lab.conftest import make_config
from tests.supervision.harness import QueuedJobs, Seen, open_presenter, save_and_go_on, seen

N_SEQ, PER_SEQ, N_GOLD, N_PLANTED, SIZE = 2, 24, 8, 8, 80
CLASSES = ["nucleus", "other"]


def careful(truth: Label, rng: np.random.Generator) -> Label:
    out = truth.instances.copy()
    for cid in truth.ids():
        if rng.random() < 0.2:  # now and then a cell one pixel short on one side
            cell = out == cid
            out[cell & ~np.roll(cell, 1, axis=int(rng.integers(0, 2)))] = 0
    return Label(out, dict(truth.classes))


def sloppy(truth: Label, _rng: np.random.Generator) -> Label:
    grown = cv2.dilate(truth.instances.astype(np.float32), np.ones((5, 5), np.uint8))
    out = np.where(truth.instances == 0, grown, truth.instances).astype(np.uint32)
    return Label(out, dict(truth.classes))


def _write(folder: Path, masks: Path | None, names: list[str], seed: int) -> dict[str, Label]:
    folder.mkdir(parents=True)
    if masks is not None:
        masks.mkdir(parents=True)
    truths = {}
    for k, name in enumerate(names):
        s = synth_sample(np.random.default_rng([seed, k]), SIZE)
        write_tiff(folder / name, s.image)
        if masks is not None:
            write_tiff(masks / name, s.cells.astype(np.uint16))
        rng = np.random.default_rng([seed, k, 1])
        truths[name] = Label(
            s.cells, {int(i): int(rng.integers(1, 3)) for i in np.unique(s.cells) if i}
        )
    return truths


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    with LabServer(make_config(tmp_path / "lab", None)) as server:
        yield server


def _tablet(root: Path, lab: LabServer, name: str) -> Project:
    project = Project.create(root, CLASSES)
    code, _ = lab.store.create_enrollment("P1", "tablet", name)
    enroll(project, lab.url, code, name)
    return project


def _setup(tmp_path: Path, lab: LabServer) -> tuple[Project, dict[str, Label]]:
    a = _tablet(tmp_path / "a", lab, "tab-a")
    truths: dict[str, Label] = {}
    for s in range(N_SEQ):
        names = [f"img_{k:04d}.tif" for k in range(PER_SEQ)]
        truths |= {f"{s}/{n}": t for n, t in _write(tmp_path / f"seq{s}", None, names, s).items()}
    a.close()
    root = str(tmp_path / "a")
    assert main(["import", root, *(str(tmp_path / f"seq{s}") for s in range(N_SEQ))]) == 0
    gold = [f"gold_{k:02d}.tif" for k in range(N_GOLD)]
    _write(tmp_path / "gold", tmp_path / "gold_masks", gold, 10)
    planted = [f"plant_{k:02d}.tif" for k in range(N_PLANTED)]
    _write(tmp_path / "plant", tmp_path / "plant_masks", planted, 20)
    assert main(["controls", "add", root, "--gold", str(tmp_path / "gold"),
                 "--labels", str(tmp_path / "gold_masks")]) == 0  # fmt: skip
    assert main(["controls", "add", root, "--gold", str(tmp_path / "plant"),
                 "--labels", str(tmp_path / "plant_masks"), "--plant", "medium",
                 "--errors", "deleted=1,false=1,class_flip=1,shifted=1,merged=1"]) == 0  # fmt: skip
    assert main(["controls", "config", root, "--rate", "0.5", "--k", "3"]) == 0
    project = Project.open(root)
    project.set_setting(prelabel.OTSU_SETTING, {"channel": None, "polarity": "bright"})
    settings.PRELABEL.set(project, "otsu")
    project.set_setting("inspection", {"gamma0": 0.0})
    return project, truths


def _truth(project: Project, truths: dict[str, Label], image_id: int) -> Label:
    control = control_for_image(project, image_id)
    if control is not None:
        return control.truth
    rec = project.image(image_id)
    seq = next(s for s in range(N_SEQ) if str(rec.sequence).endswith(f"seq{s}"))
    return truths[f"{seq}/{rec.name}"]


def _work(
    presenter: AnnotatePresenter,
    jobs: QueuedJobs,
    person: str,
    truths: dict[str, Label],
    seed: int,
    limit: int | None = None,
) -> list[tuple[Seen, bool]]:
    """One annotator through the presenter until nothing is left; (what they saw, control)."""
    project, rng = presenter.project, np.random.default_rng(seed)
    served: list[tuple[Seen, bool]] = []
    saved: set[int] = set()
    left: set[int] = set()
    while not presenter.all_done and (limit is None or len(served) < limit):
        work = presenter.work
        assert work is not None
        if work.image_id in saved:  # back on an image saved before (after Previous)
            save_and_go_on(presenter, jobs)
            continue
        is_control = control_for_image(project, work.image_id) is not None
        served.append((seen(presenter), is_control))
        if person == "careful" and is_control and len(left) < 2 and work.image_id not in left:
            left.add(work.image_id)
            presenter.previous()  # leave the control unsaved, go back one image
            jobs.settle()
            continue
        truth = _truth(project, truths, work.image_id)
        if person == "lazy":
            if presenter.offer is None:
                presenter.skip()
                jobs.settle()
                continue
            presenter.accept_offer(edit=False)
            jobs.settle()
            while presenter.review is not None:
                presenter.review_done()
                jobs.settle()
        else:
            if presenter.offer is not None:
                presenter.accept_offer(edit=True)  # the offer as a start, then draw
            label = careful(truth, rng) if person.endswith("careful") else sloppy(truth, rng)
            work.session.replace(label)
            save_and_go_on(presenter, jobs)
        saved.add(work.image_id)
    if person == "careful":
        comeback = [s for s, _ in served if s.image_id in left]
        assert len(comeback) == 2 * len(left)  # each left control came back once
        assert not any(s.prefilled for s in comeback)  # empty again, as when first served
    return served


def _check_hidden(served: list[tuple[Seen, bool]], project: Project) -> None:
    """Everything the annotator could see of a control looks like an ordinary image."""
    kinds = [c for _, c in served]
    assert not any(a and b for a, b in pairwise(kinds))  # never two in a row
    for n in range(1, len(kinds) + 1):
        assert sum(kinds[:n]) <= 0.5 * n  # never more than the rate at any point
    assert not kinds[-1]  # never a control after the ordinary images ran out
    ordinary_seqs = {s.sequence for s, c in served if not c}
    controls = project.control_image_ids()
    names = {r.name for r in project.images() if r.id not in controls}
    assert not names & {project.image(i).name for i in controls}  # no shared name
    classes: dict[bool, set[int]] = {True: set(), False: set()}
    for s, control in served:
        assert re.fullmatch(r"img_\d{4}\.tif", s.name), s.name  # the ordinary naming
        assert s.sequence in ordinary_seqs and s.frame is not None
        assert s.gallery_state is not None  # the open image has its tile ("(open now)")
        assert s.gallery_size == s.total  # the gallery and the status line count alike
        assert 1 <= s.position <= s.total
        assert s.gallery_state in ("unlabeled", "pre-labeled") or s.prefilled
        # k votes from several tablets are independent answers, not a conflict to show,
        # on ordinary images and controls alike
        assert not s.conflict
        if s.offer is not None:
            assert s.offer_method == "otsu"
            classes[control] |= s.offer_classes
    assert classes[True] <= classes[False] == {1}  # no class Otsu never produces


def _offer_precision(
    served: list[tuple[Seen, bool]], project: Project, truths: dict[str, Label]
) -> dict[bool, float]:
    out: dict[bool, list[float]] = {True: [], False: []}
    for s, control in served:
        if s.offer is not None:
            truth = _truth(project, truths, s.image_id)
            out[control].append(dice(truth.instances, s.offer.instances))
    return {k: float(np.mean(v)) for k, v in out.items()}


def _no_control_leaves(project: Project, tmp_path: Path, tag: str) -> None:
    controls = project.control_image_ids()
    hidden = {project.image(i).name for i in controls}
    assert hidden  # there were controls to hide
    job = tmp_path / f"job-{tag}.zip"
    write_training_job(project, job, include_unlabeled=True)
    with read_training_job(job) as read:
        assert read.items and not {i.name for i in read.items} & hidden
    coco = tmp_path / f"coco-{tag}.json"
    export_coco(project, coco)
    doc = json.loads(coco.read_text())
    assert doc["images"] and not {int(i["id"]) for i in doc["images"]} & controls
    assert not {i["file_name"] for i in doc["images"]} & hidden


def test_annotators_are_ranked_by_controls_they_cannot_tell_apart(
    tmp_path: Path, lab: LabServer
) -> None:
    project, truths = _setup(tmp_path, lab)
    people = {"careful": 0, "lazy": 1, "sloppy": 2}
    seen_by: dict[str, list[tuple[Seen, bool]]] = {}
    for person, seed in people.items():
        presenter, jobs = open_presenter(project, person)
        seen_by[person] = _work(presenter, jobs, person, truths, seed)
        presenter.leave()
        _check_hidden(seen_by[person], project)
    precision = _offer_precision(seen_by["lazy"], project, truths)
    assert precision[True] <= precision[False] + 0.02, precision  # planted no more exact

    # scores: each control once per annotator, ranked by skill, planted errors counted
    rows = score_rows(project)
    assert len(rows) == len({(r.annotator, r.control_id) for r in rows})
    summaries = {n: s for n, (_, s) in annotator_summaries(project).items()}
    q = {n: summaries[n]["quality"] for n in people}
    assert q["careful"]["low"] > q["sloppy"]["high"], q
    assert q["sloppy"]["low"] > q["lazy"]["high"], q
    planted = {n: summaries[n]["planted_recall"] for n in people}
    assert planted["lazy"]["value"] <= 0.05 and planted["careful"]["value"] >= 0.9, planted
    assert planted["careful"]["low"] > planted["lazy"]["high"]
    _no_control_leaves(project, tmp_path, "a")
    assert main(["scores", str(project.root), "--report", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "reports" / "scores-lazy.png").stat().st_size > 1000

    # a second tablet of the project: the same controls, just as hidden, scored there too
    sync_project(project)
    b = _tablet(tmp_path / "b", lab, "tab-b")
    sync_project(b)
    assert {b.image(i).sha256 for i in b.control_image_ids()} == {
        project.image(i).sha256 for i in project.control_image_ids()
    }
    for key in (prelabel.OTSU_SETTING, "inspection"):
        b.set_setting(key, project.get_setting(key))
    settings.PRELABEL.set(b, "otsu")
    # a fourth opinion per image (k = 4), so B's annotator has ordinary images to label
    b.set_setting("supervision", {**project.get_setting("supervision"), "k": 4})
    presenter, jobs = open_presenter(b, "b-careful")
    on_b = _work(presenter, jobs, "b-careful", truths, 7)
    presenter.leave()
    _check_hidden(on_b, b)
    assert any(c for _, c in on_b)  # controls were served on B, hidden the same way
    assert annotator_summaries(b)["b-careful"][1]["quality"]["value"] > 0.9
    _no_control_leaves(b, tmp_path, "b")
    sync_project(b)
    sync_project(project)
    _no_control_leaves(project, tmp_path, "a2")
    b.close()
    project.close()
    print(json.dumps({n: (q[n], planted[n]) for n in people}), precision)
