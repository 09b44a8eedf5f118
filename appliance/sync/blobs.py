"""Blobs between a device and the lab server: which the server lacks, resumable uploads (the
core of the tus protocol: create, HEAD for the offset, PATCH from it) and verified downloads.

The upload's address is handed to `save_url` as soon as the server made it, so a device that
loses power mid-upload asks the server for the offset after restarting and sends only the rest.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from appliance.durable import file_sha256
from appliance.sync.http import LabError, LabHttp

__all__ = ["BlobChannel"]

TUS = {"Tus-Resumable": "1.0.0"}
RESTARTS = 3  # the server may lose an unfinished upload (expired, wiped): start over this often


class BlobChannel:
    def __init__(self, http: LabHttp, base: str, chunk: int = 8 << 20) -> None:
        self.http, self.base, self.chunk = http, base, max(1, chunk)

    def missing(self, hashes: list[str]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(hashes), 1000):
            reply = self.http.request(
                "POST", f"{self.base}/blobs/missing", json_body={"hashes": hashes[i : i + 1000]}
            ).json()
            out += reply["missing"]
        return out

    def download(self, sha: str, dest: Path) -> Path:
        """Fetch blob `sha` into `dest`, streamed to disk (never whole in memory) and resumed
        from what `dest` already holds (a download a failed run left); returns `dest` once
        its bytes hash to `sha` and are on disk."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a partial file that cannot be completed is started over once
            with open(dest, "ab") as fh:
                self.http.request(
                    "GET", f"{self.base}/blobs/{sha}", into=fh, ok=(200, 206, 416)
                )  # 416: the file already holds every byte (or more: then the hash fails)
                os.fsync(fh.fileno())
            if file_sha256(dest) == sha:
                return dest
            dest.unlink()
        raise LabError(f"lab server sent blob {sha} with other content")

    def upload(
        self,
        sha: str,
        path: Path,
        load_url: Callable[[str], str | None] = lambda _sha: None,
        save_url: Callable[[str, str | None], None] = lambda _sha, _url: None,
        kind: str | None = None,
        opener: Callable[[], BinaryIO] | None = None,
    ) -> int:
        """Send `path` (whose content hashes to `sha`) unless done; returns its size.
        `kind="slide"` announces a slide file, which the lab admits up to its slide limit
        (larger than its limit for other blobs); the project quota holds either way.

        `opener` reads the plain bytes instead of `path` (a sealed original of an encrypted
        project: `Project.open_original`; the lab receives and hashes the plain file)."""
        self._opener: Callable[[], BinaryIO] = opener or (lambda: path.open("rb"))
        with self._opener() as fh:
            size = fh.seek(0, os.SEEK_END)
        resumable = size > self.chunk  # a one-chunk blob simply starts over: nothing to store
        url = load_url(sha) if resumable else None
        for _ in range(RESTARTS + 1):
            offset = self._offset(url) if url else None
            if url is None or offset is None:
                url, offset = self._create(sha, path, size, kind)
                if offset >= size:
                    return size  # sent whole with the creation, verified and kept
                if resumable:
                    save_url(sha, url)
            done = self._send(sha, path, url, offset, size)
            if resumable:
                save_url(sha, None)
            if done:
                return size
            url = None  # the server lost the upload: start over
        raise LabError(f"upload of blob {sha} kept being lost by the lab server")

    def _create(self, sha: str, path: Path, size: int, kind: str | None) -> tuple[str, int]:
        """Create the upload with its first chunk in the same request (tus creation-with-
        upload); returns its address and the offset the server reached."""
        with self._opener() as fh:
            first = fh.read(self.chunk)
        metadata = "sha256 " + base64.b64encode(sha.encode()).decode()
        if kind is not None:
            metadata += ",kind " + base64.b64encode(kind.encode()).decode()
        reply = self.http.request(
            "POST",
            f"{self.base}/uploads",
            body=first,
            headers={
                **TUS,
                "Upload-Length": str(size),
                "Upload-Metadata": metadata,
                "Content-Type": "application/offset+octet-stream",
            },
            ok=(201,),
            need=("location", "upload-offset"),
        )
        url = reply.headers["location"]
        if not url.startswith(self.base + "/uploads/"):
            raise LabError(f"lab server gave an unexpected upload address {url!r}")
        return url, int(reply.headers["upload-offset"])

    def _send(self, sha: str, path: Path, url: str, offset: int, size: int) -> bool:
        """PATCH from `offset` to the end; False when the server no longer knows the upload."""
        finished = False
        with self._opener() as fh:
            for _ in range(4 * (size // self.chunk) + 16):  # bounded: each step moves or re-syncs
                if offset >= size and finished:
                    break
                fh.seek(offset)
                reply = self.http.request(
                    "PATCH",
                    url,
                    body=fh.read(self.chunk),
                    headers={
                        **TUS,
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                    },
                    ok=(204, 404, 409),
                    need=("upload-offset",),
                )
                if reply.status == 204:
                    offset = int(reply.headers["upload-offset"])
                    finished = offset >= size
                    continue
                if reply.status == 404:  # finished by an attempt whose reply was lost, or lost
                    return not self.missing([sha])
                current = self._offset(url)  # 409: another attempt moved it; ask where it is
                if current is None:
                    return not self.missing([sha])
                offset = current
            else:
                raise LabError(f"upload of blob {sha} made no progress")
        # The final PATCH (an empty one when all bytes were already there, e.g. the server
        # died between receiving and keeping them) answers 204 only once the blob is verified
        # and kept.
        return True

    def _offset(self, url: str) -> int | None:
        reply = self.http.request("HEAD", url, headers=TUS, ok=(200, 404), need=("upload-offset",))
        return int(reply.headers["upload-offset"]) if reply.status == 200 else None
