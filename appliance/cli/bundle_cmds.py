"""Sub-commands for bundles: export-job, install-model, models, activate (docs/bundles.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.cli.security_cmds import add_allow_unsigned
from appliance.errors import ApplianceError

__all__ = ["activate", "export_job", "install_model", "models", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "export-job",
        help="write a training-job bundle for the workstation",
        description="Write the project's labeled images as a training-job bundle (a verified "
        "zip) for `python -m export train`; quality-control images are left out.",
    )
    p.add_argument("project", type=Path, metavar="DIR", help="project folder")
    p.add_argument("out", type=Path, metavar="OUT.zip", help="bundle to write")
    p.add_argument(
        "--task",
        choices=("segment", "upgrade", "all"),
        default="all",
        help="segment: good labels only; upgrade: images with a coarse and a good version; "
        "all: both (default)",
    )
    p.add_argument(
        "--only-reviewed", action="store_true", help="only label versions marked reviewed"
    )
    p.add_argument(
        "--split", type=_split, default=(0.8, 0.1, 0.1), help="train,val,test shares (0.8,0.1,0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument(
        "--include-unlabeled",
        action="store_true",
        help="also ship images that have no label yet (MIPR pseudo-labels them)",
    )
    p.set_defaults(func=export_job)

    p = sub.add_parser(
        "install-model",
        help="verify a model bundle and activate its models",
        description="Verify a model bundle (hashes, ONNX graphs against their contracts), "
        "install its models into the project and make each the active one of its role. A "
        "model for classes the project lacks is refused unless mapped with --map.",
    )
    p.add_argument("project", type=Path, metavar="DIR", help="project folder")
    p.add_argument("bundle", type=Path, metavar="BUNDLE.zip", help="model bundle from export")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="MODEL=PROJECT",
        help="store a model class as a project class, e.g. --map mitochondrion=nucleus "
        "(repeatable); without it a model for classes the project lacks is refused",
    )
    add_allow_unsigned(p)
    p.set_defaults(func=install_model)

    p = sub.add_parser(
        "models",
        help="list installed models",
        description="List the installed models, oldest first; the active one of each role "
        "is marked with *.",
    )
    p.add_argument("project", type=Path, metavar="DIR", help="project folder")
    p.set_defaults(func=models)

    p = sub.add_parser(
        "activate",
        help="make an installed model active again (rollback)",
        description="Make an installed model the active one of its role again, after "
        "checking its file is unchanged (roll back to an earlier model).",
    )
    p.add_argument("project", type=Path, metavar="DIR", help="project folder")
    p.add_argument("model_id", metavar="MODEL_ID", help="model id or a unique prefix of it")
    p.set_defaults(func=activate)


def _split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not three numbers like 0.8,0.1,0.1"
        ) from None
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"{text!r}: need three non-negative shares summing to 1")
    train, val, test = parts
    return train, val, test


def export_job(args: argparse.Namespace) -> int:
    """`appliance export-job`: write a training-job bundle."""
    from appliance.bundles.training_job import write_training_job
    from appliance.cli import require_range
    from appliance.store import Project

    require_range("--seed", args.seed, 0, 2**32 - 1)
    with Project.open(args.project) as project:
        job_id, counts = write_training_job(
            project,
            args.out,
            task=args.task,
            only_reviewed=args.only_reviewed,
            split=args.split,
            seed=args.seed,
            include_unlabeled=args.include_unlabeled,
        )
    if not sum(counts.values()):
        print(f"warning: {args.out} holds no items (nothing labeled matches the options)")
    summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    print(f"wrote {args.out}: job {job_id}, task {args.task}, {summary}")
    return 0


def install_model(args: argparse.Namespace) -> int:
    """`appliance install-model`: verify and install a model bundle."""
    from appliance.bundles.install import install_model_bundle
    from appliance.store import Project
    from appliance.store.models import list_models

    class_map = {}
    for item in args.map:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ApplianceError(f"--map {item!r}: expected MODEL_CLASS=PROJECT_CLASS")
        class_map[source.strip()] = target.strip()
    with Project.open(args.project) as project:
        ids = set(
            install_model_bundle(
                project, args.bundle, class_map, allow_unsigned=args.allow_unsigned
            )
        )
        for model in list_models(project):
            if model.id in ids:
                print(f"installed {model.id} ({model.role}, {model.name}); active")
    return 0


def models(args: argparse.Namespace) -> int:
    """`appliance models`: list installed models, the active ones starred."""
    from appliance.store import Project
    from appliance.store.models import list_models

    with Project.open(args.project) as project:
        rows = list_models(project)
    if not rows:
        print("no models installed")
        return 0
    head = f"{'':1} {'id':36}  {'role':9}  {'name':20}  {'installed':19}  {'signed by':16}"
    print(f"{head}  metrics")
    for m in rows:
        metrics = _metrics_summary(m.metrics)
        star = "*" if m.active else " "
        signer = m.signer or "unsigned"
        print(
            f"{star} {m.id:36}  {m.role:9}  {m.name[:20]:20}  {m.installed[:19]:19}  "
            f"{signer:16}  {metrics}"
        )
    return 0


def activate(args: argparse.Namespace) -> int:
    """`appliance activate`: make an installed model active again."""
    from appliance.bundles.install import activate_model
    from appliance.store import Project

    with Project.open(args.project) as project:
        model = activate_model(project, args.model_id)
    print(f"active {model.role} model: {model.id} ({model.name})")
    return 0


def _metrics_summary(metrics: dict[str, object], limit: int = 4) -> str:
    """The first few numeric metrics; nested details (configs, parity reports) stay in the DB."""
    numbers = [
        (k, v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return ", ".join(f"{k}={v:.4g}" for k, v in numbers[:limit])
