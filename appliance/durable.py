"""The one durable file write: temporary file, fsync, rename, directory fsync.

Every file the appliance writes in place of another (stored originals, bundles, staged models,
tablet preferences) goes through `atomic_write`, so after a crash or power cut at any point the
target holds either its old content or its complete new content, never a mix, and a rename
that returned is on disk (the directory entry is fsynced too). A kill between the steps leaves
at most a hidden `.NAME.<hex>.tmp` beside the target; `TEMP_GLOB` finds those for
`appliance check --repair`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TEMP_GLOB",
    "atomic_copy",
    "atomic_write",
    "file_sha256",
    "fsync_dir",
    "holds",
    "replace_durably",
    "temp_path",
]

TEMP_GLOB = ".*.tmp"
CHUNK = 1 << 20


def temp_path(path: Path) -> Path:
    """A unique hidden temporary name in the target's folder (same file system: atomic rename)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside `path` durable (POSIX; Windows has no directory fds)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, content: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write `content` (bytes, or a function that writes to the open file) to `path` durably.

    Steps: write a temporary file beside `path`, fsync it, rename it over `path`, fsync the
    folder. Any failure (including `OSError` for a full disk) removes the temporary file and is
    raised unchanged, with `path` untouched.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            if isinstance(content, bytes):
                fh.write(content)
            else:
                content(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_copy(src: Path, dst: Path) -> Path:
    """Copy `src` to `dst` durably, streamed in 1 MiB chunks (never the whole file in memory)."""

    def copy(out: BinaryIO) -> None:
        with open(src, "rb") as fh:
            while chunk := fh.read(CHUNK):
                out.write(chunk)

    return atomic_write(dst, copy)


def replace_durably(src: Path, dst: Path) -> None:
    """Rename an already fsynced file into place and make the rename durable."""
    os.replace(src, dst)
    fsync_dir(dst.parent)


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed (the hash that names stored originals and models)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def holds(path: Path, sha256: str) -> bool:
    """Whether `path` is a readable file whose content hashes to `sha256` (a stored
    original or download that can be trusted as it is)."""
    try:
        return path.is_file() and file_sha256(path) == sha256
    except OSError:
        return False
