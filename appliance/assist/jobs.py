"""Background jobs for model work, so the UI thread never waits on inference.

The UI submits a function, then either polls `job.done()` / `job.status` from its clock or
passes `on_done`, which runs on the worker thread (a Kivy caller hops back to its own thread,
e.g. with `Clock.schedule_once`). Jobs sharing a `key` (say `("prelabel", image_id)`) supersede
each other: submitting a new one cancels the queued or running older one, whose result is then
never delivered. Cancellation is cooperative: the function calls `ctx.check()` between steps
(the runtime does so between tiles).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Cancelled", "Job", "JobContext", "JobRunner"]

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class Cancelled(Exception):
    """Raised inside a job by `JobContext.check()` once the job was cancelled or superseded."""


class JobContext:
    """What a job function sees: a cancellation check and a progress setter."""

    def __init__(self, job: Job) -> None:
        self._job = job

    def check(self) -> None:
        """Stop here (raise `Cancelled`) if the job is no longer wanted."""
        if self._job._cancel.is_set():
            raise Cancelled

    def progress(self, fraction: float) -> None:
        """Record progress in [0, 1] for the UI to show."""
        self._job.progress = min(1.0, max(0.0, float(fraction)))


class Job:
    """One submitted unit of work; all fields are safe to read from any thread."""

    def __init__(self, key: Hashable | None, on_done: Callable[[Job], None] | None) -> None:
        self.key = key
        self.status = QUEUED
        self.progress = 0.0
        self.error: BaseException | None = None
        self._result: Any = None
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._on_done = on_done

    def cancel(self) -> None:
        """Ask the job to stop; a queued job never starts, a running one stops at its next check."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """True once `cancel()` was called (the job may still be finishing its step)."""
        return self._cancel.is_set()

    def done(self) -> bool:
        """True once the job finished, failed or was cancelled."""
        return self._finished.is_set()

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value; re-raises its error; `Cancelled` if it was cancelled."""
        if not self._finished.wait(timeout):
            raise TimeoutError("job still running")
        if self.status == CANCELLED:
            raise Cancelled
        if self.error is not None:
            raise self.error
        return self._result

    def _run(self, fn: Callable[[JobContext], Any]) -> None:
        try:
            if self._cancel.is_set():
                raise Cancelled
            self.status = RUNNING
            result = fn(JobContext(self))
            if self._cancel.is_set():
                raise Cancelled
            self._result, self.status, self.progress = result, DONE, 1.0
        except Cancelled:
            self.status = CANCELLED
        except Exception as exc:  # delivered to the caller through result()/error
            self.error, self.status = exc, FAILED
        self._finished.set()
        if self._on_done is not None and self.status != CANCELLED:
            try:
                self._on_done(self)
            except Exception:
                log.exception("job callback failed")


class JobRunner:
    """A small worker pool (one worker by default: a tablet has few cores)."""

    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="assist")
        self._lock = threading.Lock()
        self._latest: dict[Hashable, Job] = {}
        self._pending: set[Job] = set()

    def submit(
        self,
        fn: Callable[[JobContext], Any],
        key: Hashable | None = None,
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Queue `fn(ctx)`; an older job with the same `key` is cancelled."""
        job = Job(key, on_done)
        with self._lock:
            self._pending.add(job)
            if key is not None:
                older = self._latest.get(key)
                if older is not None:
                    older.cancel()
                self._latest[key] = job
        self._pool.submit(self._finish, job, fn)
        return job

    def _finish(self, job: Job, fn: Callable[[JobContext], Any]) -> None:
        job._run(fn)
        with self._lock:
            self._pending.discard(job)
            if job.key is not None and self._latest.get(job.key) is job:
                del self._latest[job.key]

    def shutdown(self, wait: bool = True) -> None:
        """Cancel every unfinished job and stop the workers (cancelled jobs still finish)."""
        with self._lock:
            for job in self._pending:
                job.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=False)
