"""Assistance sub-commands: prelabel, next, flag, inspect, upgrade.

Heavy modules (onnxruntime, scikit-image) are imported inside the handlers so that
`appliance --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.store import Project

__all__ = ["cmd_flag", "cmd_inspect", "cmd_next", "cmd_prelabel", "cmd_upgrade", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add prelabel, next, flag, inspect and upgrade to the `appliance` parser."""
    p = sub.add_parser(
        "prelabel",
        help="store pre-labels (source 'prelabel') for one image or all unlabeled ones",
        description="Pre-label with Otsu, the previous labeled frame of the sequence, the "
        "active segmentation model, or the active cell detector (points or boxes). --all "
        "covers images without any label version. Without "
        "--method, the method with the best Dice on already labeled images is used (Otsu "
        "when nothing is labeled yet).",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument(
        "--method", choices=("otsu", "previous", "model", "detector"), help="pre-labeler"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--image", help="image id, file name or sha256 prefix")
    target.add_argument("--all", action="store_true", help="every image without a label")
    p.set_defaults(func=cmd_prelabel)

    p = sub.add_parser(
        "next",
        help="the selector's next images with each strategy's score",
        description="Rank unlabeled images by the weighted mean of the selector strategies "
        "(project setting selector.weights). Missing feature vectors are computed first.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--n", type=int, default=10, help="how many images (default 10)")
    p.set_defaults(func=cmd_next)

    p = sub.add_parser(
        "flag",
        help="flag images for cherry-picking (or --unflag them)",
        description="Flag images the selector should serve first while the cherry_pick weight "
        "is up (seed 004's cherry-picking). Images are named by id, file name or sha256 "
        "prefix; an unknown one is an error and nothing changes.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image id, file name or sha256")
    p.add_argument("--unflag", action="store_true", help="remove the flag instead")
    p.set_defaults(func=cmd_flag)

    p = sub.add_parser(
        "inspect",
        help="quality score (seed 004 eq. 5) and warnings for an image's newest label",
        description="Score the newest label version with the inspection metrics (segments, "
        "holes, fragments, area, model agreement when a pre-label model is installed).",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("image", help="image id, file name or sha256 prefix")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "upgrade",
        help="refine coarse labels with the active upgrade model",
        description="Run the upgrade model on an image and its newest label version and store "
        "the result as a new version (source 'upgrade'). --all covers every labeled image whose "
        "newest version is not already an upgrade.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--image", help="image id, file name or sha256 prefix")
    target.add_argument("--all", action="store_true", help="every labeled image")
    p.add_argument(
        "--only-coarse",
        action="store_true",
        help="with --all: only versions from pre-labeling or marked coarse",
    )
    p.set_defaults(func=cmd_upgrade)


def _progress(prefix: str) -> Callable[[float], None]:
    """A one-line progress display on a terminal's stderr (stdout stays clean for the result)."""

    def show(fraction: float) -> None:
        if not sys.stderr.isatty():
            return
        print(f"\r{prefix} {fraction:6.1%}", end="", file=sys.stderr, flush=True)
        if fraction >= 1.0:
            print(file=sys.stderr)

    return show


def cmd_prelabel(args: argparse.Namespace) -> int:
    """`appliance prelabel`: pre-label one image or every unlabeled one."""
    from appliance.assist import prelabel

    with Project.open(args.dir) as project:
        method = args.method
        if method is None:
            scores = prelabel.suitability(project)
            judged = ", ".join(f"{m} {s:.2f}" for m, s in scores.items() if s is not None)
            method = prelabel.best_method(scores) if judged else "otsu"
            if method is None:
                raise ApplianceError(
                    f"{args.dir}: no pre-labeler is good enough (Dice {judged}); "
                    "pass --method to use one anyway"
                )
            print(f"method: {method} (Dice on labeled images: {judged or 'none labeled yet'})")
        if args.image is not None:
            rec = project.find_image(args.image)
            label, version = prelabel.run(project, rec.id, method)
            if label is None:
                raise ApplianceError(f"{rec.name}: no pre-label from '{method}' (no earlier frame)")
            print(f"{rec.name}: {label.count()} objects -> version {version}")
            return 0
        stored, skipped = prelabel.run_all(project, method, progress=_progress("pre-labeling"))
        print(f"stored {stored} pre-labels ({method}); {skipped} without one")
    return 0


def cmd_flag(args: argparse.Namespace) -> int:
    """`appliance flag`: set or clear the cherry-pick flag of images."""
    from appliance.assist.selector_cache import flag

    with Project.open(args.dir) as project:
        ids = flag(project, args.images, on=not args.unflag)
        names = project.image_names()
    verb = "unflagged" if args.unflag else "flagged"
    print(f"{verb} {len(ids)}: {', '.join(names[i] for i in ids)}")
    return 0


def cmd_next(args: argparse.Namespace) -> int:
    """`appliance next`: the images the selector would show next, with each strategy's score."""
    from appliance.assist import features, runtime, selector, uncertainty
    from appliance.cli import require_range

    require_range("--n", args.n, 1)
    with Project.open(args.dir) as project:
        if features.missing(project):
            features.update(project, progress=_progress("features"))
        model = runtime.active_model(project, "prelabel")
        if model is not None and selector.weight(project, "uncertainty") > 0:
            uncertainty.update(project, model, progress=_progress("uncertainty"))
        sel = selector.from_project(project)
        choices = sel.next(args.n)
        if not choices:
            print("every image is labeled")
            return 0
        names = project.image_names()
        strategies = list(sel.weights)
        weights = " ".join(f"{s}={w:g}" for s, w in sel.weights.items())
        print(f"{sel.unlabeled} unlabeled; weights: {weights}")
        print("\t".join(["rank", "image", "name", "score", *strategies]))
        for rank, c in enumerate(choices, start=1):
            cols = [f"{c.scores[s]:.3f}" for s in strategies]
            print(
                "\t".join([str(rank), str(c.image_id), names[c.image_id], f"{c.score:.3f}", *cols])
            )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """`appliance inspect`: the quality score and warnings of an image's newest label."""
    from appliance.assist import inspection
    from appliance.assist.runtime import active_model

    with Project.open(args.dir) as project:
        rec = project.find_image(args.image)
        version = project.latest_label(rec.id)
        if version is None:
            raise ApplianceError(f"{rec.name}: has no label to inspect")
        settings = inspection.load_settings(project)
        model = active_model(project, "prelabel")
        prediction = None if model is None else model.predict(project.load_pixels(rec.id)).label
        report = inspection.inspect(version.label, settings, prediction)
        verdict = "ok" if report.passed else "WARNING"
        print(
            f"{rec.name} version {version.id}: score {report.score:.3f} "
            f"(warns below {settings.warning_threshold:g}) {verdict}"
        )
        for metric, score in report.scores.items():
            print(f"  {metric:<10} {score:.3f}")
        for w in report.warnings:
            print(f"  ! {w.metric}: {w.message}")
            for o in w.objects:
                y0, x0, y1, x1 = o.bbox
                who = "model object" if o.id == 0 else f"object {o.id}"
                print(f"      {who} at y {y0}-{y1}, x {x0}-{x1}")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    """`appliance upgrade`: refine coarse labels with the active upgrade model."""
    from appliance.assist import upgrade

    if args.only_coarse and not args.all:
        raise ApplianceError("--only-coarse goes with --all")
    with Project.open(args.dir) as project:
        if args.image is not None:
            rec = project.find_image(args.image)
            version = upgrade.upgrade_image(project, rec.id)
            print(f"{rec.name}: upgraded -> version {version}")
            return 0
        done = upgrade.upgrade_all(
            project, only_coarse=args.only_coarse, progress=_progress("upgrading")
        )
        print(f"upgraded {len(done)} label versions")
    return 0
