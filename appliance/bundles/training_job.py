"""Training-job bundles (tablet → workstation): images, chosen labels, split and provenance.

The workstation builds its datasets from these, so the bundle carries everything training needs
and nothing it must not see: images whose row is in `controls` (hidden-truth items used to score
annotators) are never exported as ordinary annotations. Instance maps travel as `.npy` files, a
documented format any tool can read with `numpy.load(allow_pickle=False)`.

A slide never travels: its regions are ordinary images whose stored original is the region's
level-0 pixels (a PNG cut from the pyramid at import), so an item of a slide region carries only
those pixels, its labels in the region's own pixel coordinates, and `region` (the slide's name
and hash, the region's level-0 origin and µm per pixel) to put predictions back on the slide.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.assist import preprocess
from appliance.bundles.archive import BundleError, BundleReader, Fields, Limits, write_bundle
from appliance.errors import ApplianceError
from appliance.imageio import read_image
from appliance.labels import Label, object_from_dict, object_to_dict
from appliance.store import ImageRecord, LabelVersion, Project
from appliance.store.check import verified_original
from appliance.store.jobs import record_job_items
from appliance.store.project import HUMAN_SOURCES
from appliance.store.slides import regions, slides

__all__ = [
    "ANNOTATORS",
    "FORMAT",
    "ITEMS",
    "SPLITS",
    "TASKS",
    "Choice",
    "JobItem",
    "TrainingJob",
    "assign_splits",
    "choose",
    "is_low_quality",
    "read_training_job",
    "write_training_job",
]

FORMAT = "training-job"
TASKS = ("segment", "upgrade", "all")
SPLITS = ("train", "val", "test")
ITEMS = "items.json"
ANNOTATORS = "annotators.json"
UNLABELED = "unlabeled.json"


def is_low_quality(version: LabelVersion) -> bool:
    """What the upgrade model learns to fix: quick coarse scribbles and machine output (pre-labels,
    upgrades) that no person reviewed. An accepted pre-label is a person's label."""
    return version.coarse or not (version.reviewed or version.source in HUMAN_SOURCES)


@dataclass(frozen=True)
class Choice:
    """The versions exported for one image."""

    image: ImageRecord
    label: LabelVersion
    coarse: LabelVersion | None
    votes: list[LabelVersion]
    history: list[LabelVersion]


def choose(
    history: list[LabelVersion], task: str, only_reviewed: bool
) -> tuple[LabelVersion | None, LabelVersion | None, list[LabelVersion]]:
    """(good label, low-quality label before it, one vote per author) from an image's history.

    The good label is the newest version that is not low quality (and reviewed, if asked); the
    low-quality one is the newest low-quality version older than it, exported for the upgrade
    task when there is one (the trainer perturbs good labels anyway, seed 003). Votes are each
    person's newest good version, kept only when two or more people labeled the image: model
    output never votes and is never the target unless a person reviewed it.
    """
    good = [v for v in history if not is_low_quality(v) and (v.reviewed or not only_reviewed)]
    if not good:
        return None, None, []
    label = good[-1]
    coarse = None
    if task != "segment":
        earlier = [v for v in history if v.id < label.id and is_low_quality(v)]
        coarse = earlier[-1] if earlier else None
    by_author = {v.author: v for v in good}
    votes = [by_author[a] for a in sorted(by_author)] if len(by_author) > 1 else []
    return label, coarse, votes


def assign_splits(
    images: list[ImageRecord], ratios: tuple[float, float, float], seed: int
) -> dict[int, str]:
    """Image id -> split, the same for the same images and seed on any machine.

    Images are ordered by content hash (not by database id, which differs between projects),
    shuffled by the seed, and cut at the rounded shares. Sequence and frame travel with each
    item, so a trainer can regroup video frames if it must keep neighbours together.
    """
    ordered = sorted(images, key=lambda r: (r.sha256, r.page or 0))
    order = np.random.default_rng(seed).permutation(len(ordered))
    n = len(ordered)
    cut_train = round(ratios[0] * n)
    cut_val = round((ratios[0] + ratios[1]) * n)
    out = {}
    for position, index in enumerate(order):
        split = "train" if position < cut_train else "val" if position < cut_val else "test"
        out[ordered[index].id] = split
    return out


def write_training_job(
    project: Project,
    out_zip: Path | str,
    *,
    task: str = "all",
    only_reviewed: bool = False,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    include_unlabeled: bool = False,
) -> tuple[str, dict[str, int]]:
    """Export the project's training data; returns the job id and the item count per split.

    With `include_unlabeled`, images without a usable label (controls excepted) travel too, in
    `unlabeled.json`: semi-supervised trainers (MIPR, seed 001) pseudo-label them. The count is
    returned under "unlabeled".
    """
    out = Path(out_zip)
    if not out.parent.is_dir():
        raise BundleError(str(out), f"cannot be written: folder {out.parent} does not exist")
    if task not in TASKS:
        raise BundleError(str(out), f"unknown task {task!r} (one of {', '.join(TASKS)})")
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise BundleError(str(out), f"split {split} must be three non-negative shares summing to 1")
    controls = project.control_image_ids()
    choices = []
    unlabeled: list[ImageRecord] = []
    for rec in project.images():
        if rec.id in controls:
            continue
        history = project.history(rec.id)
        label, coarse, votes = choose(history, task, only_reviewed)
        if label is None:
            unlabeled.append(rec)
            continue
        choices.append(Choice(rec, label, coarse, votes, history))
    if not choices:
        reviewed = "reviewed " if only_reviewed else ""
        raise BundleError(
            str(out), f"nothing to export: no image of {project.root} has a {reviewed}good label"
        )
    splits = assign_splits([c.image for c in choices], split, seed)
    classes = project.classes()
    names = [
        "background",
        *(classes.get(i, f"class {i}") for i in range(1, max(classes, default=0) + 1)),
    ]
    places = _region_places(project)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        members: dict[str, bytes | Path] = {}
        items = [
            _item(project, c, splits[c.image.id], members, Path(tmp), places.get(c.image.id))
            for c in choices
        ]
        members[ITEMS] = _json_bytes({"items": items})
        members[ANNOTATORS] = _json_bytes({"annotators": project.annotators()})
        body = {
            "task": task,
            "classes": names,
            "preprocessing": preprocess.load(project).to_dict(),
            "split": {"ratios": list(split), "seed": seed},
            "only_reviewed": only_reviewed,
            "items": ITEMS,
            "annotators": ANNOTATORS,
        }
        if include_unlabeled:
            images = [_image(project, r, members, Path(tmp), places.get(r.id)) for r in unlabeled]
            members[UNLABELED] = _json_bytes({"images": images})
            body["unlabeled"] = UNLABELED
        job_id = write_bundle(out, FORMAT, body, members)
    record_job_items(project, job_id, [(c.image.id, splits[c.image.id]) for c in choices])
    counts = {s: sum(1 for c in choices if splits[c.image.id] == s) for s in SPLITS}
    if include_unlabeled:
        counts["unlabeled"] = len(unlabeled)
    return job_id, counts


def _region_places(project: Project) -> dict[int, dict[str, Any]]:
    """Image id -> where that region lies on its slide (the item's `region` field)."""
    by_id = {s.id: s for s in slides(project)}
    return {
        r.image_id: {
            "slide": by_id[r.slide_id].name,
            "slide_sha256": by_id[r.slide_id].sha256,
            "x": r.x,
            "y": r.y,
            "mpp": by_id[r.slide_id].mpp,
        }
        for r in regions(project)
    }


def _image(
    project: Project,
    rec: ImageRecord,
    members: dict[str, bytes | Path],
    tmp: Path,
    place: dict[str, Any] | None,
) -> dict[str, Any]:
    """An image's member and the fields that decode it (a slide region's pixels, never the
    slide: `verified_original` of a region is its level-0 PNG). A training job is written in
    plain: an encrypted project's original is decrypted into the job's temporary folder."""
    image_member = f"images/{rec.sha256}{rec.path.suffix.lower()}"
    if image_member not in members:  # the name promises this content
        members[image_member] = verified_original(project, rec, tmp)
    return {
        "name": rec.name,
        "image": image_member,
        "page": rec.page,
        "height": rec.height,
        "width": rec.width,
        "channels": rec.channels,
        "dtype": rec.dtype,
        "sequence": rec.sequence,
        "frame": rec.frame,
        "region": place,
    }


def _item(
    project: Project,
    choice: Choice,
    split: str,
    members: dict[str, bytes | Path],
    tmp: Path,
    place: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        **_image(project, choice.image, members, tmp, place),
        "split": split,
        "label": _version(choice.label, members, tmp),
        "coarse": _version(choice.coarse, members, tmp) if choice.coarse else None,
        "votes": [_version(v, members, tmp) for v in choice.votes],
        "history": [
            {
                "uid": v.uid,
                "author": v.author,
                "source": v.source,
                "created": v.created,
                "seconds_spent": v.seconds_spent,
                "coarse": v.coarse,
                "reviewed": v.reviewed,
            }
            for v in choice.history
        ],
    }


def _version(version: LabelVersion, members: dict[str, bytes | Path], tmp: Path) -> dict[str, Any]:
    """Write the instance map as .npy (once per version) and describe the version."""
    member = f"labels/{version.uid}.npy"
    if member not in members:
        path = tmp / f"{version.uid}.npy"
        np.save(path, version.label.instances, allow_pickle=False)
        members[member] = path
    return {
        "instances": member,
        "classes": {str(k): v for k, v in sorted(version.label.classes.items())},
        "objects": [object_to_dict(o) for o in version.label.objects],
        "uid": version.uid,
        "author": version.author,
        "source": version.source,
        "created": version.created,
        "seconds_spent": version.seconds_spent,
        "reviewed": version.reviewed,
    }


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, ensure_ascii=False).encode("utf-8")


class TrainingJob:
    """A verified training-job bundle. Items read their members lazily, re-checking each hash.

    Picklable (for data-loader worker processes): each process reopens the archive itself,
    because a zip file handle shared across a fork would interleave seeks.
    """

    def __init__(self, path: Path, reader: BundleReader, items: list[JobItem]) -> None:
        manifest = reader.manifest
        self.path = path
        self.manifest = manifest
        self.id: str = manifest["id"]
        self.task: str = manifest["task"]
        self.classes: list[str] = manifest["classes"]
        self.preprocessing: dict[str, Any] = manifest["preprocessing"]
        self.split: dict[str, Any] = manifest["split"]
        self.annotator_scores: dict[str, dict[str, Any]] = {}
        self.items = items
        self.unlabeled: list[UnlabeledItem] = []
        self._limits = reader.limits
        self._open: tuple[int, BundleReader] | None = (os.getpid(), reader)

    def _reader(self) -> BundleReader:
        if self._open is None or self._open[0] != os.getpid():
            reader = BundleReader(self.path, FORMAT, self._limits)
            if reader.manifest["id"] != self.id:
                reader.fail(f"was replaced by another bundle (id {reader.manifest['id']})")
            self._open = (os.getpid(), reader)
        return self._open[1]

    def read_member(self, member: str) -> bytes:
        """The bytes of a member, re-checked against its recorded hash."""
        return self._reader().read_bytes(member)

    def fail(self, problem: str, member: str) -> BundleError:
        return BundleError(str(self.path), problem, member)

    def close(self) -> None:
        """Close the archive this process opened (it reopens on the next read)."""
        if self._open is not None:
            self._open[1].__exit__()
            self._open = None

    def __enter__(self) -> TrainingJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": None}


@dataclass
class JobItem:
    """One training example; `label`, `coarse` and `votes` are read from the bundle on access."""

    job: TrainingJob
    name: str
    split: str
    image_member: str
    page: int | None
    shape: tuple[int, ...]
    sequence: str | None
    frame: int | None
    author: str
    source: str
    seconds_spent: float
    vote_authors: list[str]
    label_ref: dict[str, Any]
    coarse_ref: dict[str, Any] | None
    vote_refs: list[dict[str, Any]]
    # a slide region's place: slide, slide_sha256, level-0 x and y, mpp (None: an ordinary image)
    region: dict[str, Any] | None = None

    def image(self) -> np.ndarray:
        """Pixels decoded from the original bytes, in their stored dtype."""
        return _decode(self.job, self.image_member, self.page, self.shape)

    @property
    def label(self) -> Label:
        """The chosen good label version."""
        return self._load(self.label_ref)

    @property
    def coarse(self) -> Label | None:
        """A low-quality version of the same image for the upgrade task, or None."""
        return self._load(self.coarse_ref) if self.coarse_ref else None

    @property
    def votes(self) -> list[Label]:
        """One label per annotator who labeled this image (may be empty)."""
        return [self._load(ref) for ref in self.vote_refs]

    def _load(self, ref: dict[str, Any]) -> Label:
        member = ref["instances"]
        try:
            arr = np.load(io.BytesIO(self.job.read_member(member)), allow_pickle=False)
        except ValueError as exc:
            raise self.job.fail(f"not a readable .npy instance map ({exc})", member) from exc
        if arr.shape != self.shape[:2] or arr.dtype.kind != "u" or arr.dtype.itemsize > 4:
            problem = (
                f"instance map {arr.dtype} {arr.shape} must be unsigned (up to 32 bit) "
                f"with shape {self.shape[:2]}"
            )
            raise self.job.fail(problem, member)
        try:
            objects = tuple(object_from_dict(o) for o in ref.get("objects", []))
            return Label(arr, {int(k): v for k, v in ref["classes"].items()}, objects)
        except ApplianceError as exc:
            raise self.job.fail(f"objects of this label: {exc}", member) from exc


@dataclass
class UnlabeledItem:
    """An image exported without a label (`--include-unlabeled`), for semi-supervised trainers."""

    job: TrainingJob
    name: str
    image_member: str
    page: int | None
    shape: tuple[int, ...]
    region: dict[str, Any] | None = None  # a slide region's place, as `JobItem.region`

    def image(self) -> np.ndarray:
        """Pixels decoded from the original bytes, in their stored dtype."""
        return _decode(self.job, self.image_member, self.page, self.shape)


def _decode(job: TrainingJob, member: str, page: int | None, shape: tuple[int, ...]) -> np.ndarray:
    data = job.read_member(member)
    try:
        img = read_image(data, page=page, name=member)
    except ApplianceError as exc:
        raise job.fail(f"image cannot be decoded ({exc})", member) from exc
    if img.shape != shape:
        raise job.fail(f"image has shape {img.shape}, its item says {shape}", member)
    return img


def read_training_job(path: Path | str, *, limits: Limits | None = None) -> TrainingJob:
    """Verify the whole bundle (every member's size and hash, the schema) and open it."""
    reader = BundleReader(path, FORMAT, limits)
    try:
        top = reader.fields(reader.manifest, where="manifest")
        if top.get("task", str) not in TASKS:
            top.fail(f"manifest.task must be one of {', '.join(TASKS)}")
        classes = top.get("classes", list)
        if not classes or not all(isinstance(c, str) for c in classes):
            top.fail("manifest.classes must be a non-empty list of names (index 0 is background)")
        top.get("preprocessing", dict)
        top.get("split", dict)
        items_member = top.get("items", str)
        annotators_member = top.get("annotators", str)
        reader.verify_all()
        job = TrainingJob(Path(path), reader, [])
        raw_items = reader.read_json(items_member).get("items", list)
        job.items = [
            _parse_item(reader.fields(raw, items_member, f"items[{i}]"), job, reader, len(classes))
            for i, raw in enumerate(raw_items)
        ]
        unlabeled_member = top.get("unlabeled", str, optional=True)
        if unlabeled_member is not None:
            images = reader.read_json(unlabeled_member).get("images", list)
            job.unlabeled = [
                _parse_unlabeled(reader.fields(raw, unlabeled_member, f"images[{i}]"), job, reader)
                for i, raw in enumerate(images)
            ]
        for i, raw in enumerate(reader.read_json(annotators_member).get("annotators", list)):
            row = reader.fields(raw, annotators_member, f"annotators[{i}]")
            name = row.get("name", str)
            job.annotator_scores[name] = {k: v for k, v in row.obj.items() if k != "name"}
    except BaseException:
        reader.__exit__()
        raise
    return job


def _parse_item(f: Fields, job: TrainingJob, reader: BundleReader, n_classes: int) -> JobItem:
    split = f.get("split", str)
    if split not in SPLITS:
        f.fail(f"{f.where}.split {split!r} is not one of {', '.join(SPLITS)}")
    height, width = f.get("height", int), f.get("width", int)
    channels = f.get("channels", int)
    label = _parse_version(f.nested("label"), reader, n_classes)
    coarse_raw = f.get("coarse", (dict, type(None)))
    coarse = None if coarse_raw is None else _parse_version(f.nested("coarse"), reader, n_classes)
    votes = [
        _parse_version(Fields(v, f.bundle, f.member, f"{f.where}.votes[{i}]"), reader, n_classes)
        for i, v in enumerate(f.get("votes", list))
    ]
    return JobItem(
        job=job,
        name=f.get("name", str),
        split=split,
        image_member=_listed(f, "image", reader),
        page=f.get("page", (int, type(None))),
        shape=(height, width) if channels == 1 else (height, width, channels),
        sequence=f.get("sequence", (str, type(None))),
        frame=f.get("frame", (int, type(None))),
        author=label["author"],
        source=label["source"],
        seconds_spent=label["seconds_spent"],
        vote_authors=[v["author"] for v in votes],
        label_ref=label,
        coarse_ref=coarse,
        vote_refs=votes,
        region=_parse_region(f),
    )


def _parse_region(f: Fields) -> dict[str, Any] | None:
    """The item's optional slide place, typed (jobs written before slides have none)."""
    raw = f.get("region", (dict, type(None)), optional=True)
    if raw is None:
        return None
    place = Fields(raw, f.bundle, f.member, f"{f.where}.region")
    place.get("slide", str)
    place.get("slide_sha256", str)
    for key in ("x", "y"):
        if place.get(key, int) < 0:
            place.fail(f"{place.where}.{key} must be a level-0 pixel (>= 0)")
    place.get("mpp", (float, type(None)))
    return dict(raw)


def _parse_unlabeled(f: Fields, job: TrainingJob, reader: BundleReader) -> UnlabeledItem:
    height, width, channels = f.get("height", int), f.get("width", int), f.get("channels", int)
    return UnlabeledItem(
        job=job,
        name=f.get("name", str),
        image_member=_listed(f, "image", reader),
        page=f.get("page", (int, type(None))),
        shape=(height, width) if channels == 1 else (height, width, channels),
        region=_parse_region(f),
    )


def _parse_version(f: Fields, reader: BundleReader, n_classes: int) -> dict[str, Any]:
    _listed(f, "instances", reader)
    f.get("author", str)
    f.get("source", str)
    f.get("seconds_spent", float)
    for key, class_id in f.get("classes", dict).items():
        if not key.isdigit() or int(key) == 0:
            f.fail(f"{f.where}.classes key {key!r} is not a positive instance id")
        if isinstance(class_id, bool) or not isinstance(class_id, int):
            f.fail(f"{f.where}.classes[{key!r}] must be an integer class id")
        if not 1 <= class_id < n_classes:
            f.fail(f"{f.where}.classes[{key!r}] = {class_id} is not a class of this job")
    for k, raw in enumerate(f.get("objects", list, optional=True) or []):
        try:
            obj = object_from_dict(raw)
        except ApplianceError as exc:
            f.fail(f"{f.where}.objects[{k}]: {exc}")
        if not obj.class_id < n_classes:
            f.fail(f"{f.where}.objects[{k}] class {obj.class_id} is not a class of this job")
    return f.obj


def _listed(f: Fields, key: str, reader: BundleReader) -> str:
    member = f.get(key, str)
    if member not in reader.members:
        f.fail(f"{f.where}.{key} {member!r} is not a listed member")
    return member
