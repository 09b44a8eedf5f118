"""One sync of a project with the lab server: push, pull, then new model bundles.

Safe to stop at any instant (power loss, a cut cable) and to run again:
- operations leave the outbox only after the server acknowledged them, and the server keeps
  the first copy of an id, so a resend after a lost acknowledgement is harmless;
- blobs are uploaded before the operations that need them, resumably: the upload's address is
  stored on the tablet, and after a restart the tablet asks the server for the offset (HEAD)
  and continues from there (PATCH);
- pulled operations are applied and the checkpoint advanced in one transaction.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from appliance.errors import ApplianceError
from appliance.security.tls import split_code
from appliance.store import Project, sync_log
from appliance.store.db import utcnow
from appliance.store.oplog import Operation
from appliance.sync.blobs import BlobChannel
from appliance.sync.credentials import (
    forget_proposed_token,
    pinned_connection,
    project_credentials,
    proposed_token,
    remember_enrollment,
    revoked,
)
from appliance.sync.http import LabError, LabHttp, Retry, Revoked

__all__ = [
    "SyncReport",
    "Syncer",
    "enroll",
    "push_job",
    "status_line",
    "sync_project",
    "sync_status",
]

PUSH_BATCH = 500
PULL_PAGE = 500
CHUNK = 8 << 20
UPLOAD_WORKERS = 4


@dataclass
class SyncReport:
    pushed_ops: int = 0
    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    pulled_ops: int = 0
    downloaded_blobs: int = 0
    models_installed: int = 0
    models_refused: list[str] = field(default_factory=list)  # one line each
    ops_refused: list[str] = field(default_factory=list)  # pulled, unusable: one line each
    seconds: float = 0.0

    def line(self) -> str:
        refused = f"; refused {'; '.join(self.models_refused)}" if self.models_refused else ""
        if self.ops_refused:
            refused += (
                f"; refused {len(self.ops_refused)} operations this tablet cannot use, kept "
                f"aside (first: {self.ops_refused[0]})"
            )
        return (
            f"pushed {self.pushed_ops} operations and {self.uploaded_blobs} blobs "
            f"({self.uploaded_bytes / 1e6:.1f} MB), pulled {self.pulled_ops} operations and "
            f"{self.downloaded_blobs} blobs, installed {self.models_installed} model bundles "
            f"in {self.seconds:.2f} s{refused}"
        )


def enroll(
    project: Project,
    server: str,
    code: str,
    name: str | None = None,
    retry: Retry | None = None,
    *,
    insecure: bool = False,
) -> str:
    """Exchange a one-time code for this tablet's token and remember server and token.

    The tablet proposes its own token, kept until the enrollment is remembered, so a retry
    after a lost reply (same code, same token), even in a later run, gets the same device
    from the server instead of a burnt code. The code's CA pin
    (`CODE#PIN`) is checked before the code is sent; the token goes to the appliance home,
    never into the project folder (docs/security.md)."""
    http = pinned_connection(server, code, retry, insecure)
    proposed = proposed_token(server, code)
    try:
        reply = http.request(
            "POST",
            "/api/v1/enroll",
            json_body={"code": split_code(code)[0], "name": name, "token": proposed},
            ok=(200,),
        ).json()
    finally:
        http.close()
    if reply.get("role") != "tablet":
        raise ApplianceError(f"code {code!r} enrolls a {reply.get('role')}, not a tablet")
    before = sync_log.get_state(project, "lab_project")
    if before is not None and before != reply["project"]:
        raise ApplianceError(
            f"{project.root} syncs with lab project {before}; the code is for "
            f"{reply['project']} (one tablet project belongs to one lab project)"
        )
    remember_enrollment(project, http, reply)
    forget_proposed_token(server, code)
    sync_log.set_state(
        project,
        server=server.rstrip("/"),
        lab_project=str(reply["project"]),
        checkpoint="0",
    )
    return str(reply["project"])


def sync_status(project: Project) -> dict[str, Any]:
    """What the Home screen shows: pending operations, last success, last error."""
    return {
        "server": sync_log.get_state(project, "server"),
        "pending": sync_log.pending_count(project),
        "last_success": sync_log.get_state(project, "last_success"),
        "last_error": sync_log.get_state(project, "last_error"),
        "refused": len(sync_log.refusals(project)),
    }


def status_line(project: Project) -> str:
    """One line for the Home screen: pending work, last success, last error."""
    s = sync_status(project)
    if not s["server"]:
        return f"sync: not enrolled · {s['pending']} changes waiting"
    last = s["last_success"][:16].replace("T", " ") if s["last_success"] else "never"
    line = f"sync: {s['pending']} changes waiting · last synced {last} UTC"
    if s["refused"]:
        line += f" · {s['refused']} refused operations"
    if s["last_error"]:
        line += f" · last error: {s['last_error'].split(' ', 1)[-1][:80]}"
    return line


class Syncer:
    """Runs one sync of `project` over `http` (already carrying the device token)."""

    def __init__(
        self,
        project: Project,
        http: LabHttp,
        lab_project: str,
        *,
        chunk: int = CHUNK,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.project, self.http = project, http
        self.base = f"/api/v1/projects/{quote(lab_project, safe='')}"
        self.progress = progress or (lambda _msg: None)
        self.report = SyncReport()
        self.blobs = BlobChannel(http, self.base, chunk)

    def run(self, install_models: bool = True) -> SyncReport:
        start = time.perf_counter()
        try:
            sync_log.backfill(self.project)
            self.push()
            self.pull()
            if install_models:
                self.models()
        except ApplianceError as exc:
            sync_log.set_state(self.project, last_error=f"{utcnow()} {exc}")
            raise
        self.report.seconds = time.perf_counter() - start
        sync_log.set_state(self.project, last_success=utcnow(), last_error=None)
        return self.report

    # push ----------------------------------------------------------------------------------

    def push(self) -> None:
        hashes = sync_log.pending_blobs(self.project)
        if hashes:
            self.upload_all(self.blobs.missing(hashes))
        while batch := sync_log.pending(self.project, PUSH_BATCH):
            self.progress(f"pushing {len(batch)} operations")
            reply = self.http.request(
                "POST", f"{self.base}/ops", json_body={"ops": [op.to_wire() for op in batch]}
            ).json()
            acked = {a["uid"] for a in reply["accepted"]}
            if acked != {op.uid for op in batch}:
                raise LabError("lab server acknowledged other operations than were sent")
            sync_log.mark_sent(self.project, acked)
            self.report.pushed_ops += len(batch)

    def upload_all(self, hashes: list[str]) -> None:
        """Resumable uploads of this tablet's blobs, several at once (each on its own
        connection), so per-blob round trips and the server's fsyncs overlap."""
        paths = {}
        slides = sync_log.slide_blobs(self.project)
        for sha in hashes:
            path = sync_log.blob_file(self.project, sha)
            if path is None:
                raise ApplianceError(f"{self.project.root}: blob {sha} is missing on this tablet")
            paths[sha] = path
        lock, local = threading.Lock(), threading.local()
        opened: list[LabHttp] = []

        def load(h: str) -> str | None:
            with lock:
                return sync_log.upload_url(self.project, h)

        def save(h: str, url: str | None) -> None:
            with lock:
                sync_log.remember_upload(self.project, h, url)

        def one(sha: str) -> int:
            if not hasattr(local, "channel"):
                http = self.http.clone()
                with lock:
                    opened.append(http)
                local.channel = BlobChannel(http, self.base, self.blobs.chunk)
            kind = "slide" if sha in slides else None
            path = paths[sha]
            opener = lambda: self.project.open_original(path)  # noqa: E731 (plain bytes)
            try:
                return int(local.channel.upload(sha, path, load, save, kind, opener))
            except Revoked:
                raise
            except LabError as exc:  # e.g. a slide over the lab's limit: say which file
                raise LabError(f"{paths[sha]}: {exc}") from exc

        try:
            with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
                for n, size in enumerate(pool.map(one, hashes), 1):
                    self.progress(f"uploaded blob {n}/{len(hashes)}")
                    self.report.uploaded_blobs += 1
                    self.report.uploaded_bytes += size
        finally:
            for http in opened:
                http.close()

    # pull ----------------------------------------------------------------------------------

    def pull(self) -> None:
        self.retry_refused()
        after = int(sync_log.get_state(self.project, "checkpoint") or 0)
        for _ in range(1_000_000):  # bounded: one page per iteration
            reply = self.http.request(
                "GET", f"{self.base}/ops?after={after}&limit={PULL_PAGE}"
            ).json()
            ops = self.parse(reply["ops"])
            staged: dict[str, Path] = {}
            for sha in sync_log.missing_blobs(
                self.project, ops
            ):  # a failed run's stay for the next
                self.progress(f"downloading blob {sha[:12]}")
                staged[sha] = self.blobs.download(sha, self.downloads / f"{sha}.part")
                self.report.downloaded_blobs += 1
            last = int(reply["last"])
            new, refused = sync_log.apply_remote(self.project, ops, last, staged)
            for path in staged.values():  # what a refused operation brought
                path.unlink(missing_ok=True)
            self.report.pulled_ops += new
            self.report.ops_refused += refused
            after = last
            if not reply["more"]:
                break

    @property
    def downloads(self) -> Path:
        """Partial downloads live here between runs, so the next run resumes them."""
        return self.project.root / ".sync-downloads"

    def parse(self, items: list[Any]) -> list[Operation]:
        """The page's operations; one that cannot even be parsed is refused and kept aside."""
        ops = []
        for item in items:
            try:
                ops.append(Operation.from_wire(item))
            except ApplianceError as exc:
                key = f"seq{item.get('seq')}" if isinstance(item, dict) else "unknown"
                sync_log.record_refusal(self.project, key, str(exc), item)
                self.report.ops_refused.append(str(exc))
        return ops

    def retry_refused(self) -> None:
        """Operations refused before for what this tablet lacked then (a class added since, a
        parent that arrived) are tried again; those naming a blob were refused for its content
        and stay refused."""
        again = [op for op, _ in sync_log.refusals(self.project) if op and op.blob is None]
        if again:
            new, _still = sync_log.apply_remote(self.project, again, 0)
            self.report.pulled_ops += new

    # models --------------------------------------------------------------------------------

    def models(self) -> None:
        from appliance.bundles.archive import BundleError
        from appliance.bundles.install import install_model_bundle
        from appliance.store.models import list_models

        reply = self.http.request("GET", f"{self.base}/models").json()
        have = {m.bundle_id for m in list_models(self.project)}
        for model in reply["models"]:
            sha = str(model["sha256"])
            refused_key = f"refused_bundle:{sha}"
            if model["bundle_id"] in have or sync_log.get_state(self.project, refused_key):
                continue
            self.progress(f"downloading model bundle {model['bundle_id']}")
            tmp = self.blobs.download(sha, self.downloads / f"{sha}.zip")
            try:
                install_model_bundle(self.project, tmp)  # verifies everything first
            except BundleError as exc:
                # This tablet will never accept this bundle (verification, not a full disk):
                # say so once and do not let it fail every later sync.
                self.report.models_refused.append(f"model bundle {model['bundle_id']}: {exc}")
                sync_log.set_state(self.project, **{refused_key: str(exc)})
                continue
            finally:
                tmp.unlink(missing_ok=True)
            self.report.models_installed += 1

    def push_job(self, bundle: Path) -> str:
        """Upload a training-job bundle for the workstation (it is read and checked first)."""
        from appliance.bundles.training_job import read_training_job

        job = read_training_job(bundle)
        sha = hashlib.sha256(Path(bundle).read_bytes()).hexdigest()
        if self.blobs.missing([sha]):
            self.blobs.upload(sha, Path(bundle))
        self.http.request("POST", f"{self.base}/jobs", json_body={"sha256": sha})
        return job.id


@contextmanager
def _syncer(
    project: Project,
    retry: Retry | None,
    chunk: int = CHUNK,
    progress: Callable[[str], None] | None = None,
    timeout: float = 30.0,
) -> Iterator[Syncer]:
    creds = project_credentials(project)
    if creds is None:
        raise ApplianceError(
            f"{project.root}: not enrolled with a lab server on this tablet; run "
            "`appliance sync DIR --server URL --code CODE` once"
        )
    http = LabHttp(
        creds.server,
        creds.token,
        retry=retry,
        timeout=timeout,
        ca=creds.ca,
        insecure=creds.insecure,
    )
    try:
        yield Syncer(project, http, creds.lab_project, chunk=chunk, progress=progress)
    except Revoked:
        revoked(project, creds)
        raise
    finally:
        http.close()


def sync_project(
    project: Project,
    *,
    retry: Retry | None = None,
    chunk: int = CHUNK,
    install_models: bool = True,
    progress: Callable[[str], None] | None = None,
    timeout: float = 30.0,
) -> SyncReport:
    """Sync an enrolled project with its lab server (see the module docstring)."""
    with _syncer(project, retry, chunk, progress, timeout) as syncer:
        return syncer.run(install_models)


def push_job(project: Project, bundle: Path, retry: Retry | None = None) -> str:
    """Send a training-job bundle to the lab server for the workstation; returns its id."""
    with _syncer(project, retry) as syncer:
        return syncer.push_job(bundle)
