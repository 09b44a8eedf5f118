"""`python -m export keygen` / `sign`: a lab without a server signs its bundles itself.

The private key stays on the workstation (mode 0600); the `.pub` beside it goes to each
tablet once (`appliance trust-key FILE.pub`). A lab server does both by itself
(docs/security.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.errors import ApplianceError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add `keygen`, `rotate-key` and `sign` to the workstation's parser."""
    p = sub.add_parser(
        "keygen",
        help="make a lab signing key (KEY, owner-only) and its public half (KEY.pub)",
        description="Make an Ed25519 lab signing key. Give KEY.pub to every tablet "
        "(`appliance trust-key KEY.pub`); keep KEY secret. Refuses to overwrite a key.",
    )
    p.add_argument("key", type=Path, metavar="KEY", help="private key file to create")
    p.set_defaults(func=_keygen)

    p = sub.add_parser(
        "rotate-key",
        help="replace a lab signing key by a new one it vouches for",
        description="Make a new key signed by the old one (a rotation certificate). Tablets "
        "that trust the old key accept bundles signed by the new one, then trust only the new "
        "one. The old key file is kept as KEY.retired.",
    )
    p.add_argument("key", type=Path, metavar="KEY", help="the current private key file")
    p.set_defaults(func=_rotate)

    p = sub.add_parser(
        "sign",
        help="sign a model or control bundle with a lab key",
        description="Verify a bundle fully, then write it signed by KEY (replacing any "
        "signature it had). Bundles written with APPLIANCE_SIGNING_KEY set are signed already.",
    )
    p.add_argument("bundle", type=Path, metavar="BUNDLE.zip", help="the bundle to sign")
    p.add_argument("--key", type=Path, required=True, help="the lab's private key file")
    p.add_argument("--out", type=Path, help="signed bundle to write (default: in place)")
    p.set_defaults(func=_sign)


def _keygen(args: argparse.Namespace) -> int:
    from appliance.security.signing import SigningKey

    if args.key.exists() or args.key.with_suffix(".pub").exists():
        raise ApplianceError(f"{args.key}: a key is already there; not overwritten")
    key = SigningKey.generate()
    key.save(args.key)
    print(f"lab key {key.public.id}: private {args.key}, public {args.key.with_suffix('.pub')}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from appliance.security.signing import SigningKey

    old = SigningKey.load(args.key)
    retired = args.key.with_name(args.key.name + ".retired")
    if retired.exists():
        raise ApplianceError(f"{retired}: an earlier rotation's key is there; move it first")
    new = old.rotate()
    old.save(retired, retired.with_name(retired.name + ".pub"))
    new.save(args.key)
    print(f"lab key {new.public.id} replaces {old.public.id} (old key kept in {retired})")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from appliance.bundles.archive import sign_bundle
    from appliance.security.signing import SigningKey

    key = SigningKey.load(args.key)
    fmt = sign_bundle(args.bundle, key, args.out)
    print(f"signed {fmt} bundle {args.out or args.bundle} with lab key {key.public.id}")
    return 0
