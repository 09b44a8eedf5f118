"""`appliance-lab`: run the lab server and manage its devices.

    appliance-lab serve DIR [--port 8765]          start the server (SQLite in DIR by default)
    appliance-lab enroll DIR --project P [--role]  print a one-time code for a new device
    appliance-lab devices DIR                      list enrolled devices
    appliance-lab revoke DIR DEVICE_ID             revoke a device's token at once
    appliance-lab rotate-key DIR                   replace the bundle-signing key

`serve` speaks HTTPS with a lab CA made at first start (or --cert/--cert-key); enrollment
codes carry the CA's fingerprint (CODE#PIN), which tablets pin (docs/security.md).

`--database URL` (or APPLIANCE_LAB_DATABASE) selects PostgreSQL, e.g.
postgresql+psycopg://lab@dbhost/lab; blobs always stay in DIR.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli import run_command
from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from export.lab.store import LabStore

PAGE_KEY = "page.key"


def _database(args: argparse.Namespace) -> str | None:
    return args.database or os.environ.get("APPLIANCE_LAB_DATABASE") or None


def _root(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot create the lab folder ({exc.strerror})") from exc
    return path


def _page_key(root: Path) -> str:
    """The lab page's key, made once and kept in DIR/page.key (owner-only)."""
    path = root / PAGE_KEY
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _store(args: argparse.Namespace) -> LabStore:
    from export.lab.app import LabConfig
    from export.lab.store import LabStore

    return LabStore(LabConfig(_root(args.dir), _database(args)).database_url)


def serve(args: argparse.Namespace) -> int:
    from export.lab.app import LabConfig
    from export.lab.serve import LabServer
    from export.lab.tls import given_tls, lab_tls

    root = _root(args.dir)
    config = LabConfig(
        root,
        _database(args),
        page_key=_page_key(root),
        max_slide_bytes=_gib(args.max_slide_gb, "--max-slide-gb"),
        max_project_bytes=_gib(args.project_quota_gb, "--project-quota-gb"),
    )
    if bool(args.cert) != bool(args.cert_key):
        raise ApplianceError("--cert and --cert-key go together")
    if args.insecure:
        tls = None
    elif args.cert:
        tls = given_tls(root, args.cert, args.cert_key)
    else:
        tls = lab_tls(root, args.host, args.tls_name)
    try:
        server = LabServer(config, args.host, args.port, tls)
    except OSError as exc:
        raise ApplianceError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from exc
    print(f"lab server on {server.url} (data in {root})", flush=True)
    if tls is not None:
        print(f"lab CA pin (part of every enrollment code): {tls.pin}", flush=True)
    else:
        print("plain HTTP: tablets accept it only on this machine or with --insecure", flush=True)
    print(f"lab page: {server.url}/lab (its key is in {root / PAGE_KEY})", flush=True)
    server.serve_forever()
    return 0


def _gib(value: float, flag: str) -> int:
    """A size given in GiB as bytes; a flag out of range is one line."""
    if not 0 < value <= 1 << 20:
        raise ApplianceError(f"{flag} {value:g}: a size in GiB above 0")
    return int(value * (1 << 30))


def enroll(args: argparse.Namespace) -> int:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", args.project):
        raise ApplianceError(
            f"project name {args.project!r}: letters, digits, - and _ only (up to 64)"
        )
    store = _store(args)
    try:
        code, expires = store.create_enrollment(
            args.project, args.role, args.name or f"{args.role}", args.hours
        )
    finally:
        store.close()
    if not args.insecure:
        from appliance.security.tls import PIN_SEPARATOR, ca_fingerprint
        from export.lab.tls import lab_ca_pem

        code = f"{code}{PIN_SEPARATOR}{ca_fingerprint(lab_ca_pem(_root(args.dir)))}"
    print(f"one-time code for a {args.role} of project {args.project}: {code}")
    print(f"valid until {expires}; on the tablet: appliance sync DIR --server URL --code {code}")
    return 0


def devices(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = store.devices()
    finally:
        store.close()
    for d in rows:
        state = f"revoked {d['revoked']}" if d["revoked"] else f"last sync {d['last_seen'] or '-'}"
        print(f"{d['id']:>4}  {d['project']:<20} {d['role']:<11} {d['name']:<20} {state}")
    if not rows:
        print("no devices enrolled")
    return 0


def revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        done = store.revoke(args.device_id)
    finally:
        store.close()
    if not done:
        raise ApplianceError(f"{args.dir}: no active device {args.device_id}")
    print(f"device {args.device_id} revoked; its token is refused from now on")
    return 0


def rotate_key(args: argparse.Namespace) -> int:
    from export.lab.keys import rotate_lab_key

    old, new = rotate_lab_key(_root(args.dir))
    print(
        f"lab signing key {new.public.id} replaces {old.public.id}; bundles pushed from now on "
        "carry the rotation, and tablets that install one stop trusting the old key"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance-lab",
        description="The lab server: tablets sync here, workstations push models and pull jobs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("dir", type=Path, metavar="DIR", help="the lab server's data folder")
        p.add_argument(
            "--database",
            help="SQLAlchemy URL (default: SQLite DIR/lab.db; or APPLIANCE_LAB_DATABASE)",
        )

    p = sub.add_parser("serve", help="run the lab server (Ctrl-C stops it)")
    common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (8765; 0 picks a free one)")
    p.add_argument(
        "--cert", type=Path, help="serve this certificate chain (PEM) instead of the lab CA's"
    )
    p.add_argument("--cert-key", type=Path, help="the private key of --cert (PEM)")
    p.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name or address tablets use to reach the server (repeatable); "
        "this host's names and addresses are always in the certificate",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plain HTTP (tablets then need --insecure unless on this machine)",
    )
    p.add_argument(
        "--max-slide-gb",
        type=float,
        default=32.0,
        help="largest slide file a tablet may upload, in GiB (32; other blobs: 2)",
    )
    p.add_argument(
        "--project-quota-gb",
        type=float,
        default=200.0,
        help="what one project may store, in GiB, unfinished uploads included (200)",
    )
    p.set_defaults(func=serve)

    p = sub.add_parser("enroll", help="print a one-time enrollment code for a new device")
    common(p)
    p.add_argument("--project", required=True, help="the project the device may access")
    p.add_argument("--role", choices=("tablet", "workstation"), default="tablet")
    p.add_argument("--name", help="a name for the device shown on the lab page")
    p.add_argument("--hours", type=float, default=24.0, help="how long the code stays valid")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="a code without the CA pin, for a server run with --insecure",
    )
    p.set_defaults(func=enroll)

    p = sub.add_parser("devices", help="list enrolled devices")
    common(p)
    p.set_defaults(func=devices)

    p = sub.add_parser("revoke", help="revoke a device's token")
    common(p)
    p.add_argument(
        "device_id", type=int, metavar="DEVICE_ID", help="id from `appliance-lab devices`"
    )
    p.set_defaults(func=revoke)

    p = sub.add_parser(
        "rotate-key",
        help="replace the lab's bundle-signing key by one the old key vouches for",
        description="Make a new signing key signed by the old one. Tablets accept bundles "
        "signed by the new key through that certificate, then retire the old key.",
    )
    common(p)
    p.set_defaults(func=rotate_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
