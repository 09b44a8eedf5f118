"""The background job API: results, callbacks, failures, cancellation and superseding."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from appliance.assist.jobs import CANCELLED, DONE, FAILED, Cancelled, JobContext, JobRunner


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    r = JobRunner()
    yield r
    r.shutdown()


def test_result_progress_and_callback(runner: JobRunner) -> None:
    seen = []

    def work(ctx: JobContext) -> int:
        ctx.progress(0.5)
        return 42

    job = runner.submit(work, on_done=seen.append)
    assert job.result(timeout=60) == 42
    assert job.status == DONE and job.progress == 1.0 and job.done()
    assert seen == [job]


def test_failure_is_delivered_not_lost(runner: JobRunner) -> None:
    def boom(_ctx: JobContext) -> None:
        raise ValueError("bad pixels")

    job = runner.submit(boom)
    with pytest.raises(ValueError, match="bad pixels"):
        job.result(timeout=60)
    assert job.status == FAILED and isinstance(job.error, ValueError)


def test_newer_request_for_same_key_supersedes_running_one(runner: JobRunner) -> None:
    started, release = threading.Event(), threading.Event()
    delivered = []

    def slow(ctx: JobContext) -> str:
        started.set()
        release.wait(60)
        ctx.check()
        return "old"

    old = runner.submit(slow, key=("prelabel", 1), on_done=delivered.append)
    assert started.wait(60)  # running, not still queued: the case this test is about
    new = runner.submit(lambda _ctx: "new", key=("prelabel", 1), on_done=delivered.append)
    release.set()
    assert new.result(timeout=60) == "new"
    assert old.status == CANCELLED and old.cancelled
    with pytest.raises(Cancelled):
        old.result(timeout=0)
    assert delivered == [new]  # the superseded job's result never reaches the UI


def test_cancel_queued_job_never_runs(runner: JobRunner) -> None:
    gate = threading.Event()
    ran = []
    runner.submit(lambda _ctx: gate.wait(60))
    queued = runner.submit(lambda _ctx: ran.append(1))
    queued.cancel()
    gate.set()
    with pytest.raises(Cancelled):
        queued.result(timeout=60)
    assert ran == [] and queued.status == CANCELLED


def test_result_timeout_while_running(runner: JobRunner) -> None:
    gate = threading.Event()
    job = runner.submit(lambda _ctx: gate.wait(60))
    with pytest.raises(TimeoutError):
        job.result(timeout=0.01)
    gate.set()
    job.result(timeout=60)


def test_shutdown_cancels_unfinished_jobs() -> None:
    r = JobRunner()
    gate = threading.Event()
    running = r.submit(lambda ctx: (gate.wait(60), ctx.check()))
    queued = r.submit(lambda _ctx: "never")

    def open_gate_once_cancelled() -> None:
        # not on a timer: a test thread held up longer than the timer let the job end first
        while not running.cancelled:
            time.sleep(0.001)
        gate.set()

    threading.Thread(target=open_gate_once_cancelled, daemon=True).start()
    r.shutdown(wait=True)
    assert running.status == CANCELLED and queued.status == CANCELLED
