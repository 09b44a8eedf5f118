"""Bundle archives: a zip with `manifest.json` at the root, trusted only after verification.

Bundles travel on USB sticks and through a lab server, and other people's tools write and read
them, so the reader assumes nothing: it checks every entry's name and type, refuses anything
the manifest does not list, and streams every member through sha256 while counting the bytes
it actually decompresses (the zip headers are never believed). The writer applies the same
rules, so it cannot produce a bundle the reader would refuse. See docs/bundles.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import uuid
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn

from appliance import __version__
from appliance.durable import atomic_write
from appliance.errors import ApplianceError
from appliance.security.signing import (
    MAX_SIGNATURE_BYTES,
    SIGNATURE_NAME,
    SignatureProblem,
    SigningKey,
    Verdict,
    sign_manifest,
)
from appliance.security.trust import TrustPolicy

__all__ = [
    "CHUNK",
    "FORMAT_VERSIONS",
    "LIMITS",
    "MANIFEST_NAME",
    "BundleError",
    "BundleReader",
    "Fields",
    "Limits",
    "Member",
    "member_name_problem",
    "parse_manifest",
    "peek_format",
    "sign_bundle",
    "utc_timestamp",
    "write_bundle",
]

MANIFEST_NAME = "manifest.json"
RESERVED = (MANIFEST_NAME, SIGNATURE_NAME)  # never listed in the manifest
FORMAT_VERSIONS = {
    "training-job": 1,
    "model": 1,
    "controls": 1,
}  # newest version this code reads and writes
CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DRIVE = re.compile(r"[A-Za-z]:")
_ENVELOPE = ("format", "format_version", "id", "created", "producer", "members")
_WINDOWS_DIRECTORY = 0x10
_WINDOWS_REPARSE_POINT = 0x400  # Windows symlinks and junctions
_TYPE_NAMES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class Limits:
    """Caps that make a zip bomb stop early: enforced on bytes actually decompressed."""

    max_members: int
    max_total_bytes: int
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1 << 20  # small members may compress well; judge ratio above this
    max_manifest_bytes: int = 64 << 20


LIMITS = {
    "training-job": Limits(max_members=500_000, max_total_bytes=64 << 30),
    "model": Limits(max_members=1_000, max_total_bytes=4 << 30),
    "controls": Limits(max_members=20_000, max_total_bytes=8 << 30),
}


class BundleError(ApplianceError):
    """A refused bundle: one line naming the bundle, the member (when there is one) and why."""

    def __init__(self, bundle: str, problem: str, member: str | None = None) -> None:
        self.bundle, self.member = bundle, member
        self.problem = " ".join(problem.split())  # one line, whatever a library said
        where = f"bundle {bundle}" + (f", member {member!r}" if member is not None else "")
        super().__init__(f"{where}: {self.problem}")


@dataclass(frozen=True)
class Member:
    """One manifest entry: what the archive must hold under `path`."""

    path: str
    size: int
    sha256: str


class Fields:
    """Typed access to a JSON object whose failures name the bundle and the member."""

    def __init__(self, obj: object, bundle: str, member: str, where: str = "") -> None:
        self.bundle, self.member, self.where = bundle, member, where
        if not isinstance(obj, dict):
            self.fail(f"{where or 'document'} must be a JSON object, got {_json_type(obj)}")
        self.obj: dict[str, Any] = obj

    def fail(self, problem: str) -> NoReturn:
        """Raise a `BundleError` naming the bundle, the member and `problem`."""
        raise BundleError(self.bundle, problem, self.member)

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        """The value under `key`, which must have JSON type `kind` (bool is never a number)."""
        name = f"{self.where}.{key}" if self.where else key
        if key not in self.obj:
            if optional:
                return None
            self.fail(f"required key {name!r} is missing")
        value = self.obj[key]
        wanted = kind if isinstance(kind, tuple) else (kind,)
        accepted = (*wanted, int) if float in wanted else wanted
        if (isinstance(value, bool) and bool not in wanted) or not isinstance(value, accepted):
            words = " or ".join(_TYPE_WORDS[k] for k in wanted)
            self.fail(f"key {name!r} must be {words}, got {_json_type(value)}")
        return value

    def nested(self, key: str) -> Fields:
        """The object under `key`, wrapped the same way."""
        where = f"{self.where}.{key}" if self.where else key
        return Fields(self.get(key, dict), self.bundle, self.member, where)


_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    list: "a list",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return "a boolean" if isinstance(value, bool) else _TYPE_WORDS.get(type(value), "unknown")


def member_name_problem(name: str) -> str | None:
    """Why `name` may not be a bundle member (None when it may): no way out of the folder."""
    if not name:
        return "empty member name"
    if "\\" in name:
        return "backslash in member name (Windows path separator)"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE.match(name):
        return "drive letter in member name"
    if ":" in name:
        return "colon in member name (drive or alternate data stream)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "control character in member name"
    if len(name.encode("utf-8", "surrogatepass")) > 1024:
        return "member name longer than 1024 bytes"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return "path traversal ('..', '.' or empty segment)" if part else "empty path segment"
        if len(part.encode("utf-8", "surrogatepass")) > 255:
            return "path segment longer than 255 bytes"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "member name is not valid UTF-8"
    return None


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this zip entry is not a plain file we could read (links, devices, encryption...)."""
    if info.is_dir():
        return "directory entries are not allowed"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.create_system == 3 and kind and kind != stat.S_IFREG:
        return f"entry is {_TYPE_NAMES.get(kind, f'a special file (mode {mode:o})')}"
    if info.external_attr & _WINDOWS_REPARSE_POINT:
        return "entry is a Windows reparse point (link or junction)"
    if info.external_attr & _WINDOWS_DIRECTORY:
        return "directory entries are not allowed"
    if info.flag_bits & 0x1:
        return "encrypted members are not allowed"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"compression method {info.compress_type} not allowed (only stored or deflated)"
    return None


def parse_manifest(raw: bytes, bundle: str, expected: str) -> tuple[dict[str, Any], list[Member]]:
    """Validate the envelope; refuse a newer format_version before reading the rest."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(bundle, f"not valid UTF-8 JSON ({exc})", MANIFEST_NAME) from exc
    f = Fields(doc, bundle, MANIFEST_NAME, "manifest")
    fmt = f.get("format", str)
    if fmt != expected:
        known = " or ".join(repr(k) for k in FORMAT_VERSIONS)
        kind = "a different" if fmt in FORMAT_VERSIONS else f"an unknown (not {known})"
        f.fail(f"format {fmt!r} is {kind} bundle format; expected {expected!r}")
    version = f.get("format_version", int)
    supported = FORMAT_VERSIONS[fmt]
    if version > supported:
        f.fail(
            f"format_version {version} is newer than this appliance reads ({fmt} version "
            f"{supported}); update the appliance"
        )
    if version < 1:
        f.fail(f"format_version {version} is not a valid version (versions start at 1)")
    try:
        uuid.UUID(f.get("id", str))
    except ValueError:
        f.fail(f"id {f.obj['id']!r} is not a UUID")
    try:
        datetime.fromisoformat(f.get("created", str).replace("Z", "+00:00"))
    except ValueError:
        f.fail(f"created {f.obj['created']!r} is not an ISO 8601 time")
    producer = f.nested("producer")
    producer.get("name", str)
    producer.get("version", str)
    members = [_member(entry, i, f) for i, entry in enumerate(f.get("members", list))]
    _refuse_duplicates([m.path for m in members], bundle, "listed twice in the manifest")
    return doc, members


def _member(entry: object, index: int, parent: Fields) -> Member:
    f = Fields(entry, parent.bundle, MANIFEST_NAME, f"members[{index}]")
    path, size, digest = f.get("path", str), f.get("size", int), f.get("sha256", str)
    problem = member_name_problem(path)
    if problem or path in RESERVED:
        raise BundleError(parent.bundle, f"listed in the manifest: {problem or 'reserved'}", path)
    if size < 0:
        f.fail(f"{f.where}.size is negative")
    if not _SHA256.fullmatch(digest):
        f.fail(f"{f.where}.sha256 must be 64 lowercase hex digits")
    return Member(path, size, digest)


def _refuse_duplicates(names: list[str], bundle: str, why: str) -> None:
    """Exact duplicates, and names that collide on case-insensitive file systems (Windows)."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in seen:
            other = seen[key]
            detail = why if other == name else f"{why} (differs only in case from {other!r})"
            raise BundleError(bundle, f"duplicate name: {detail}", name)
        seen[key] = name


class BundleReader:
    """An open bundle whose structure and manifest are checked; members verified as read.

    Use as a context manager. Every read streams the member, stops as soon as it produces more
    than the manifest's size (so no header is trusted), refuses an implausible compression
    ratio, and compares size and sha256 at the end. With a `trust` policy the manifest's
    signature is checked right after the manifest is read, before any other member is
    decompressed or parsed; `verdict` then says who signed (None: unsigned, allowed).
    """

    def __init__(
        self,
        path: Path | str,
        fmt: str,
        limits: Limits | None = None,
        trust: TrustPolicy | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.limits = limits or LIMITS[fmt]
        self.verdict: Verdict | None = None
        if not self.path.is_file():
            self.fail("cannot be read: no such file")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            self.fail(f"not a readable zip archive (truncated or corrupt: {exc})")
        try:
            self._infos = self._check_entries()
            raw = bytearray()
            self._stream(self._infos[MANIFEST_NAME], raw.extend, self.limits.max_manifest_bytes)
            if trust is not None:
                self._check_signature(trust, bytes(raw))
            self.manifest_bytes = bytes(raw)
            self.manifest, members = parse_manifest(self.manifest_bytes, self.name, fmt)
            self.members = {m.path: m for m in members}
            self._check_listing()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def fail(self, problem: str, member: str | None = None) -> NoReturn:
        raise BundleError(self.name, problem, member)

    def _check_signature(self, trust: TrustPolicy, manifest: bytes) -> None:
        info = self._infos.get(SIGNATURE_NAME)
        signature = None
        if info is not None:
            raw = bytearray()
            self._stream(info, raw.extend, MAX_SIGNATURE_BYTES)
            signature = bytes(raw)
        try:
            self.verdict = trust.check(signature, manifest)
        except SignatureProblem as exc:
            self.fail(str(exc), SIGNATURE_NAME if info is not None else None)

    def fields(self, obj: object, member: str = MANIFEST_NAME, where: str = "") -> Fields:
        """Typed access to the JSON object `obj` of `member`, for error messages that name it."""
        return Fields(obj, self.name, member, where)

    def _check_entries(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_members + 1:
            self.fail(f"{len(infos)} entries exceed the cap of {self.limits.max_members} members")
        for info in infos:
            problem = member_name_problem(info.filename) or _entry_problem(info)
            if problem:
                self.fail(problem, info.filename)
        _refuse_duplicates([i.filename for i in infos], self.name, "appears twice in the archive")
        size = self.path.stat().st_size
        ordered = sorted(infos, key=lambda i: i.header_offset)
        for info, following in zip(ordered, [*ordered[1:], None], strict=True):
            end = following.header_offset if following else size
            if info.header_offset + 30 + info.compress_size > end:
                self.fail("data overlaps the next entry or the end of the archive", info.filename)
        by_name = {i.filename: i for i in infos}
        if MANIFEST_NAME not in by_name:
            self.fail(f"no {MANIFEST_NAME} at the root of the archive")
        return by_name

    def _check_listing(self) -> None:
        for name in self._infos:
            if name not in RESERVED and name not in self.members:
                self.fail("not listed in the manifest", name)
        for member in self.members.values():
            info = self._infos.get(member.path)
            if info is None:
                self.fail("listed in the manifest but missing from the archive", member.path)
            if info.file_size != member.size:
                self.fail(
                    f"size mismatch (manifest {member.size} bytes, archive header "
                    f"{info.file_size})",
                    member.path,
                )
        if len(self.members) > self.limits.max_members:
            self.fail(f"{len(self.members)} members exceed the cap of {self.limits.max_members}")
        total = sum(m.size for m in self.members.values())
        if total > self.limits.max_total_bytes:
            self.fail(f"members total {total} bytes, over the cap of {self.limits.max_total_bytes}")

    def _stream(self, info: zipfile.ZipInfo, sink: Callable[[bytes], object], cap: int) -> int:
        """Feed at most `cap` decompressed bytes to `sink`, refusing the member if it holds more.

        The count is of bytes actually produced, so a header that understates a member's size or
        compression cannot make the reader decompress more than the manifest allows.
        """
        name, count = info.filename, 0
        compressed = max(info.compress_size, 1)
        try:
            with self._zip.open(info) as fh:
                while chunk := fh.read(min(CHUNK, cap + 1 - count)):
                    count += len(chunk)
                    if count > cap:
                        self.fail(f"holds more than {cap} bytes (stopped reading there)", name)
                    if (
                        count > self.limits.ratio_floor_bytes
                        and count / compressed > self.limits.max_ratio
                    ):
                        self.fail(
                            f"compression ratio over {self.limits.max_ratio:.0f}:1 "
                            "(zip bomb guard)",
                            name,
                        )
                    sink(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            self.fail(f"corrupt data ({exc})", name)
        return count

    def _member(self, path: str) -> Member:
        member = self.members.get(path)
        if member is None:
            self.fail("referenced but not listed in the manifest", path)
        return member

    def copy(self, path: str, sink: Callable[[bytes], object]) -> None:
        """Stream member `path` into `sink`; size and sha256 are checked at the end.

        A caller that keeps what it received must discard it when this raises.
        """
        member = self._member(path)
        digest = hashlib.sha256()

        def hashing(chunk: bytes) -> None:
            digest.update(chunk)
            sink(chunk)

        count = self._stream(self._infos[path], hashing, member.size)
        if count != member.size:
            self.fail(f"size mismatch (manifest {member.size} bytes, content {count})", path)
        if digest.hexdigest() != member.sha256:
            self.fail(
                f"sha256 mismatch (manifest {member.sha256[:12]}…, "
                f"content {digest.hexdigest()[:12]}…)",
                path,
            )

    def read_bytes(self, path: str) -> bytes:
        """The verified content of member `path` (for members that fit in memory)."""
        out = bytearray()
        self.copy(path, out.extend)
        return bytes(out)

    def read_json(self, path: str) -> Fields:
        """A verified JSON object member, wrapped for typed access."""
        try:
            doc = json.loads(self.read_bytes(path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.fail(f"not valid UTF-8 JSON ({exc})", path)
        return Fields(doc, self.name, path)

    def verify_all(self, skip: Collection[str] = ()) -> None:
        """Read every member (but `skip`, which the caller reads itself) once, so a bad bundle
        is refused before any of it is used."""
        for path in self.members:
            if path not in skip:
                self.copy(path, _discard)


def _discard(_chunk: bytes) -> None:
    """Sink for verification passes that only need the hash."""


Content = bytes | Path
Source = Content | IO[bytes]  # what an entry is written from; a stream is read once


def _measure(content: Content, limits: Limits) -> tuple[int, str, int]:
    """Size, sha256 and the zip compression to use: stored when deflate gains little or when
    the ratio would trip the reader's zip-bomb guard (an all-zero image, for example)."""
    digest, deflate, size, packed = hashlib.sha256(), zlib.compressobj(6, zlib.DEFLATED, -15), 0, 0
    for chunk in _chunks(content):
        size += len(chunk)
        digest.update(chunk)
        packed += len(deflate.compress(chunk))
    packed += len(deflate.flush())
    too_good = size > limits.ratio_floor_bytes and size / max(packed, 1) > limits.max_ratio / 2
    method = zipfile.ZIP_STORED if too_good or packed >= 0.95 * size else zipfile.ZIP_DEFLATED
    return size, digest.hexdigest(), method


def _chunks(content: Source) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield content
        return
    if not isinstance(content, Path):
        while chunk := content.read(CHUNK):
            yield chunk
        return
    with open(content, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def utc_timestamp() -> str:
    """The current UTC time as ISO 8601 seconds with a Z, as manifests record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_bundle(
    out: Path | str,
    fmt: str,
    body: Mapping[str, Any],
    members: Mapping[str, Content],
    *,
    producer: tuple[str, str] = ("appliance", __version__),
    bundle_id: str | None = None,
    sign: SigningKey | None = None,
) -> str:
    """Write a bundle atomically (temporary file, fsync, rename) and return its id.

    `body` holds the format's own manifest keys; `members` maps member paths to bytes or files.
    Names and caps follow the reader's rules, so what this writes, the reader accepts. With
    `sign`, the manifest's signature is written as `manifest.sig`.
    """
    out = Path(out)
    limits = LIMITS[fmt]
    clash = [k for k in body if k in _ENVELOPE]
    if clash:
        raise ApplianceError(f"bundle {out}: manifest key {clash[0]!r} is reserved")
    for name in members:
        problem = member_name_problem(name) or ("reserved" if name in RESERVED else None)
        if problem:
            raise BundleError(str(out), f"cannot be written: {problem}", name)
    _refuse_duplicates(list(members), str(out), "given twice")
    if len(members) > limits.max_members:
        raise BundleError(
            str(out), f"{len(members)} members exceed the cap of {limits.max_members}"
        )
    try:
        measured = {name: _measure(content, limits) for name, content in members.items()}
    except OSError as exc:
        raise BundleError(str(out), f"cannot read a member's source ({exc})") from exc
    total = sum(size for size, _, _ in measured.values())
    if total > limits.max_total_bytes:
        raise BundleError(str(out), f"{total} bytes exceed the cap of {limits.max_total_bytes}")
    bundle_id = bundle_id or str(uuid.uuid4())
    manifest = {
        "format": fmt,
        "format_version": FORMAT_VERSIONS[fmt],
        "id": bundle_id,
        "created": utc_timestamp(),
        "producer": {"name": producer[0], "version": producer[1]},
        **body,
        "members": [
            {"path": name, "size": size, "sha256": sha} for name, (size, sha, _) in measured.items()
        ],
    }

    def write(fh: BinaryIO) -> None:
        with zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
            raw = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
            _write_entry(zf, MANIFEST_NAME, raw, zipfile.ZIP_DEFLATED, len(raw))
            if sign is not None:
                sig = sign_manifest(sign, raw)
                _write_entry(zf, SIGNATURE_NAME, sig, zipfile.ZIP_DEFLATED, len(sig))
            for name, content in members.items():
                size, sha, method = measured[name]
                if _write_entry(zf, name, content, method, size) != sha:
                    raise BundleError(str(out), "source changed while writing", name)

    try:
        atomic_write(out, write)
    except OSError as exc:
        raise ApplianceError(f"bundle {out}: cannot be written ({exc.strerror or exc})") from exc
    return bundle_id


# Every member carries the same stamp (zip's earliest date), so a bundle's bytes depend on its
# members alone: the lab re-signing the same bundle a second later keeps its sha256, and the
# same model pushed twice is listed once. When it was made is in the manifest's `created`.
ENTRY_TIME = (1980, 1, 1, 0, 0, 0)


def _write_entry(zf: zipfile.ZipFile, name: str, content: Source, method: int, size: int) -> str:
    """A regular file entry (mode 0644 on unix), streamed so large images never sit in memory.

    Returns the sha256 of what was written, so a source file changed since it was measured is
    caught instead of shipping a bundle whose manifest lies."""
    digest = hashlib.sha256()
    info = zipfile.ZipInfo(name, date_time=ENTRY_TIME)
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = method
    info.file_size = size
    with zf.open(info, "w", force_zip64=size > 0x7FFF0000) as dst:
        for chunk in _chunks(content):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def peek_format(path: Path) -> str | None:
    """The `format` a zip's manifest claims ("model", "training-job"), or None when the file
    is no readable bundle. Only for sorting files in a chooser: installing still checks all."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(MANIFEST_NAME)
            if info.file_size > LIMITS["model"].max_manifest_bytes:
                return None
            doc = json.loads(zf.read(info).decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    return fmt if isinstance(fmt, str) else None


def sign_bundle(path: Path | str, key: SigningKey, out: Path | str | None = None) -> str:
    """Sign an existing bundle (replacing any signature it had) into `out` (default: in place).

    The bundle is fully verified first, so a key never vouches for a broken bundle; members
    are copied unchanged. Returns the format of the bundle."""
    path, target = Path(path), Path(out or path)
    fmt = peek_format(path)
    if fmt not in FORMAT_VERSIONS:
        raise BundleError(str(path), "is not a bundle this appliance can sign")
    with BundleReader(path, fmt) as reader:
        reader.verify_all()
        manifest = reader.manifest_bytes
        sig = sign_manifest(key, manifest)

        def write(fh: BinaryIO) -> None:
            with zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
                _write_entry(zf, MANIFEST_NAME, manifest, zipfile.ZIP_DEFLATED, len(manifest))
                _write_entry(zf, SIGNATURE_NAME, sig, zipfile.ZIP_DEFLATED, len(sig))
                for name, member in reader.members.items():
                    info = reader._infos[name]
                    with reader._zip.open(info) as src:
                        if _write_entry(zf, name, src, info.compress_type, member.size) != (
                            member.sha256
                        ):
                            raise BundleError(str(path), "changed while being signed", name)

        try:
            atomic_write(target, write)
        except OSError as exc:
            raise BundleError(str(target), f"cannot be written ({exc.strerror or exc})") from exc
    return fmt
