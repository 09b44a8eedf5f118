"""Control items: adding them, offering their pre-label, and scoring every save of one.

Three kinds share one table and one queue (seed 000 and seed 002):
- gold: an image whose trusted label the lab provides;
- synthetic: cells of known shape and class blended into a real background (control bundles);
- planted: either of the above whose pre-label carries recorded, planted errors.

The truth stays in `controls` and never becomes a label version, so COCO export, training jobs
and the pre-label and inspection judges (`Project.latest_human_versions`) skip control images.
A planted control's pre-label is offered where a real pre-label would be
(`store.control_offers.offer_prelabel`), after the real pre-labeler has run on it, so it costs the
same time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from appliance import settings
from appliance.durable import file_sha256
from appliance.errors import ApplianceError
from appliance.imageio import probe, read_image
from appliance.importer import collect
from appliance.label_io import read_mask
from appliance.labels import CellObject, Label
from appliance.slides import MAX_REGION_SIDE
from appliance.store import controls as store
from appliance.store.control_offers import adapt_classes
from appliance.store.images import NewImage
from appliance.store.project import HUMAN_SOURCES, Project
from appliance.store.slides import SlideRecord, find_slide, regions
from appliance.supervision import config
from appliance.supervision import planted as planted_mod
from appliance.supervision import summary as summary_mod
from appliance.supervision.planted_objects import is_object_error, plant_label
from appliance.supervision.scoring import ControlScore, score

__all__ = [
    "MACHINE_AUTHORS",
    "add_controls",
    "add_gold",
    "add_region_controls",
    "check_region_place",
    "note_offer",
    "planted_unshown",
    "score_save",
    "unservable",
]

MACHINE_AUTHORS = "prelabel:%"  # authors of stored machine pre-labels (assist.prelabel)


def _pairs(images: Path, labels: Path) -> list[tuple[Path, Path]]:
    """(image file, mask file) matched by file stem; every image needs its mask."""
    image_files = [f for fs in collect([images]).values() for f in fs]
    if not image_files:
        raise ApplianceError(f"{images}: no image files")
    masks = {f.stem: f for fs in collect([labels]).values() for f in fs}
    out = []
    for f in image_files:
        mask = masks.get(f.stem)
        if mask is None:
            raise ApplianceError(f"{f}: no mask with the stem {f.stem!r} in {labels}")
        out.append((f, mask))
    return out


def add_gold(
    project: Project,
    images: Path,
    labels: Path,
    *,
    level: str | None = None,
    plan: dict[str, int] | None = None,
    seed: int = 0,
) -> list[int]:
    """Import gold images with their trusted masks as controls; returns the control ids.

    Every mask is read and checked against its image before anything is stored, so a bad
    file changes nothing. With `level`, each control's pre-label gets planted errors.
    """
    pairs = _pairs(Path(images), Path(labels))
    truths = []
    for image_file, mask_file in pairs:
        shape = read_image(image_file).shape[:2]
        truth = read_mask(mask_file)
        if truth.shape != shape:
            raise ApplianceError(f"{mask_file}: mask is {truth.shape}, its image {shape}")
        truths.append(truth)
    return add_controls(
        project,
        [(p[0], t, "gold") for p, t in zip(pairs, truths, strict=True)],
        level=level,
        plan=plan,
        seed=seed,
    )


def _checked_image(path: Path) -> NewImage:
    """The one frame of a control file; a stack or multi-page file is refused before anything
    is stored (each page would become an ordinary image)."""
    found = probe(path, str(path))
    if len(found.frames) != 1:
        raise ApplianceError(
            f"{path}: has {len(found.frames)} frames; a control must be a single image"
        )
    pixels = read_image(path)
    channels = 1 if pixels.ndim == 2 else int(pixels.shape[2])
    return NewImage(None, path.name, pixels.shape[0], pixels.shape[1], channels, str(pixels.dtype))


def add_controls(
    project: Project,
    items: Sequence[tuple[Path, Label, str]],
    *,
    level: str | None = None,
    plan: dict[str, int] | None = None,
    seed: int = 0,
    bundle_id: str | None = None,
    places: Sequence[tuple[int, int, int] | None] | None = None,
) -> list[int]:
    """Import (image file, truth, kind) items as controls; all or nothing. `places` gives,
    item by item, (slide id, x, y) for a control that is a region of a slide (checked by
    `add_region_controls`), or None.

    Every file is checked first (one frame, decodable, truth of its size, new to the project:
    an image already in the project may have been seen, so it cannot be a hidden control);
    then images and controls are stored in one transaction, so a refused call changes nothing.
    """
    paths = [Path(p) for p, _, _ in items]
    hashes = [file_sha256(p) for p in paths]
    known = store.known_hashes(project, hashes)
    for path, sha in zip(paths, hashes, strict=True):
        if sha in known or hashes.count(sha) > 1:
            raise ApplianceError(
                f"{path}: already in the project or given twice; a control must be new"
            )
    images = [_checked_image(p) for p in paths]
    for path, image, (_p, truth, _k) in zip(paths, images, items, strict=True):
        if truth.shape != (image.height, image.width):
            raise ApplianceError(
                f"{path}: truth is {truth.shape}, the image {image.height}x{image.width}"
            )
    n_classes = max(len(project.classes()), 1)
    rng = np.random.default_rng(seed)
    new = []
    where = list(places) if places is not None else [None] * len(items)
    for path, sha, image, (_p, truth, kind), place in zip(
        paths, hashes, images, items, where, strict=True
    ):
        pre, errors, final_kind = None, "[]", kind
        if level is not None:
            planting = plant_label(truth, plan or planted_mod.DEFAULT_PLAN, level, n_classes, rng)
            pre, errors, final_kind = planting.prelabel, planting.errors_json(), "planted"
        detail = {"origin": kind, "level": level, "bundle": bundle_id, "file": path.name}
        new.append(
            store.NewControl(path, sha, image, final_kind, truth, pre, errors, detail, place)
        )
    return store.add_controls(project, new, rng, bundle_id)


def check_region_place(
    record: SlideRecord,
    x: int,
    y: int,
    pixels: np.ndarray,
    taken: list[tuple[int, int, int, int]],
) -> None:
    """Refuse, in one line, a control region that is not RGB uint8 of a region's size, leaves
    the slide or overlaps a region in `taken` (x, y, width, height); else add it to `taken`."""
    where = f"{record.name}: control region at ({x}, {y})"
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ApplianceError(f"{where}: pixels {pixels.shape} {pixels.dtype}, not RGB uint8")
    h, w = pixels.shape[:2]
    if not (0 < w <= MAX_REGION_SIDE and 0 < h <= MAX_REGION_SIDE):
        raise ApplianceError(f"{where}: {w}×{h} (sides 1..{MAX_REGION_SIDE} px)")
    if x < 0 or y < 0 or x + w > record.width or y + h > record.height:
        raise ApplianceError(f"{where}: {w}×{h} leaves the slide ({record.width}×{record.height})")
    if any(x < bx + bw and bx < x + w and y < by + bh and by < y + h
           for bx, by, bw, bh in taken):  # fmt: skip
        raise ApplianceError(f"{where}: overlaps another region of the slide")
    taken.append((x, y, w, h))


def add_region_controls(
    project: Project,
    slide_ref: str,
    items: Sequence[tuple[int, int, np.ndarray, Label, str]],
    *,
    level: str | None = None,
    plan: dict[str, int] | None = None,
    seed: int = 0,
    bundle_id: str | None = None,
) -> list[int]:
    """Controls that are regions of a slide: (x, y, level-0 RGB pixels, truth, kind) items,
    e.g. synthetic cells composed onto the slide's pixels there
    (`appliance.generators.compose`); all or nothing.

    Each becomes a region like an imported one (a lossless PNG original, named and linked as
    the importer does) and the slide viewer draws its pixels over the slide at every zoom
    level (`session.slide_view.RegionPixels`), so it is served, shown and scored like any
    region. A control region must lie on the slide and overlap no other region: where two
    regions overlap, the annotator would see the same place once with and once without the
    planted cells.
    """
    record = find_slide(project, slide_ref)
    taken = [(r.x, r.y, r.width, r.height) for r in regions(project, record.id)]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k, (x, y, pixels, truth, kind) in enumerate(items):
            check_region_place(record, x, y, pixels, taken)
            ok, png = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
            assert ok  # encoding a uint8 RGB array in memory cannot fail
            file = Path(tmp) / f"region-{k}.png"
            try:
                file.write_bytes(png.tobytes())
            except OSError as exc:
                raise ApplianceError(f"{file}: cannot write ({exc.strerror or exc})") from exc
            files.append((file, truth, kind))
        places = [(record.id, int(x), int(y)) for x, y, *_ in items]
        return add_controls(
            project, files, level=level, plan=plan, seed=seed, bundle_id=bundle_id, places=places
        )


def _is_human(source: str, reviewed: bool, author: str) -> bool:
    return (reviewed or source in HUMAN_SOURCES) and not author.startswith("prelabel:")


def note_offer(project: Project, image_id: int, annotator: str, method: str, offer: Label) -> None:
    """Record that a pre-label was shown to `annotator` (every image alike, so the event log
    sets no control apart): planted errors count from the moment they were shown, whether
    the annotator accepted the offer or rejected it and drew from scratch."""
    classes = sorted({offer.class_of(i) for i in offer.ids()} | {o.class_id for o in offer.objects})
    detail = {"method": method, "classes": classes, "marks": len(offer.objects)}
    project.record_event(image_id, "offered", annotator=annotator, detail=detail)


def planted_unshown(project: Project) -> str | None:
    """Why planted errors are never shown in this project, or None when they can be.

    A planted pre-label is offered only where an ordinary image gets an offer (anything else
    would give the control away); with the pre-labeler switched off nobody gets one.
    """
    if settings.PRELABEL.get(project) != "none" or not store.count_by_kind(project).get("planted"):
        return None
    return (
        "the pre-labeler is 'none', so no planted error is ever shown and planted controls "
        "score like gold ones; choose auto, otsu, previous or model to show them"
    )


def unservable(project: Project) -> str | None:
    """Why some controls can never be served, or None: an annotator meets at most
    rate / (1 - rate) controls per ordinary image (the rate holds at every point and controls
    never come after the ordinary images); the rest stay unlabeled in their gallery, where an
    annotator who remembers what they skipped could spot them."""
    cfg = config.load(project)
    controls = len(project.control_image_ids())
    ordinary = len(project.images()) - controls
    most = int(cfg.rate * ordinary / (1.0 - cfg.rate) + 1e-9)  # rate <= MAX_RATE < 1
    if controls <= most:
        return None
    return (
        f"{controls} controls but at rate {cfg.rate} an annotator meets at most {most} among "
        f"{ordinary} ordinary images; raise the rate or add fewer controls"
    )


def _shown_classes(
    project: Project, image_id: int, author: str, parent_id: int | None
) -> set[int] | None:
    """Classes of the planted pre-label as `author` saw it, or None when they never saw it:
    an offer shown on screen (`note_offer`), else a stored machine pre-label they started
    from, else an offer they accepted (saved with source `prelabel`)."""
    shown = store.offered_classes(project, image_id, author)
    if shown is not None:
        return shown
    mine = store.versions_by(project, image_id, author)
    first_parent = parent_id if not mine else project.label_version(mine[0][0]).parent_id
    if first_parent is not None:
        parent = project.label_version(first_parent)
        if parent.author.startswith("prelabel:"):
            return {parent.label.class_of(i) for i in parent.label.ids()}
    for version_id, source, _reviewed in mine:
        if source == "prelabel":
            accepted = project.label_version(version_id).label
            return {accepted.class_of(i) for i in accepted.ids()}
    return None


def _visible(
    errors: tuple[planted_mod.PlantedError, ...], prelabel: Label, truth: Label, shown: set[int]
) -> tuple[planted_mod.PlantedError, ...]:
    """The planted errors the offer showed: a class flip the pre-labeler's classes could not
    show (its planted class mapped back to the true one) was never there to catch."""
    seen = adapt_classes(prelabel, shown)

    def showed(e: planted_mod.PlantedError) -> bool:
        if e.kind != "class_flip":
            return True
        if is_object_error(e):
            planted_class = seen.objects[e.prelabel_ids[0]].class_id
            return planted_class != truth.objects[e.truth_ids[0]].class_id
        return seen.class_of(e.prelabel_ids[0]) != truth.class_of(e.truth_ids[0])

    return tuple(e for e in errors if showed(e))


def score_save(project: Project, version_id: int) -> ControlScore | None:
    """Score a saved version if it is a person's save of a control; update their summary.

    Returns None for ordinary images, machine versions and versions already scored. Planted
    errors count once the annotator was shown the planted pre-label, accepted or not.
    """
    version = project.label_version(version_id)
    if not _is_human(version.source, version.reviewed, version.author):
        return None
    control = store.control_for_image(project, version.image_id)
    if control is None or store.is_scored(project, version_id):
        return None
    errors: tuple[planted_mod.PlantedError, ...] = ()
    prelabel = None
    marks: tuple[CellObject, ...] = ()
    if control.kind == "planted" and control.prelabel is not None:
        shown = _shown_classes(project, version.image_id, version.author, version.parent_id)
        if shown is not None:
            planted = planted_mod.errors_from_json(control.errors_json)
            errors = _visible(planted, control.prelabel, control.truth, shown)
            if not store.offered_marks(project, version.image_id, version.author):
                # planted marks are offered only where the detector offers marks
                errors = tuple(e for e in errors if not is_object_error(e))
            prelabel, marks = control.prelabel.instances, control.prelabel.objects
    seconds = sum(
        project.label_version(v).seconds_spent
        for v, _, _ in store.versions_by(project, version.image_id, version.author)
        if v <= version_id
    )
    result = score(control.truth, version.label, errors, prelabel, seconds, marks)
    row = store.ScoreRow(
        control_id=control.id,
        label_id=version_id,
        annotator=version.author,
        seconds=result.seconds,
        n_truth=result.n_truth,
        n_label=result.n_label,
        matched=result.matched,
        class_correct=result.class_correct,
        dice=result.dice,
        instance_f1=result.instance_f1,
        boundary_f1=result.boundary_f1,
        planted=result.planted,
    )
    rows = [r for r in store.score_rows(project, version.author) if r.control_id != control.id]
    rows.append(row)
    summary = summary_mod.summarise(rows)
    store.record_score(project, row, summary, len(rows))
    return result
