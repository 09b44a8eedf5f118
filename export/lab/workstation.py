"""`python -m export models push` and `python -m export jobs pull`: the workstation's side of
the lab server. It enrolls once with a workstation code (`appliance-lab enroll --role
workstation`) and keeps its token in a credentials file readable only by its owner.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from appliance.durable import file_sha256
from appliance.errors import ApplianceError
from appliance.security.tls import split_code
from appliance.sync.blobs import BlobChannel
from appliance.sync.credentials import pinned_connection
from appliance.sync.http import LabHttp

DEFAULT_CREDENTIALS = (
    Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    / "appliance-lab"
    / "workstation.json"
)


def credentials(args: argparse.Namespace) -> dict[str, str]:
    """Enroll with --server/--code when given (and store the token), else read the file."""
    path: Path = args.credentials
    if args.code or args.server:
        if not (args.code and args.server):
            raise ApplianceError("enrolling needs both --server and --code")
        http = pinned_connection(args.server, args.code, None, args.insecure)
        try:
            proposed = secrets.token_urlsafe(32)  # a retry after a lost reply gets the same
            body = {"code": split_code(args.code)[0], "name": args.name, "token": proposed}
            reply = http.request("POST", "/api/v1/enroll", json_body=body).json()
        finally:
            http.close()
        if reply.get("role") != "workstation":
            raise ApplianceError(
                f"code {args.code!r} enrolls a {reply.get('role')}, not a workstation"
            )
        creds = {
            "server": args.server.rstrip("/"),
            "project": reply["project"],
            "token": reply["token"],
            "ca": http.ca or "",  # the pinned lab CA (PEM); "" when none was pinned
            "insecure": "1" if args.insecure else "",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
        print(f"enrolled in lab project {creds['project']} at {creds['server']}; token in {path}")
        return creds
    try:
        creds = json.loads(path.read_text())
        return {
            **{k: str(creds[k]) for k in ("server", "project", "token")},
            **{k: str(creds.get(k) or "") for k in ("ca", "insecure")},
        }
    except FileNotFoundError as exc:
        raise ApplianceError(
            f"{path}: no lab credentials; enroll once with --server URL --code CODE"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ApplianceError(f"{path}: not a lab credentials file") from exc


def _connect(args: argparse.Namespace) -> tuple[LabHttp, str]:
    creds = credentials(args)
    http = LabHttp(
        creds["server"],
        creds["token"],
        ca=creds["ca"] or None,
        insecure=bool(creds["insecure"]),
    )
    return http, f"/api/v1/projects/{quote(creds['project'])}"


def push_models(args: argparse.Namespace) -> int:
    from appliance.bundles.model_bundle import read_model_bundle

    bundles = [Path(b) for b in args.bundles]
    for b in bundles:
        read_model_bundle(b)  # refuse locally what every tablet would refuse
    http, base = _connect(args)
    try:
        channel = BlobChannel(http, base)
        for b in bundles:
            sha = file_sha256(b)
            if channel.missing([sha]):
                channel.upload(sha, b)
            reply = http.request("POST", f"{base}/models", json_body={"sha256": sha}).json()
            print(
                f"pushed model bundle {reply['bundle_id']} ({b.name}); "
                "tablets install it on their next sync"
            )
    finally:
        http.close()
    return 0


def pull_jobs(args: argparse.Namespace) -> int:
    from appliance.bundles.training_job import read_training_job

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    http, base = _connect(args)
    try:
        channel = BlobChannel(http, base)
        jobs: list[dict[str, Any]] = http.request("GET", f"{base}/jobs").json()["jobs"]
        fetched = 0
        for job in jobs:
            sha = str(job["sha256"])
            target = out / f"job-{sha[:16]}.zip"
            if target.exists() and file_sha256(target) == sha:
                continue
            tmp = channel.download(sha, target.with_suffix(".part"))  # resumes a cut one
            read_training_job(tmp)  # verified before it is given its final name
            os.replace(tmp, target)
            fetched += 1
            print(f"{target} (from {job['device']}, sent {job['pushed']})")
        print(f"{fetched} new training-job bundles in {out} ({len(jobs)} on the server)")
    finally:
        http.close()
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help="lab server address (with --code, the first time)")
    p.add_argument("--code", help="one-time workstation code from `appliance-lab enroll`")
    p.add_argument("--name", default="workstation", help="this workstation's name on the lab page")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a plain http:// lab server that is not on this machine (first time)",
    )
    p.add_argument(
        "--credentials",
        type=Path,
        default=DEFAULT_CREDENTIALS,
        help=f"where the token is kept ({DEFAULT_CREDENTIALS})",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """`models push` and `jobs pull` for `python -m export`."""
    models = sub.add_parser(
        "models",
        help="model bundles on the lab server",
        description="Publish verified model bundles to a project's tablets through the lab server.",
    )
    msub = models.add_subparsers(
        dest="models_command", required=True, metavar="ACTION", help="push"
    )
    p = msub.add_parser(
        "push", help="verify model bundles and publish them to the project's tablets"
    )
    p.add_argument("bundles", nargs="+", metavar="BUNDLE.zip")
    _common(p)
    p.set_defaults(func=push_models)

    jobs = sub.add_parser(
        "jobs",
        help="training-job bundles on the lab server",
        description="Fetch the training-job bundles the project's tablets sent to the lab server.",
    )
    jsub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION", help="pull")
    p = jsub.add_parser("pull", help="download new training-job bundles the tablets sent")
    p.add_argument("out", type=Path, metavar="OUT_DIR")
    _common(p)
    p.set_defaults(func=pull_jobs)
