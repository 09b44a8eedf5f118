"""Blob storage for the lab server: content-addressed files and resumable partial uploads.

`BlobStore` is the seam: the server only calls these methods, so an S3-compatible store can
implement them (partial uploads as multipart uploads, `commit` as complete-and-copy under the
hash). `FileBlobStore` keeps everything in a folder: `blobs/ab/<sha256>` and
`uploads/<id>.part`. A partial upload's offset is the size of its file, which each PATCH makes
durable (fsync) before it answers, so a server killed mid-upload resumes where it said it was.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class HashMismatch(Exception):
    """The uploaded bytes do not hash to the announced sha256."""


class BlobStore(Protocol):
    def has(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def read(self, sha256: str, chunk: int = 1 << 20, start: int = 0) -> Iterator[bytes]:
        """The blob's bytes from offset `start` on, in pieces (a resumed download)."""

    def path(self, sha256: str) -> Path | None:
        """A local file for readers that need one (bundle verification), when there is one."""

    def put(self, sha256: str, data: bytes) -> None:
        """Keep `data`, already verified to hash to `sha256`, durably under that name."""

    def offset(self, upload_id: str) -> int: ...

    def append(self, upload_id: str, offset: int, data: bytes) -> int:
        """Write `data` at `offset` (which must equal the current offset); the new offset."""

    def commit(self, upload_id: str, sha256: str) -> int:
        """Verify the finished upload hashes to `sha256` and keep it under that name; its size.
        Raises HashMismatch (and discards the upload) otherwise."""

    def discard(self, upload_id: str) -> None: ...


class FileBlobStore:
    """Blobs in a local folder (the default lab server on a laptop)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)

    def _blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def _part(self, upload_id: str) -> Path:
        return self.root / "uploads" / f"{upload_id}.part"

    def has(self, sha256: str) -> bool:
        return self._blob(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self._blob(sha256).stat().st_size

    def path(self, sha256: str) -> Path | None:
        p = self._blob(sha256)
        return p if p.is_file() else None

    def read(self, sha256: str, chunk: int = 1 << 20, start: int = 0) -> Iterator[bytes]:
        with open(self._blob(sha256), "rb") as fh:
            fh.seek(start)
            while data := fh.read(chunk):
                yield data

    def put(self, sha256: str, data: bytes) -> None:
        final = self._blob(sha256)
        final.parent.mkdir(exist_ok=True)
        tmp = self.root / "uploads" / f"put-{os.getpid()}-{threading.get_ident()}-{sha256}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    def offset(self, upload_id: str) -> int:
        part = self._part(upload_id)
        return part.stat().st_size if part.exists() else 0

    def append(self, upload_id: str, offset: int, data: bytes) -> int:
        part = self._part(upload_id)
        with open(part, "ab") as fh:
            if fh.tell() != offset:
                raise ValueError(f"offset {offset} does not match stored {fh.tell()}")
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            return fh.tell()

    def commit(self, upload_id: str, sha256: str) -> int:
        part = self._part(upload_id)
        digest = hashlib.sha256()
        with open(part, "rb") as fh:
            while data := fh.read(1 << 20):
                digest.update(data)
        if digest.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise HashMismatch(sha256)
        final = self._blob(sha256)
        final.parent.mkdir(exist_ok=True)
        size = part.stat().st_size
        os.replace(part, final)
        _fsync_dir(final.parent)
        return size

    def discard(self, upload_id: str) -> None:
        self._part(upload_id).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
