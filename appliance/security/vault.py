"""The keys of an encrypted project: one random project key, wrapped once per annotator under
a key derived from that annotator's PIN or passphrase with Argon2id, and sealed data under the
project key with AES-256-GCM.

Only wrapped keys are stored (`keys.json` in the project folder): without a PIN the file gives
nothing but the Argon2id parameters, and each guess costs the attacker one Argon2id run
(64 MiB, 3 passes: about 0.3-0.7 s on a tablet core). The app adds back-off on top: after
three wrong PINs for a project, each further try must wait twice as long as the last
(`BackOff`, kept in the appliance home so restarting the app does not reset it). A short PIN
cannot resist an offline attack on a copied folder for long; docs/security.md says so.

The store uses the project key for encryption at rest (`appliance.store.at_rest`): SQLCipher
for `project.db`, sealed files for the originals.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ApplianceError
from appliance.security.home import appliance_home, write_private

__all__ = [
    "KDF",
    "KEYS_FILE",
    "MIN_SECRET",
    "PASSPHRASE_ENV",
    "BackOff",
    "WrongPin",
    "add_annotator",
    "create_keys",
    "open_sealed",
    "passphrase",
    "seal",
    "unlock",
    "unlock_any",
]

KEYS_FILE = "keys.json"
PASSPHRASE_ENV = "APPLIANCE_PASSPHRASE"
MIN_SECRET = 6
KDF = {"time_cost": 3, "memory_cost": 64 * 1024, "parallelism": 1}  # RFC 9106, second choice
MAGIC = b"APPLIANCE-AEAD-1\n"


class WrongPin(ApplianceError):
    """A PIN that unwraps no key (or a try made before the back-off allows it)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(secret: str, salt: bytes, kdf: dict[str, int]) -> bytes:
    return hash_secret_raw(secret.encode("utf-8"), salt, hash_len=32, type=Type.ID, **kdf)


def seal(key: bytes, data: bytes, context: bytes) -> bytes:
    """`data` encrypted and authenticated under `key`; `context` (a file name, a row id) is
    authenticated too, so a sealed blob moved to another place does not open there."""
    nonce = secrets.token_bytes(12)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, data, context)


def open_sealed(key: bytes, blob: bytes, context: bytes, source: str) -> bytes:
    """The plain bytes of `seal(key, data, context)`; one-line error naming `source`."""
    if not blob.startswith(MAGIC):
        raise ApplianceError(f"{source}: not sealed data")
    body = blob[len(MAGIC) :]
    try:
        return AESGCM(key).decrypt(body[:12], body[12:], context)
    except InvalidTag as exc:
        raise ApplianceError(f"{source}: changed, moved or sealed under another key") from exc


@dataclass(frozen=True)
class _Wrapped:
    salt: bytes
    kdf: dict[str, int]
    sealed: bytes

    def to_dict(self) -> dict[str, object]:
        return {"salt": _b64(self.salt), "kdf": self.kdf, "key": _b64(self.sealed)}


def _wrap(project_key: bytes, annotator: str, secret: str) -> _Wrapped:
    if len(secret) < MIN_SECRET:
        raise ApplianceError(f"a PIN or passphrase needs at least {MIN_SECRET} characters")
    salt = secrets.token_bytes(16)
    sealed = seal(_derive(secret, salt, KDF), project_key, annotator.encode("utf-8"))
    return _Wrapped(salt, dict(KDF), sealed)


def _read(root: Path) -> dict[str, dict]:
    path = Path(root) / KEYS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return dict(doc["annotators"])
    except FileNotFoundError as exc:
        raise ApplianceError(f"{root}: not an encrypted project (no {KEYS_FILE})") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApplianceError(f"{path}: unreadable key file ({exc})") from exc


def _write(root: Path, annotators: dict[str, dict]) -> None:
    write_private(Path(root) / KEYS_FILE, json.dumps({"annotators": annotators}, indent=1).encode())


def create_keys(root: Path, annotator: str, secret: str) -> bytes:
    """A new project key, wrapped for its first annotator; returns the key."""
    if (Path(root) / KEYS_FILE).exists():
        raise ApplianceError(f"{root}: already has a {KEYS_FILE}; not replaced")
    key = secrets.token_bytes(32)
    _write(root, {annotator: _wrap(key, annotator, secret).to_dict()})
    return key


def add_annotator(root: Path, project_key: bytes, annotator: str, secret: str) -> None:
    """Wrap the (already unlocked) project key for another annotator or a new PIN."""
    annotators = _read(root)
    annotators[annotator] = _wrap(project_key, annotator, secret).to_dict()
    _write(root, annotators)


class BackOff:
    """Wrong-PIN back-off per project, kept in the appliance home: three free tries, then each
    wrong PIN doubles the wait before the next try (1 s, 2 s, ... capped at 15 minutes)."""

    FREE = 3
    CAP = 15 * 60.0

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:24]
        self.path = appliance_home() / "unlock" / f"{digest}.json"
        self.clock = clock

    def _state(self) -> tuple[int, float]:
        try:
            doc = json.loads(self.path.read_text())
            return int(doc["failures"]), float(doc["last"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0.0

    def wait(self) -> float:
        """Seconds before the next try is allowed (0: now)."""
        failures, last = self._state()
        if failures < self.FREE:
            return 0.0
        delay = min(self.CAP, 2.0 ** (failures - self.FREE))
        return max(0.0, last + delay - self.clock())

    def failed(self) -> None:
        failures, _ = self._state()
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        write_private(
            self.path, json.dumps({"failures": failures + 1, "last": self.clock()}).encode()
        )

    def succeeded(self) -> None:
        self.path.unlink(missing_ok=True)


def unlock(
    root: Path, annotator: str, secret: str, clock: Callable[[], float] = time.time
) -> bytes:
    """The project key, when `secret` is `annotator`'s PIN; `WrongPin` otherwise, and also
    while the back-off of earlier wrong PINs has not run out (the PIN is then not even tried).
    """
    backoff = _allowed(root, clock)
    entry = _read(root).get(annotator)
    key = None if entry is None else _try(root, annotator, entry, secret)
    if key is None:
        backoff.failed()
        raise WrongPin(f"{root}: wrong annotator or PIN")
    backoff.succeeded()
    return key


def unlock_any(root: Path, secret: str, clock: Callable[[], float] = time.time) -> bytes:
    """The project key, when `secret` is the PIN of any annotator of the project (the CLI:
    APPLIANCE_PASSPHRASE names no annotator). One Argon2id run per annotator; a miss counts
    as one wrong PIN for the back-off."""
    backoff = _allowed(root, clock)
    for annotator, entry in sorted(_read(root).items()):
        key = _try(root, annotator, entry, secret)
        if key is not None:
            backoff.succeeded()
            return key
    backoff.failed()
    raise WrongPin(f"{root}: wrong PIN (no annotator of this project has it)")


def _allowed(root: Path, clock: Callable[[], float]) -> BackOff:
    """The project's back-off, when it allows a try now; `WrongPin` with the wait otherwise."""
    backoff = BackOff(root, clock)
    wait = backoff.wait()
    if wait > 0:
        raise WrongPin(f"{root}: too many wrong PINs; try again in {wait:.0f} s")
    return backoff


def _try(root: Path, annotator: str, entry: dict, secret: str) -> bytes | None:
    """The key wrapped in `entry` for `secret`, or None when `secret` does not open it."""
    try:
        salt = base64.b64decode(entry["salt"], validate=True)
        sealed = base64.b64decode(entry["key"], validate=True)
        kdf = {k: int(entry["kdf"][k]) for k in KDF}
    except (KeyError, TypeError, ValueError) as exc:
        raise ApplianceError(
            f"{root / KEYS_FILE}: damaged entry for {annotator!r} ({exc})"
        ) from exc
    try:
        return open_sealed(_derive(secret, salt, kdf), sealed, annotator.encode(), str(root))
    except ApplianceError:
        return None


def passphrase(prompt: str = "PIN or passphrase: ", env: str = PASSPHRASE_ENV) -> str:
    """The CLI's PIN: the variable `env` (APPLIANCE_PASSPHRASE; scripts, tests) or a prompt
    that does not echo. Never a command-line argument: those show in `ps`, shell history and
    logs."""
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise ApplianceError(f"a PIN is needed: set {env} or run the command in a terminal")
    return getpass.getpass(prompt)
