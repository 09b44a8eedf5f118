"""The lab keys this tablet trusts to sign bundles (`trusted-keys.json` in the appliance home).

Keys are pinned at enrollment (the lab server sends its public key over the pinned TLS
connection) or from a `.pub` file for a lab without a server (`appliance trust-key`). A key
replaced through a rotation certificate is kept as retired, so it can no longer sign
anything nor vouch for another key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.security.home import appliance_home, home_path, write_private
from appliance.security.signing import (
    SIGNATURE_NAME,
    PublicKey,
    SignatureProblem,
    UntrustedKey,
    Verdict,
    verify_manifest,
)

__all__ = ["TRUST_FILE", "Pin", "TrustPolicy", "learn", "pin_key", "pinned", "trust_policy"]

TRUST_FILE = "trusted-keys.json"
_HINT = (
    "pin the lab's key (enroll with the lab server, or `appliance trust-key FILE.pub`) "
    "or install with --allow-unsigned"
)


@dataclass(frozen=True)
class Pin:
    """One pinned key: where it came from, and whether a rotation retired it."""

    key: PublicKey
    source: str
    retired: bool = False


def _path() -> Path:
    return appliance_home() / TRUST_FILE


def pinned() -> list[Pin]:
    """Every key this tablet has pinned, retired ones included."""
    path = home_path() / TRUST_FILE  # reading creates nothing
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [
            Pin(PublicKey.from_text(k["key"], str(path)), str(k["source"]), bool(k["retired"]))
            for k in doc["keys"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApplianceError(f"{path}: unreadable list of trusted keys ({exc})") from exc


def _save(pins: list[Pin]) -> None:
    doc = {
        "keys": [{"key": p.key.to_text(), "source": p.source, "retired": p.retired} for p in pins]
    }
    write_private(_path(), json.dumps(doc, indent=1).encode("utf-8"))


def pin_key(key: PublicKey, source: str) -> bool:
    """Trust `key` from now on; False when it was already trusted. A retired key stays retired
    (a rotation replaced it, so a file or server offering it again is not enough)."""
    pins = pinned()
    for pin in pins:
        if pin.key == key:
            if pin.retired:
                raise ApplianceError(f"key {key.id} was retired by a key rotation; not pinned")
            return False
    _save([*pins, Pin(key, source)])
    return True


def learn(verdict: Verdict) -> None:
    """After an install: trust the keys a rotation introduced and retire those it replaced."""
    if not verdict.learned and not verdict.retired:
        return
    pins = [Pin(p.key, p.source, p.retired or p.key in verdict.retired) for p in pinned()]
    have = {p.key for p in pins}
    pins += [Pin(k, "rotation") for k in verdict.learned if k not in have]
    _save(pins)


@dataclass(frozen=True)
class TrustPolicy:
    """What a bundle reader accepts: signatures from these keys, or anything when unsigned
    bundles are explicitly allowed (a lab with no server; the models list then says so)."""

    keys: tuple[PublicKey, ...]
    retired: tuple[PublicKey, ...] = ()
    allow_unsigned: bool = False

    def check(self, signature: bytes | None, manifest: bytes) -> Verdict | None:
        """The verdict, None for an allowed unsigned bundle; `SignatureProblem` otherwise.

        With --allow-unsigned a bundle that carries a signature must still verify: a forged
        or tampered signature is never waved through."""
        if signature is None:
            if self.allow_unsigned:
                return None
            raise SignatureProblem(f"unsigned (no {SIGNATURE_NAME}); {_HINT}")
        try:
            return verify_manifest(signature, manifest, self.keys, self.retired)
        except UntrustedKey as exc:
            if self.allow_unsigned:
                return None
            raise UntrustedKey(f"{exc}; {_HINT}") from exc


def trust_policy(allow_unsigned: bool = False) -> TrustPolicy:
    """This tablet's policy, from its pinned keys."""
    pins = pinned()
    return TrustPolicy(
        tuple(p.key for p in pins if not p.retired),
        tuple(p.key for p in pins if p.retired),
        allow_unsigned,
    )
