"""Files sealed with AES-256-GCM in chunks, read back through a seekable file object.

Why chunks: a slide is gigabytes that tiffslide reads region by region; sealing it as one
AEAD message would force decrypting all of it to read one tile. Here each 256 KiB chunk is its
own AEAD message, so a read decrypts only the chunks it touches (a few are kept decrypted, the
most recently used).

Layout: a header (`MAGIC`, chunk size, plain size, 8 random bytes that start every chunk's
nonce), then the chunks, each `ciphertext ‖ 16-byte tag`. Chunk `i` has nonce
`prefix ‖ i` (4 bytes, big-endian) and authenticates, besides its bytes, the whole header, the
file's context (the name it is stored under), `i` and whether it is the last chunk. So a chunk
moved to another place in the file, into another file, or a file cut short or renamed to
another original's name does not open. The plain size in the header is authenticated by every
chunk, so appending or dropping whole chunks fails too. Nonces never repeat under one key: the
prefix is random per file (64 bits) and a file is written once, never modified.
"""

from __future__ import annotations

import io
import secrets
import struct
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.durable import atomic_write
from appliance.errors import ApplianceError

__all__ = [
    "CHUNK",
    "MAGIC",
    "SealedReader",
    "is_sealed",
    "seal_file",
    "sealed_size",
]

MAGIC = b"APPSEAL1"
CHUNK = 256 * 1024
_HEADER = struct.Struct(">8sIQ8s")  # magic, chunk size, plain size, nonce prefix
_TAG = 16
_KEEP = 8  # decrypted chunks kept per reader (2 MiB): tile reads often revisit a chunk


def is_sealed(path: Path) -> bool:
    """Whether `path` starts like a sealed file (says nothing about its key)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _aad(header: bytes, context: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">QB", index, int(last)) + context


def seal_file(
    key: bytes, source: BinaryIO, size: int, dest: Path, context: bytes, chunk: int = CHUNK
) -> Path:
    """Seal `size` bytes read from `source` into `dest` durably (temporary file, fsync, rename:
    `appliance.durable.atomic_write`); `context` is the name the file is stored under."""
    prefix = secrets.token_bytes(8)
    header = _HEADER.pack(MAGIC, chunk, size, prefix)
    aead = AESGCM(key)
    count = max(1, -(-size // chunk))

    def write(out: BinaryIO) -> None:
        out.write(header)
        for index in range(count):
            plain = source.read(chunk if index < count - 1 else size - chunk * (count - 1))
            if len(plain) != min(chunk, size - chunk * index):
                raise ApplianceError(f"{dest}: source changed size while being sealed")
            nonce = prefix + struct.pack(">I", index)
            out.write(aead.encrypt(nonce, plain, _aad(header, context, index, index == count - 1)))

    return atomic_write(dest, write)


def sealed_size(path: Path) -> int:
    """The plain size of a sealed file, from its header (not authenticated until read)."""
    with open(path, "rb") as fh:
        header = fh.read(_HEADER.size)
    if len(header) != _HEADER.size or not header.startswith(MAGIC):
        raise ApplianceError(f"{path}: not a sealed file")
    return int(_HEADER.unpack(header)[2])


class SealedReader(io.RawIOBase):
    """A read-only, seekable view of the plain bytes of a sealed file.

    Any chunk that fails authentication raises `ApplianceError` naming the file (wrong key,
    changed bytes, a chunk from elsewhere). Reads from several threads are serialised by the
    callers that share a handle (tifffile locks its file handle).
    """

    def __init__(self, path: Path, key: bytes, context: bytes) -> None:
        super().__init__()
        self.path = Path(path)
        self._fh: BinaryIO = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        header = self._fh.read(_HEADER.size)
        if len(header) != _HEADER.size or not header.startswith(MAGIC):
            self._fh.close()
            raise ApplianceError(
                f"{self.path}: not a sealed file (a plain file in a project "
                "encrypted at rest: run `appliance check`)"
            )
        _magic, self.chunk, self.size, self._prefix = _HEADER.unpack(header)
        if self.chunk <= 0:
            self._fh.close()
            raise ApplianceError(f"{self.path}: damaged sealed-file header")
        self._header, self._context = header, context
        self._aead = AESGCM(key)
        self._count = max(1, -(-self.size // self.chunk))
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"{self.path}: negative seek position")
        self._pos = base + offset
        return self._pos

    def _sealed(self, index: int) -> tuple[bytes, bytes, bytes]:
        """Ciphertext, nonce and associated data of chunk `index`."""
        last = index == self._count - 1
        length = (self.size - self.chunk * index if last else self.chunk) + _TAG
        self._fh.seek(_HEADER.size + index * (self.chunk + _TAG))
        sealed = self._fh.read(length)
        nonce = self._prefix + struct.pack(">I", index)
        return sealed, nonce, _aad(self._header, self._context, index, last)

    def _refused(self, index: int) -> ApplianceError:
        return ApplianceError(
            f"{self.path}: changed, moved or sealed under another key (chunk {index})"
        )

    def _plain(self, index: int) -> bytes:
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        sealed, nonce, aad = self._sealed(index)
        try:
            plain = self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise self._refused(index) from exc
        self._cache[index] = plain
        if len(self._cache) > _KEEP:
            self._cache.popitem(last=False)
        return plain

    def _decrypt_into(self, index: int, target: memoryview) -> bool:
        """Decrypt a whole chunk straight into `target` (a big read: no cache, no copy);
        False when its ciphertext is not the chunk's full length (then `_plain` refuses it)."""
        sealed, nonce, aad = self._sealed(index)
        if len(sealed) != len(target) + _TAG:
            return False
        try:
            self._aead.decrypt_into(nonce, sealed, aad, target)
        except InvalidTag as exc:
            raise self._refused(index) from exc
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            index, offset = divmod(self._pos, self.chunk)
            whole = min(self.chunk, self.size - index * self.chunk)
            if (
                offset == 0
                and len(view) - done >= whole
                and index not in self._cache
                and self._decrypt_into(index, view[done : done + whole])
            ):
                n = whole
            else:
                plain = self._plain(index)
                n = min(len(view) - done, len(plain) - offset)
                view[done : done + n] = plain[offset : offset + n]
            done += n
            self._pos += n
        return done

    def readall(self) -> bytes:
        # decrypted straight into one buffer (big readers use `readinto` and skip the copy)
        out = bytearray(max(0, self.size - self._pos))
        n = self.readinto(out)
        return bytes(memoryview(out)[:n])

    def fileno(self) -> int:
        # tifffile and imageio ask for a size through fstat when a file has a descriptor;
        # the sealed file's descriptor would give the wrong size, so claim none
        raise OSError("a sealed file has no plain file descriptor")

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
            self._cache.clear()
        super().close()
