"""Sub-command `sync`: exchange work with the lab server (docs/sync.md)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "sync",
        help="push this tablet's work to the lab server, pull others' work and new models",
        description=(
            "Push the operations and blobs the lab server lacks (resumable, safe to interrupt "
            "and rerun), pull everything after the last checkpoint, and install new model "
            "bundles after verifying them. The first time, enroll with --server and --code."
        ),
    )
    p.add_argument("project", type=Path, metavar="DIR", help="the project folder")
    p.add_argument("--server", help="lab server address, e.g. https://lab.local:8765 (first time)")
    p.add_argument(
        "--code",
        help="one-time enrollment code from `appliance-lab enroll` (CODE#PIN: the pin is the "
        "lab CA's fingerprint, checked before anything is sent)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a plain http:// lab server that is not on this machine (tokens and "
        "images then cross the network readable); remembered for this project",
    )
    p.add_argument(
        "--name", default=socket.gethostname(), help="this tablet's name on the lab page"
    )
    p.add_argument("--no-models", action="store_true", help="do not install new model bundles")
    p.add_argument("--job", type=Path, metavar="BUNDLE.zip", help="also send a training-job bundle")
    p.add_argument("--attempts", type=int, default=8, help="tries per request (8)")
    p.add_argument(
        "--chunk-kb",
        type=int,
        default=8192,
        help="upload chunk in KiB (8192); smaller loses less on a flaky network",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="only show the sync state: pending operations, last success and error, and the "
        "pulled operations this tablet refused (each with its reason)",
    )
    p.set_defaults(func=sync)


def sync(args: argparse.Namespace) -> int:
    from appliance.errors import ApplianceError
    from appliance.store import Project, oplog
    from appliance.sync.client import enroll, sync_project, sync_status
    from appliance.sync.http import Retry

    with Project.open(args.project) as project:
        if args.status:
            s = sync_status(project)
            print(
                f"server {s['server'] or '-'}; {s['pending']} operations pending; last success "
                f"{s['last_success'] or 'never'}; last error {s['last_error'] or 'none'}; "
                f"{s['refused']} pulled operations refused"
            )
            for _op, reason in oplog.refusals(project.db):
                print(f"  refused: {reason}")
            return 0
        if args.code or args.server:
            if not (args.code and args.server):
                raise ApplianceError("enrolling needs both --server and --code")
            lab_project = enroll(project, args.server, args.code, args.name, insecure=args.insecure)
            print(f"enrolled in lab project {lab_project} at {args.server}")
        retry = Retry(attempts=max(1, args.attempts))
        report = sync_project(
            project,
            retry=retry,
            install_models=not args.no_models,
            chunk=max(1, args.chunk_kb) << 10,
            progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
        if args.job:
            from appliance.sync.client import push_job

            job_id = push_job(project, args.job, retry=retry)
            print(f"sent training job {job_id}")
        print(report.line())
    return 0
