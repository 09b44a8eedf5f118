"""Sub-commands for trust: pin a lab's signing key, PINs and encryption at rest
(docs/security.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = [
    "add_allow_unsigned",
    "ask_key",
    "encrypt",
    "register",
    "set_pin",
    "trust_key",
    "unlock_revoked",
]


def add_allow_unsigned(p: argparse.ArgumentParser) -> None:
    """The one `--allow-unsigned` option every bundle install shares."""
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="also install a bundle no pinned lab key signed (a lab without a server); "
        "`appliance models` then lists it as unsigned. A bad signature is still refused",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "trust-key",
        help="pin a lab's public key, or list the pinned keys",
        description="Trust bundles signed by the lab key in FILE.pub (for a lab without a "
        "server; enrolling with a lab server pins its key by itself). Keys are pinned for "
        "this tablet, outside every project folder. Without FILE, list the pinned keys.",
    )
    p.add_argument("key", type=Path, nargs="?", metavar="FILE.pub", help="the lab's public key")
    p.set_defaults(func=trust_key)

    p = sub.add_parser(
        "unlock-revoked",
        help="lift the lock a lab's revoke put on this tablet (the lab, tablet in hand)",
        description="A tablet whose lab revoked it refuses to open any project. After the lab "
        "got the tablet back, this lifts that lock; enroll again to sync.",
    )
    p.set_defaults(func=unlock_revoked)

    p = sub.add_parser(
        "set-pin",
        help="give an annotator a PIN that the app asks at opening and after idle minutes",
        description="Give ANNOTATOR a PIN or passphrase (6 characters or more) for this "
        "project: the app then asks for it when the project opens and after some idle "
        "minutes. The PIN comes from APPLIANCE_PASSPHRASE or a prompt, never from an argument. "
        "When the project has PINs already, --by names an annotator who has one, and that PIN "
        "is asked first (the new one then comes from APPLIANCE_NEW_PASSPHRASE or a prompt).",
    )
    p.add_argument("project", type=Path, metavar="DIR", help="the project folder")
    p.add_argument("--annotator", required=True, help="who gets the PIN")
    p.add_argument("--by", help="an annotator who already has a PIN (when there are PINs)")
    p.set_defaults(func=set_pin)

    p = sub.add_parser(
        "encrypt",
        help="encrypt a project that has PINs at rest (set-pin does it for a new PIN)",
        description="Encrypt the project's database and stored images under its key, in "
        "place and crash-safe (an interrupted run is finished or undone at the next open). "
        "The PIN of any of its annotators comes from APPLIANCE_PASSPHRASE or a prompt. "
        "`set-pin` encrypts by itself; this is for projects given PINs before encryption "
        "at rest existed.",
    )
    p.add_argument("project", type=Path, metavar="DIR", help="the project folder")
    p.set_defaults(func=encrypt)


def ask_key(root: Path) -> bytes:
    """The key of encrypted project `root` for a CLI command: the PIN of any of its
    annotators from APPLIANCE_PASSPHRASE or a no-echo prompt (never an argument)."""
    from appliance.errors import ApplianceError
    from appliance.security.vault import PASSPHRASE_ENV, passphrase, unlock_any
    from appliance.store.at_rest import LOCKED

    if not os.environ.get(PASSPHRASE_ENV) and not sys.stdin.isatty():
        raise ApplianceError(f"{root}: {LOCKED}")
    return unlock_any(root, passphrase(f"PIN for {root}: "))


def trust_key(args: argparse.Namespace) -> int:
    """`appliance trust-key`: pin a key file, or list the pins."""
    from appliance.security.signing import PublicKey
    from appliance.security.trust import pin_key, pinned

    if args.key is None:
        pins = pinned()
        for pin in pins:
            state = "retired" if pin.retired else "trusted"
            print(f"{pin.key.id}  {state:8}  {pin.source}")
        if not pins:
            print("no lab key pinned: only --allow-unsigned installs bundles")
        return 0
    key = PublicKey.read(args.key)
    new = pin_key(key, f"file {args.key}")
    print(f"lab key {key.id} {'pinned' if new else 'was already pinned'}")
    return 0


def unlock_revoked(_args: argparse.Namespace) -> int:
    """`appliance unlock-revoked`: remove the revoke lock."""
    from appliance.security.lock import lift_lock

    print("lock lifted" if lift_lock() else "this tablet is not locked")
    return 0


def set_pin(args: argparse.Namespace) -> int:
    """`appliance set-pin`: the first PIN makes the project key; later ones wrap it again."""
    from appliance.errors import ApplianceError
    from appliance.security.vault import KEYS_FILE, add_annotator, create_keys, passphrase, unlock
    from appliance.store import Project, at_rest

    if not (args.project / KEYS_FILE).exists():
        Project.open(args.project).close()  # a project, not locked by a revoke
        key = create_keys(
            args.project, args.annotator, passphrase(f"new PIN for {args.annotator}: ")
        )
    else:
        if not args.by:
            raise ApplianceError(f"{args.project} has PINs: name one of their annotators with --by")
        key = unlock(args.project, args.by, passphrase(f"PIN of {args.by}: "))
        Project.open(args.project, key).close()  # a project, not locked by a revoke
        new = passphrase(f"new PIN for {args.annotator}: ", "APPLIANCE_NEW_PASSPHRASE")
        add_annotator(args.project, key, args.annotator, new)
    print(f"{args.annotator} has a PIN for {args.project}")
    if not at_rest.is_encrypted(args.project):
        _encrypt(args.project, key)
    return 0


def encrypt(args: argparse.Namespace) -> int:
    """`appliance encrypt`: encrypt a project with PINs at rest, in place."""
    from appliance.errors import ApplianceError
    from appliance.security.vault import KEYS_FILE, passphrase, unlock_any
    from appliance.store import at_rest
    from appliance.store.db import require_sqlcipher

    if not (args.project / KEYS_FILE).exists():
        raise ApplianceError(
            f"{args.project}: no PIN yet; `appliance set-pin` gives one and encrypts"
        )
    at_rest.recover(args.project)
    if at_rest.is_encrypted(args.project):
        print(f"{args.project} is encrypted at rest already")
        return 0
    require_sqlcipher()  # asked for explicitly: a platform without it is an error
    _encrypt(args.project, unlock_any(args.project, passphrase(f"PIN for {args.project}: ")))
    return 0


def _encrypt(root: Path, key: bytes) -> None:
    """Migrate a plain project with PINs to encryption at rest; one line on a platform
    without SQLCipher (the PINs still lock the app)."""
    from appliance.errors import ApplianceError
    from appliance.store import Project, at_rest
    from appliance.store import db as dbm

    try:
        dbm.require_sqlcipher()
    except ApplianceError as exc:
        print(
            f"note: {exc}; the project stays plain (the PIN still locks the app)", file=sys.stderr
        )
        return
    Project.open(root).close()  # plain, readable, its schema migrated: the export copies all
    n = at_rest.encrypt(root, key)
    print(f"{root} is encrypted at rest ({n} stored originals and project.db)")
