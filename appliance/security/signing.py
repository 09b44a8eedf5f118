"""Ed25519 signatures over bundle manifests, and key rotation.

A bundle's `manifest.json` already lists the sha256 and size of every other member, and the
reader checks each member against it; so one signature over the exact manifest bytes covers
the whole bundle. The signature travels as the member `manifest.sig` beside the manifest and
is checked before any other member is decompressed.

Rotation: a lab that replaces its key signs the new public key with the old private key (a
rotation certificate). The new key carries the chain of certificates, every bundle it signs
carries the chain too, and a tablet that trusts any key of the chain accepts the bundle and
then trusts the newest key instead of the ones it replaces (see `Verdict`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.durable import atomic_write
from appliance.errors import ApplianceError

__all__ = [
    "MANIFEST_CONTEXT",
    "MAX_SIGNATURE_BYTES",
    "ROTATION_CONTEXT",
    "SIGNATURE_NAME",
    "SIGNING_KEY_ENV",
    "PublicKey",
    "Rotation",
    "SignatureProblem",
    "SigningKey",
    "UntrustedKey",
    "Verdict",
    "default_signing_key",
    "sign_manifest",
    "verify_manifest",
]

SIGNATURE_NAME = "manifest.sig"
SIGNING_KEY_ENV = "APPLIANCE_SIGNING_KEY"
PUBLIC_PREFIX = "appliance-ed25519"
MANIFEST_CONTEXT = b"appliance bundle manifest v1\n"  # a manifest signature is never a key's
ROTATION_CONTEXT = b"appliance lab key rotation v1\n"
MAX_CHAIN = 32
MAX_SIGNATURE_BYTES = 64 << 10


class SignatureProblem(ApplianceError):
    """Why a signature is not accepted; the bundle reader names the bundle around it."""


class UntrustedKey(SignatureProblem):
    """A valid signature by a key this tablet has not pinned."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str, size: int) -> bytes:
    if not isinstance(text, str):
        raise SignatureProblem(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureProblem(f"{what} is not valid base64") from exc
    if len(raw) != size:
        raise SignatureProblem(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key; `id` (16 hex digits of its sha256) is how people compare keys."""

    raw: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def to_text(self) -> str:
        """The one-line form of a `.pub` file and of the lab's enrollment reply."""
        return f"{PUBLIC_PREFIX} {_b64(self.raw)}"

    @classmethod
    def from_text(cls, text: str, source: str = "key") -> PublicKey:
        """Parse `to_text()` output (surrounding blank space and `#` comment lines ignored)."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        parts = lines[0].split() if len(lines) == 1 else []
        if len(parts) != 2 or parts[0] != PUBLIC_PREFIX:
            raise ApplianceError(
                f"{source}: not a lab public key (expected one line '{PUBLIC_PREFIX} BASE64')"
            )
        try:
            return cls(_unb64(parts[1], "the key", 32))
        except SignatureProblem as exc:
            raise ApplianceError(f"{source}: {exc}") from exc

    @classmethod
    def read(cls, path: Path) -> PublicKey:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ApplianceError(f"{path}: cannot read the public key ({exc})") from exc
        return cls.from_text(text, str(path))

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Rotation:
    """A rotation certificate: `by` (the old key) signed `key` (the new one)."""

    key: PublicKey
    by: PublicKey
    signature: bytes

    def to_dict(self) -> dict[str, str]:
        return {
            "key": _b64(self.key.raw),
            "by": _b64(self.by.raw),
            "signature": _b64(self.signature),
        }

    @classmethod
    def parse(cls, obj: object, where: str) -> Rotation:
        if not isinstance(obj, dict):
            raise SignatureProblem(f"{where} must be an object")
        return cls(
            PublicKey(_unb64(obj.get("key"), f"{where}.key", 32)),
            PublicKey(_unb64(obj.get("by"), f"{where}.by", 32)),
            _unb64(obj.get("signature"), f"{where}.signature", 64),
        )

    def valid(self) -> bool:
        return self.by.verifies(self.signature, ROTATION_CONTEXT + self.key.raw)


class SigningKey:
    """A lab's private key with the rotation chain that leads to it (empty for a first key)."""

    def __init__(self, private: Ed25519PrivateKey, chain: tuple[Rotation, ...] = ()) -> None:
        self._private = private
        self.chain = chain
        self.public = PublicKey(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def rotate(self) -> SigningKey:
        """A new key whose chain ends in a certificate this key signs."""
        new = Ed25519PrivateKey.generate()
        raw = new.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        cert = Rotation(PublicKey(raw), self.public, self.sign(ROTATION_CONTEXT + raw))
        return SigningKey(new, (*self.chain, cert))

    def save(self, path: Path, public: Path | None = None) -> None:
        """Write the key file owner-only (0600), durably; the public key (default: the `.pub`
        beside it) for tablets."""
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        doc = {
            "format": "appliance-signing-key",
            "version": 1,
            "private": _b64(raw),
            "chain": [c.to_dict() for c in self.chain],
        }
        data = json.dumps(doc, indent=1).encode("utf-8")

        def write(fh: Any) -> None:
            os.chmod(fh.name, 0o600)
            fh.write(data)

        atomic_write(path, write)
        public = public or path.with_suffix(".pub")
        atomic_write(public, (self.public.to_text() + "\n").encode("ascii"))

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != "appliance-signing-key":
                raise ValueError("not an appliance signing key file")
            private = Ed25519PrivateKey.from_private_bytes(
                _unb64(doc.get("private"), "private", 32)
            )
            chain = tuple(
                Rotation.parse(c, f"chain[{i}]") for i, c in enumerate(doc.get("chain", []))
            )
        except (OSError, ValueError, SignatureProblem) as exc:
            raise ApplianceError(f"{path}: cannot read the signing key ({exc})") from exc
        return cls(private, chain)


def default_signing_key(sign: SigningKey | bool = True) -> SigningKey | None:
    """The key a writer signs with: `sign` itself, none for False, and for True the key file
    named by APPLIANCE_SIGNING_KEY (a workstation's or test run's key), none when unset."""
    if isinstance(sign, SigningKey):
        return sign
    path = os.environ.get(SIGNING_KEY_ENV) if sign else None
    return SigningKey.load(Path(path)) if path else None


def sign_manifest(key: SigningKey, manifest: bytes) -> bytes:
    """The `manifest.sig` member for these exact manifest bytes."""
    doc = {
        "format": "appliance-signature",
        "version": 1,
        "algorithm": "ed25519",
        "key": _b64(key.public.raw),
        "signature": _b64(key.sign(MANIFEST_CONTEXT + manifest)),
        "chain": [c.to_dict() for c in key.chain],
    }
    return json.dumps(doc, indent=1).encode("utf-8")


@dataclass(frozen=True)
class Verdict:
    """A verified signature: who signed, and what a rotation in its chain teaches the tablet.

    `learned` are keys newly trusted through rotation certificates from a trusted key; `retired`
    the keys those certificates replace, which the tablet stops trusting once the bundle is
    installed (a lab rotates because the old key may be lost)."""

    signer: PublicKey
    learned: tuple[PublicKey, ...] = ()
    retired: tuple[PublicKey, ...] = ()


def verify_manifest(
    signature: bytes | None,
    manifest: bytes,
    trusted: Collection[PublicKey],
    retired: Collection[PublicKey] = (),
) -> Verdict:
    """Check `signature` (the `manifest.sig` bytes, None when absent) over `manifest`.

    Accepted only when the signing key is trusted, or reached from a trusted key through valid
    rotation certificates; a certificate from a retired key counts for nothing."""
    if signature is None:
        raise SignatureProblem("unsigned (no manifest.sig)")
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise SignatureProblem(f"{SIGNATURE_NAME} is larger than {MAX_SIGNATURE_BYTES} bytes")
    try:
        doc = json.loads(signature.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureProblem(f"{SIGNATURE_NAME} is not valid JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != "appliance-signature":
        raise SignatureProblem(f"{SIGNATURE_NAME} is not an appliance signature")
    if doc.get("version") != 1 or doc.get("algorithm") != "ed25519":
        raise SignatureProblem(f"{SIGNATURE_NAME}: unsupported version or algorithm")
    key = PublicKey(_unb64(doc.get("key"), f"{SIGNATURE_NAME} key", 32))
    sig = _unb64(doc.get("signature"), f"{SIGNATURE_NAME} signature", 64)
    chain = doc.get("chain", [])
    if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
        raise SignatureProblem(f"{SIGNATURE_NAME}: chain must be a list of at most {MAX_CHAIN}")
    if not key.verifies(sig, MANIFEST_CONTEXT + manifest):
        raise SignatureProblem(f"signature by key {key.id} does not match the manifest (tampered)")
    known = set(trusted)
    gone = set(retired) - known
    learned: list[PublicKey] = []
    replaced: list[PublicKey] = []
    from_retired: list[PublicKey] = []
    for i, obj in enumerate(chain):
        cert = Rotation.parse(obj, f"{SIGNATURE_NAME} chain[{i}]")
        if cert.by in gone:
            from_retired.append(cert.by)
        if cert.by not in known or cert.key in known:
            continue  # a link before this tablet's pin, or one it already knows
        if not cert.valid():
            raise SignatureProblem(f"rotation certificate {i} is not signed by key {cert.by.id}")
        known.add(cert.key)
        learned.append(cert.key)
        replaced.append(cert.by)
    if key in gone:
        raise SignatureProblem(f"signed by key {key.id}, which this tablet has retired")
    if key not in known and from_retired:
        raise SignatureProblem(
            f"signed by key {key.id}, rotated from key {from_retired[0].id}, which this "
            "tablet has retired"
        )
    if key not in known:
        raise UntrustedKey(f"signed by key {key.id}, which this tablet does not trust")
    return Verdict(key, tuple(learned), tuple(k for k in replaced if k != key))
