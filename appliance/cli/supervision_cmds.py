"""Sub-commands for quality supervision: controls (add, install, list, config) and scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance.cli.security_cmds import add_allow_unsigned

__all__ = ["cmd_add", "cmd_config", "cmd_install", "cmd_list", "cmd_scores", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "controls",
        help="hidden control items that score annotators (add, install, list, config)",
        description="Control items are images whose truth is known, served among ordinary "
        "images at a per-project rate so each annotator's quality is measured unnoticed. "
        "Their truth never leaves the project as a label.",
    )
    csub = p.add_subparsers(
        dest="controls_command",
        required=True,
        metavar="ACTION",
        help="add (gold images), install (a control bundle), list or config",
    )

    a = csub.add_parser(
        "add",
        help="add gold images with their trusted labels as controls",
        description="Import IMAGES (file or folder) as control items whose truth is the mask "
        "with the same file stem in LABELS. With --plant, each control's pre-label gets "
        "planted errors (seed 002) at that level; the record of what was planted is kept.",
    )
    a.add_argument("dir", type=Path, help="project folder")
    a.add_argument("--gold", type=Path, required=True, metavar="IMAGES", help="image file/folder")
    a.add_argument(
        "--labels", type=Path, required=True, help="masks or instance maps matched by stem"
    )
    _plant_args(a)
    a.set_defaults(func=cmd_add)

    i = csub.add_parser(
        "install",
        help="install a control bundle made on the workstation (verified, atomic)",
        description="Verify a control bundle (python -m export controls) member by member and "
        "add its synthetic controls; a bundle that fails any check changes nothing.",
    )
    i.add_argument("dir", type=Path, help="project folder")
    i.add_argument("bundle", type=Path, metavar="CONTROLS.zip")
    add_allow_unsigned(i)
    _plant_args(i)
    i.set_defaults(func=cmd_install)

    ls = csub.add_parser(
        "list",
        help="how many controls of each kind the project holds",
        description="Count the controls of each kind. A note on stderr says when planted "
        "errors can never be shown (pre-labeler 'none') or when the rate cannot serve every "
        "control before the ordinary images run out.",
    )
    ls.add_argument("dir", type=Path, help="project folder")
    ls.set_defaults(func=cmd_list)

    c = csub.add_parser(
        "config",
        help="show or change how controls are served",
        description="Without options, print the settings. --rate is the share of served "
        "items that are controls (default 0.05, at most 0.5); --k the independent labels "
        "wanted per ordinary image; --blind makes a second annotator start from the "
        "pre-label, never another's label; --highscore and --feedback switch the high-score "
        "screen and the message after a control (both off by default).",
    )
    c.add_argument("dir", type=Path, help="project folder")
    c.add_argument("--rate", type=float, help="share of served items that are controls")
    c.add_argument("--k", type=int, help="independent labels wanted per ordinary image")
    for flag, what in (
        ("blind", "start a second annotator from the pre-label, never another's label"),
        ("highscore", "show the high-score screen"),
        ("feedback", "tell the annotator how they did right after a control"),
    ):
        c.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None, help=what)
    c.set_defaults(func=cmd_config)

    s = sub.add_parser(
        "scores",
        help="each annotator's scores on control items, with 95 %% intervals",
        description="Running scores per annotator over the controls they saved: quality "
        "(mean of Dice, instance F1 and boundary F1), each of those, instance recall and "
        "precision, class accuracy and planted-error recall per kind, each with a 95 % "
        "interval over control items (a cluster bootstrap; Wilson's widest interval when "
        "the controls do not vary, so one control never claims more than one control "
        "shows) and the number of controls behind it.",
    )
    s.add_argument("dir", type=Path, help="project folder")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument(
        "--report",
        type=Path,
        metavar="OUTDIR",
        help="also write a report PNG per annotator (scores over time, errors caught by kind)",
    )
    s.set_defaults(func=cmd_scores)


def _plant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plant",
        choices=("easy", "medium", "hard"),
        help="plant errors of this level into each control's pre-label",
    )
    p.add_argument(
        "--errors",
        default="deleted=1,false=1,class_flip=1,shifted=1,merged=1",
        help="planted errors per control as KIND=COUNT,... (kinds: deleted, false, "
        "class_flip, shifted, eroded, dilated, merged)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the planted errors")


def cmd_add(args: argparse.Namespace) -> int:
    from appliance.store import Project
    from appliance.supervision.controls import add_gold
    from appliance.supervision.planted import parse_plan

    plan = parse_plan(args.errors)
    with Project.open(args.dir) as project:
        ids = add_gold(project, args.gold, args.labels, level=args.plant, plan=plan, seed=args.seed)
    kind = f"planted ({args.plant})" if args.plant else "gold"
    print(f"added {len(ids)} {kind} controls")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from appliance.store import Project
    from appliance.supervision.install import install_control_bundle
    from appliance.supervision.planted import parse_plan

    plan = parse_plan(args.errors)
    with Project.open(args.dir) as project:
        ids = install_control_bundle(
            project,
            args.bundle,
            level=args.plant,
            plan=plan,
            seed=args.seed,
            allow_unsigned=args.allow_unsigned,
        )
    print(f"installed {len(ids)} controls from {args.bundle}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from appliance.store import Project
    from appliance.store.controls import count_by_kind
    from appliance.supervision.controls import planted_unshown, unservable

    with Project.open(args.dir) as project:
        counts = count_by_kind(project)
        notes = [n for n in (planted_unshown(project), unservable(project)) if n]
    for kind in ("gold", "synthetic", "planted"):
        print(f"{kind:<10} {counts.get(kind, 0)}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from appliance.store import Project
    from appliance.supervision import config

    with Project.open(args.dir) as project:
        cfg = config.load(project)
        changes = {
            k: getattr(args, k)
            for k in ("rate", "k", "blind", "highscore", "feedback")
            if getattr(args, k) is not None
        }
        if changes:
            cfg = replace(cfg, **changes)
            config.save(project, cfg)
    for key, value in asdict(cfg).items():
        print(f"{key:<10} {value}")
    return 0


def _interval(est: dict) -> str:
    if est.get("value") is None:
        return "–"
    return f"{est['value']:.3f} [{est['low']:.3f}, {est['high']:.3f}] n={est['n']}"


def cmd_scores(args: argparse.Namespace) -> int:
    from appliance.store import Project
    from appliance.store.controls import annotator_summaries, score_rows
    from appliance.supervision.controls import planted_unshown

    with Project.open(args.dir) as project:
        summaries = annotator_summaries(project)
        rows = {name: score_rows(project, name) for name in summaries}
        unshown = planted_unshown(project)
    if unshown:
        print(f"note: {unshown}", file=sys.stderr)
    if args.report is not None:
        from appliance.supervision.report import write_report

        args.report.mkdir(parents=True, exist_ok=True)
        for name, (_, summary) in summaries.items():
            path = write_report(args.report, name, rows[name], summary)
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({n: s for n, (_, s) in summaries.items()}, indent=2))
        return 0
    if not summaries:
        print("no annotator has saved a control yet")
        return 0
    keys = (
        *("quality", "dice", "instance_f1", "boundary_f1"),
        *("instance_recall", "instance_precision", "class_accuracy", "planted_recall"),
    )
    for name, (n, summary) in summaries.items():
        print(f"{name}: {n} controls, {summary.get('seconds_per_control')} s per control")
        for key in keys:
            print(f"  {key:<20} {_interval(summary[key])}")
        for kind, est in summary.get("planted_recall_by_kind", {}).items():
            print(f"  caught {kind:<13} {_interval(est)}")
    return 0
