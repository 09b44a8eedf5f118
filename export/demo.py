"""`make demo`: the whole loop of the product on one machine, in a few minutes on a CPU.

Virtual-microscope images → a project → a handful labeled "by an expert" (from ground truth) →
a training-job bundle → pre-label and upgrade models trained, exported to ONNX and bundled →
installed on the project → the tablet app opened on it. Without a display the app runs under
Xvfb through a scripted tour that writes screenshots.

Every step goes through the same CLIs a user runs, so the demo exercises what users use.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from appliance.cli import main as appliance_main
from appliance.errors import ApplianceError
from appliance.imageio import read_image
from appliance.labels import Label
from appliance.security.home import HOME_ENV
from appliance.security.signing import SIGNING_KEY_ENV
from appliance.store import Project

MARKER = ".appliance-demo"
AFTER_JOB = 4  # images labeled after the job was exported: the pre-labelers are judged on them


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="end-to-end demo: synth → project → train → install → app",
        description="Build a demo project from virtual-microscope images, label a handful from "
        "their ground truth, export a training-job bundle, train small pre-label and upgrade "
        "models, install them and open the app (a scripted screenshot tour under Xvfb when "
        "there is no display).",
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="demo folder (recreated)")
    p.add_argument("--n", type=int, default=32, help="number of synthetic images")
    p.add_argument("--labeled", type=int, default=16, help="images labeled from ground truth")
    p.add_argument("--minutes", type=float, default=1.5, help="training budget per model (minutes)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--app",
        choices=("auto", "window", "tour", "none"),
        default="auto",
        help="open the app in a window (needs a display), run the screenshot tour, or "
        "neither; auto picks window when DISPLAY is set, else tour",
    )
    p.set_defaults(func=cmd_demo)


def _step(title: str, fn: Callable[[], object]) -> object:
    print(f"\n== {title}", flush=True)
    t = time.perf_counter()
    result = fn()
    print(f"   done in {time.perf_counter() - t:.1f} s", flush=True)
    return result


def _cli(run: Callable[[Sequence[str]], int], *args: object) -> None:
    argv = [str(a) for a in args]
    rc = run(argv)
    if rc not in (0, None):
        raise ApplianceError(f"demo step failed: {' '.join(argv)} (exit {rc})")


def _prepare(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists():
            raise ApplianceError(f"{out}: exists and is not a demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by `python -m export demo`; safe to delete\n")


def _lab_key(out: Path, export_main: Callable[[Sequence[str]], int]) -> None:
    """Sign as a lab without a server does: a lab key whose public half the tablet pins, so the
    demo's model bundles install through the same signature check as a real lab's. The
    tablet's home (pinned keys, credentials) is the demo's own unless APPLIANCE_HOME is set: a
    demo key, whose private half lies in the demo folder, is never trusted beyond the demo."""
    os.environ.setdefault(HOME_ENV, str(out / "tablet-home"))
    key = out / "lab" / "lab.key"
    key.parent.mkdir()
    _cli(export_main, "keygen", key)
    _cli(appliance_main, "trust-key", key.with_suffix(".pub"))
    os.environ[SIGNING_KEY_ENV] = str(key)  # bundles the workstation writes are signed by it


def _label_from_truth(project_dir: Path, masks: Path, n: int, seed: int, start: int = 0) -> int:
    """Save ground-truth masks as manual versions of images start..start+n, as an expert would."""
    rng = np.random.default_rng(seed + start)
    with Project.open(project_dir) as project:
        images = sorted(project.images(), key=lambda r: (r.sequence or "", r.frame or 0))
        for rec in images[start : start + n]:
            truth = read_image(masks / rec.name)
            label = Label(truth.astype(np.uint32), {})
            project.save_label(
                rec.id,
                label,
                author="demo-expert",
                source="manual",
                seconds_spent=float(rng.uniform(25, 90)),
                reviewed=True,
            )
    return len(images[start : start + n])


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance.cli import require_range
    from export.cli import main as export_main

    require_range("--n", args.n, 4, 10_000)
    require_range("--labeled", args.labeled, 1, args.n)
    require_range("--minutes", args.minutes, 0.1)
    require_range("--seed", args.seed, 0, 2**32 - 1)
    out: Path = args.out.resolve()
    project, synth, models = out / "project", out / "synth", out / "models"
    started = time.perf_counter()
    _step(f"preparing {out}", lambda: _prepare(out))
    _step("lab signing key, pinned on the tablet", lambda: _lab_key(out, export_main))
    _step(
        f"virtual microscope: {args.n} images 256×256",
        lambda: _cli(
            export_main, "synth", synth, "--n", args.n, "--size", 256, "--seed", args.seed
        ),
    )
    _step("new project", lambda: _cli(appliance_main, "init", project, "--classes", "nucleus"))
    _step("import images", lambda: _cli(appliance_main, "import", project, synth / "images"))
    n = _step(
        f"label {args.labeled} images from ground truth (as an expert would)",
        lambda: _label_from_truth(project, synth / "masks", args.labeled, args.seed),
    )
    print(f"   {n} images labeled")
    job = out / "job.zip"
    _step(
        "export a training-job bundle",
        lambda: _cli(appliance_main, "export-job", project, job, "--task", "all", "--seed", 0),
    )
    models.mkdir()
    for task, name in (("segment", "prelabel"), ("upgrade", "upgrade")):
        _step(
            f"train the {name} model (budget {args.minutes} min)",
            partial(
                _cli,
                export_main,
                "train",
                job,
                "--task",
                task,
                "--out",
                models / f"{name}.zip",
                "--max-minutes",
                args.minutes,
                "--seed",
                args.seed,
                "--run-dir",
                out / "runs" / name,
            ),
        )
        _step(
            f"install the {name} model bundle",
            partial(_cli, appliance_main, "install-model", project, models / f"{name}.zip"),
        )
    # The expert labels on while the models train. Those labels are outside the training job,
    # which is what judges the models honestly (Label Assistant eq. 4) before one is offered.
    more = max(0, min(AFTER_JOB, args.n - args.labeled - 1))
    _step(
        f"label {more} more images while the models train",
        lambda: _label_from_truth(project, synth / "masks", more, args.seed, start=args.labeled),
    )
    _step("project status", lambda: _cli(appliance_main, "status", project))
    mode = args.app
    if mode == "auto":
        mode = "window" if os.environ.get("DISPLAY") else "tour"
    if mode == "window":
        _step("opening the app", lambda: _cli(appliance_main, "run", project))
    elif mode == "tour":
        shots = out / "screenshots"
        _step(
            "scripted tour of the app under Xvfb",
            lambda: _cli(appliance_main, "run", project, "--screenshot-tour", shots),
        )
        print(f"   screenshots in {shots}")
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; project: {project}")
    return 0
