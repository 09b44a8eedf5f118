"""Pre-labeling l(x) (seed 004 eq. 3) and its suitability check (eq. 4, Dice).

Three pre-labelers: Otsu (classic thresholding; good on spheroids, useless on medaka, seed 004
Fig. 7), the previous adjacent label of a sequence (Fig. 6), and the active ONNX segmentation
model. A poor pre-label slows an expert down, so `suitability` scores each one by Dice against
images the experts already labeled and `best_method` offers one only above a threshold.

Beside them, the active cell detector (role `detector`, `DETECTOR`) proposes point or box
objects; Dice cannot judge objects, so it is not among the methods `suitability` compares: its
objects join whatever mask pre-label is offered (`appliance.session.assistant`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from skimage.filters import threshold_otsu

from appliance import settings
from appliance.assist.postprocess import split_touching
from appliance.assist.runtime import InferenceModel, active_model
from appliance.errors import ApplianceError
from appliance.labels import DEFAULT_CLASS, Label
from appliance.metrics import dice  # Label Assistant eq. 4 judges pre-labelers by it
from appliance.store import Project
from appliance.store.control_offers import DETECTOR, offer_prelabel
from appliance.store.jobs import job_image_ids

__all__ = [
    "DETECTOR",
    "METHODS",
    "OTSU_SETTING",
    "best_method",
    "dice",
    "grey",
    "otsu",
    "prelabeler",
    "previous",
    "run",
    "run_all",
    "suitability",
]

METHODS = ("otsu", "previous", "model")
OTSU_SETTING = settings.OTSU.key
_LUMA = np.array([0.299, 0.587, 0.114])


def grey(image: np.ndarray, channel: int | None = None) -> np.ndarray:
    """One channel of an image: the chosen one (dtype kept), or float luma for RGB.

    Integer channels keep their dtype so Otsu histograms exact values: binned floats put the
    threshold on a grey level itself when an image has only a few levels.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        return img
    if channel is not None:
        if not 0 <= channel < img.shape[2]:
            raise ApplianceError(f"channel {channel} does not exist (image has {img.shape[2]})")
        return img[..., channel]
    return img.astype(np.float64) @ _LUMA


def otsu(
    image: np.ndarray,
    channel: int | None = None,
    polarity: str = "auto",
    class_id: int = DEFAULT_CLASS,
    split: bool = True,
) -> Label:
    """Otsu threshold on one channel; instances are its connected components, each split where
    it narrows into several round cells (distance-transform watershed, `split_touching`), since a
    threshold alone merges every pair of touching nuclei.

    `polarity` says whether objects are "bright" or "dark"; "auto" takes the smaller side of the
    threshold as foreground, because cells rarely cover most of a microscopy field. A constant
    image has no threshold and gives an empty label.
    """
    if polarity not in ("auto", "bright", "dark"):
        raise ApplianceError(f"Otsu polarity {polarity!r} must be auto, bright or dark")
    g = grey(image, channel)
    if g.size == 0 or g.min() == g.max():
        return Label.empty(g.shape)
    # scikit-image bins integers one bin per value (2**32 bins for full-range int32): only
    # narrow integer ranges go that way, anything else through 1024 float bins
    narrow = g.dtype.kind in "ui" and int(g.max()) - int(g.min()) < 1 << 16
    t = threshold_otsu(g) if narrow else threshold_otsu(g.astype(np.float64), nbins=1024)
    bright = g > t
    if polarity == "dark" or (polarity == "auto" and bright.sum() * 2 > g.size):
        bright = ~bright
    label = Label.from_binary(bright, class_id)
    return split_touching(label).label if split else label


def previous(project: Project, image_id: int) -> Label | None:
    """Newest human label of the closest earlier labeled frame of the same sequence, if any."""
    version_id = project.previous_human_version(image_id)
    return None if version_id is None else project.label_version(version_id).label


def prelabeler(
    project: Project, method: str, model: InferenceModel | None = None
) -> Callable[[int, np.ndarray], Label | None]:
    """`f(image_id, pixels) -> Label | None` for `method`, configured from project settings."""
    if method == "otsu":
        cfg = settings.OTSU.get(project)
        ch, pol = cfg.get("channel"), cfg.get("polarity", "auto")
        split = bool(cfg.get("split", True))
        return lambda _id, pixels: otsu(pixels, ch, pol, split=split)
    if method == "previous":
        return lambda image_id, _pixels: previous(project, image_id)
    if method == "model":
        model = model or active_model(project, "prelabel")
        if model is None:
            raise ApplianceError(f"{project.root}: no active pre-label model is installed")
        return lambda _id, pixels: model.predict(pixels).label
    if method == DETECTOR:
        detector = model or active_model(project, DETECTOR)
        if detector is None:
            raise ApplianceError(f"{project.root}: no active cell detector is installed")
        return lambda _id, pixels: detector.predict(pixels).label
    raise ApplianceError(
        f"unknown pre-label method {method!r} (one of {', '.join((*METHODS, DETECTOR))})"
    )


def suitability(
    project: Project,
    methods: Sequence[str] = METHODS,
    max_images: int = 20,
    model: InferenceModel | None = None,
) -> dict[str, float | None]:
    """Mean Dice of each method on the most recently labeled images (None: cannot be judged).

    Only human versions count as truth (`history`): an unreviewed pre-label would vote for itself.
    When a model is judged, the images of its training job are left out for every method (a
    model scored on its own training images looks better than it is; seed 004 Fig. 8), so all
    methods are compared on the same images.
    """
    scores: dict[str, list[float]] = {m: [] for m in methods}
    funcs: dict[str, Callable[[int, np.ndarray], Label | None]] = {}
    seen: set[int] = set()
    for m in methods:
        if m == "model":
            model = model or active_model(project, "prelabel")
            seen = job_image_ids(project, model.job_id) if model is not None else set()
        try:
            funcs[m] = prelabeler(project, m, model)
        except ApplianceError:
            continue  # no model installed: that method simply cannot be judged
    rows = project.latest_human_versions(max_images + len(seen))
    rows = [r for r in rows if r[0] not in seen][:max_images]
    for image_id, version_id in rows:
        truth = project.label_version(version_id).label.instances
        pixels = project.load_pixels(image_id)
        for m, f in funcs.items():
            guess = f(image_id, pixels)
            if guess is not None:
                scores[m].append(dice(truth, guess.instances))
    return {m: (float(np.mean(v)) if v else None) for m, v in scores.items()}


def best_method(scores: dict[str, float | None], threshold: float = 0.5) -> str | None:
    """The method with the highest Dice, or None when none reaches `threshold`."""
    judged = {m: s for m, s in scores.items() if s is not None and s >= threshold}
    return max(judged, key=judged.__getitem__) if judged else None


def run(
    project: Project,
    image_id: int,
    method: str,
    model: InferenceModel | None = None,
    save: bool = True,
) -> tuple[Label | None, int | None]:
    """Pre-label one image; store it as a `prelabel` version when `save` (returns its id)."""
    label = prelabeler(project, method, model)(image_id, project.load_pixels(image_id))
    label = offer_prelabel(project, image_id, label, method)
    if label is None or not save:
        return label, None
    version = project.save_label(image_id, label, author=f"prelabel:{method}", source="prelabel")
    return label, version


def run_all(
    project: Project,
    method: str,
    check: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[int, int]:
    """Pre-label every image without any label version; returns (stored, without a pre-label).

    Labeled images are left alone: a pre-label on top of an expert's work would only be noise
    in its history. Each image is saved on its own, so a cancelled run keeps what it stored.
    """
    todo = project.unlabeled_image_ids()
    fn = prelabeler(project, method)
    stored = 0
    for k, image_id in enumerate(todo, start=1):
        if check is not None:
            check()
        computed = fn(image_id, project.load_pixels(image_id))
        label = offer_prelabel(project, image_id, computed, method)
        if label is not None:
            project.save_label(image_id, label, author=f"prelabel:{method}", source="prelabel")
            stored += 1
        if progress is not None:
            progress(k / len(todo))
    return stored, len(todo) - stored
