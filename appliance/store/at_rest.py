"""Encryption at rest of a project: which files are sealed, the keys the store uses, the
unlocked keys of this process, and the crash-safe migration of a plain project in place.

An encrypted project has `keys.json` (the project key wrapped per annotator:
`appliance.security.vault`), a `project.db` that SQLCipher wrote (AES-256, an HMAC per page;
it no longer starts with "SQLite format 3") and every stored original under `images/` and
`slides/` sealed with AES-256-GCM in chunks (`appliance.security.sealed_file`), under its own
name: the database's `blob` column does not change. The two store keys are derived from the
project key (HMAC-SHA256 with a label each), so the database key and the file key differ.

Migration (`encrypt`), each step durable before the next:
1. write `encrypting.json` (the marker: a migration is under way);
2. seal every original `X` into `X.sealed` beside it;
3. checkpoint the plain database (its WAL emptied and removed) and `sqlcipher_export` it into
   `project.db.encrypting`, fsynced;
4. **commit point**: rename `project.db.encrypting` over `project.db`;
5. rename every `X.sealed` over `X` (the plain original goes), then remove the marker.
`recover`, run by every open while the marker exists, finishes or undoes it from what is on
disk: a `project.db` that is still plain means the commit point was not passed (the sealed
copies and the half-written database are deleted: the plain project is intact); an encrypted
one means it was (the remaining renames are done). Neither needs the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from appliance.durable import CHUNK, TEMP_GLOB, atomic_write, fsync_dir, replace_durably
from appliance.errors import ApplianceError
from appliance.security.sealed_file import SealedReader, is_sealed, seal_file, sealed_size
from appliance.security.vault import KEYS_FILE

__all__ = [
    "LOCKED",
    "MARKER",
    "PLAIN_HEADER",
    "SEALED_DIRS",
    "StoreKeys",
    "encrypt",
    "erase_keys",
    "forget",
    "is_encrypted",
    "is_unlocked",
    "key_for",
    "recover",
    "refuse_erased",
    "remember",
    "set_asker",
]

DB_NAME = "project.db"  # as appliance.store.project.DB_NAME (which imports this module)
SEALED_DIRS = ("images", "slides")  # originals; models (ONNX) and bundles stay plain
MARKER = "encrypting.json"
ERASED = "keys-erased.json"  # left where keys.json was, by a revoke's crypto-erase
ENCRYPTING = "project.db.encrypting"
PLAIN_HEADER = b"SQLite format 3\x00"
LOCKED = "locked: run with APPLIANCE_PASSPHRASE or the app's PIN"


def is_encrypted(root: Path) -> bool:
    """Whether the project's database is SQLCipher's (a plain SQLite file starts with
    `PLAIN_HEADER`; an encrypted one with random bytes). A project with PINs but a plain
    database (PINs set before encryption at rest existed) is not encrypted."""
    root = Path(root)
    if not (root / KEYS_FILE).is_file():
        return False
    try:
        with open(root / DB_NAME, "rb") as fh:
            head = fh.read(len(PLAIN_HEADER))
    except OSError:
        return False
    return len(head) == len(PLAIN_HEADER) and head != PLAIN_HEADER


class StoreKeys:
    """The two keys the store uses, derived from the project key: one for SQLCipher, one for
    sealed files (two uses, two keys)."""

    def __init__(self, project_key: bytes) -> None:
        self.db = hmac.new(project_key, b"appliance at rest: sqlcipher v1", "sha256").digest()
        self.files = hmac.new(project_key, b"appliance at rest: files v1", "sha256").digest()

    @property
    def db_pragma(self) -> str:
        """The `PRAGMA key` that opens the database with this raw key (no SQLCipher KDF: the
        key is already random and 256 bits)."""
        return f"PRAGMA key = \"x'{self.db.hex()}'\""


# unlocked keys of this process -------------------------------------------------------------

_unlocked: dict[Path, bytes] = {}
_unlocked_lock = threading.Lock()
_asker: Callable[[Path], bytes] | None = None


def _where(root: Path) -> Path:
    return Path(root).resolve()


def remember(root: Path, key: bytes) -> None:
    """Keep a project's unlocked key for this process (the app's lock screen, the CLI's
    prompt), so its jobs and screens can open the project again."""
    with _unlocked_lock:
        _unlocked[_where(root)] = key


def forget(root: Path | None = None) -> None:
    """Drop one project's key (or every key) from this process's memory of unlocked keys."""
    with _unlocked_lock:
        if root is None:
            _unlocked.clear()
        else:
            _unlocked.pop(_where(root), None)


def is_unlocked(root: Path) -> bool:
    """Whether this process holds the unlocked key of project `root`."""
    with _unlocked_lock:
        return _where(root) in _unlocked


def set_asker(asker: Callable[[Path], bytes] | None) -> None:
    """How a locked project's key is asked for when none is remembered (the CLI installs
    APPLIANCE_PASSPHRASE-or-prompt; the app unlocks on its lock screen instead)."""
    global _asker
    _asker = asker


def key_for(root: Path) -> bytes:
    """The unlocked key of an encrypted project: remembered, else asked; one line when
    neither is possible."""
    with _unlocked_lock:
        key = _unlocked.get(_where(root))
    if key is not None:
        return key
    if _asker is None:
        raise ApplianceError(f"{root}: {LOCKED}")
    key = _asker(Path(root))
    remember(root, key)
    return key


def erase_keys(root: Path, why: str) -> bool:
    """Crypto-erase an encrypted project: delete every wrapped copy of its key (keys.json),
    leaving a note of why; its data can then never be read again, by anyone (what was synced
    is at the lab). False when the project is not encrypted (nothing to erase)."""
    root = Path(root)
    if not is_encrypted(root):
        return False
    atomic_write(root / ERASED, json.dumps({"erased": why}).encode())
    (root / KEYS_FILE).unlink()
    fsync_dir(root)
    forget(root)
    return True


def refuse_erased(root: Path) -> None:
    """One line for a project whose keys a revoke erased (instead of "not a database")."""
    note = Path(root) / ERASED
    if note.exists() and not (Path(root) / KEYS_FILE).exists():
        try:
            why = str(json.loads(note.read_text(encoding="utf-8"))["erased"])
        except (OSError, ValueError, KeyError, TypeError):
            why = "a revoke"
        raise ApplianceError(
            f"{root}: encrypted and its keys were erased ({why}); it cannot be opened "
            "(the lab holds what was synced)"
        )


# sealed originals --------------------------------------------------------------------------


def _context(path: Path) -> bytes:
    """What a sealed original is bound to: the name it is stored under."""
    name = path.name[: -len(".sealed")] if path.name.endswith(".sealed") else path.name
    return name.encode("utf-8")


def open_file(keys: StoreKeys | None, path: Path) -> BinaryIO:
    """The plain bytes of a stored original, as a seekable binary file."""
    if keys is None:
        return open(path, "rb")
    return SealedReader(path, keys.files, _context(path))  # type: ignore[return-value]


def store_file(keys: StoreKeys | None, source: Path, dest: Path) -> None:
    """Store `source` durably as the original `dest` (sealed when `keys` is given)."""
    if keys is None:
        from appliance.durable import atomic_copy

        atomic_copy(source, dest)
        return
    with open(source, "rb") as fh:
        seal_file(keys.files, fh, os.fstat(fh.fileno()).st_size, dest, _context(dest))


def file_size(keys: StoreKeys | None, path: Path) -> int:
    """The plain size of a stored original."""
    return sealed_size(path) if keys is not None else path.stat().st_size


def file_sha256(keys: StoreKeys | None, path: Path) -> str:
    """sha256 of a stored original's plain bytes (what names it); ApplianceError when a
    sealed one does not authenticate."""
    digest = hashlib.sha256()
    with open_file(keys, path) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# migration ---------------------------------------------------------------------------------


def _step(name: str) -> None:
    """Called after each durable step of the migration (tests kill the process here)."""


def _originals(root: Path) -> list[Path]:
    out = []
    for folder in SEALED_DIRS:
        base = root / folder
        if base.is_dir():
            out += [
                p
                for p in sorted(base.rglob("*"))
                if p.is_file() and not p.match(TEMP_GLOB) and not p.name.endswith(".sealed")
            ]
    return out


def _sealed_copies(root: Path) -> list[Path]:
    return [p for folder in SEALED_DIRS for p in sorted((root / folder).rglob("*.sealed"))]


def _db_is_plain(root: Path) -> bool:
    with open(root / DB_NAME, "rb") as fh:
        return fh.read(len(PLAIN_HEADER)) == PLAIN_HEADER


def recover(root: Path) -> str | None:
    """Finish or undo a migration a crash interrupted; returns what it did (None: nothing
    was under way). Runs without the key."""
    root = Path(root)
    if not (root / MARKER).exists():
        return None
    if _db_is_plain(root):  # the commit point was not passed: back to the plain project
        for path in _sealed_copies(root):
            path.unlink()
        (root / ENCRYPTING).unlink(missing_ok=True)
        (root / MARKER).unlink()
        fsync_dir(root)
        return "undid an interrupted encryption (the project is plain, as before)"
    for path in _sealed_copies(root):  # passed: finish replacing the plain originals
        replace_durably(path, path.with_name(path.name[: -len(".sealed")]))
    (root / ENCRYPTING).unlink(missing_ok=True)
    (root / MARKER).unlink()
    fsync_dir(root)
    return "finished an interrupted encryption"


def encrypt(root: Path, project_key: bytes) -> int:
    """Encrypt a plain project in place (the module docstring's protocol); returns how many
    originals were sealed. Nothing else may have the project open meanwhile."""
    from appliance.store import db as dbm

    root = Path(root)
    recover(root)
    if not _db_is_plain(root):
        raise ApplianceError(f"{root}: already encrypted at rest")
    dbm.require_sqlcipher()
    keys = StoreKeys(project_key)
    originals = _originals(root)
    for path in originals:
        if is_sealed(path):
            raise ApplianceError(f"{path}: already sealed in a plain project; nothing changed")
    atomic_write(root / MARKER, b'{"migration": "encrypt at rest"}\n')
    _step("marker")
    try:
        for path in originals:
            store_file(keys, path, path.with_name(path.name + ".sealed"))
            _step(f"sealed {path.name}")
        dbm.export_encrypted(root / DB_NAME, root / ENCRYPTING, keys.db_pragma)
        _step("exported")
        for extra in ("-wal", "-shm"):  # empty after the checkpoint; none may meet the new file
            (root / f"{DB_NAME}{extra}").unlink(missing_ok=True)
    except BaseException:
        recover(root)  # before the commit point: back to the plain project, as it was
        raise
    replace_durably(root / ENCRYPTING, root / DB_NAME)  # the commit point
    _step("committed")
    for path in originals:
        replace_durably(path.with_name(path.name + ".sealed"), path)
        _step(f"replaced {path.name}")
    (root / MARKER).unlink()
    fsync_dir(root)
    return len(originals)
