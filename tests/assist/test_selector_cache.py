"""The selector's caches fill in a background job: incremental, with progress, cancellable, and
an unreadable image does not stop the rest; flags resolve every name before changing any."""

from __future__ import annotations

import pytest

from appliance.assist import features
from appliance.assist.jobs import Cancelled, Job, JobContext, JobRunner
from appliance.assist.selector_cache import flag, refresh
from appliance.errors import ApplianceError
from appliance.store import Project, cache
from appliance.store.models import active_model


def test_refresh_fills_both_caches_once_and_skips_unreadable_images(with_models: Project) -> None:
    bad = with_models.images()[2]
    bad.path.write_bytes(bad.path.read_bytes()[:100])
    runner = JobRunner()
    try:
        job = runner.submit(lambda ctx: refresh(with_models, ctx))
        done = job.result(timeout=60)
        assert job.progress == 1.0
        model_id = active_model(with_models, "prelabel").id
        assert (done.features, done.uncertainty, done.model_id) == (3, 3, model_id)
        assert features.missing(with_models) == [bad.id]
        assert len(cache.uncertainty_rows(with_models, model_id)) == 3
        again = runner.submit(lambda ctx: refresh(with_models, ctx)).result(timeout=60)
        assert again.features == 0  # incremental: only the unreadable image is retried
    finally:
        runner.shutdown()


def test_cancel_stops_between_images_and_keeps_what_was_committed(with_models: Project) -> None:
    """Cancelled once the feature step reports progress: the scores are never computed."""
    runner = JobRunner()
    jobs: list[Job] = []

    def work(ctx: JobContext) -> object:
        ctx_progress = ctx.progress

        def progress(fraction: float) -> None:
            ctx_progress(fraction)
            jobs[0].cancel()

        ctx.progress = progress  # type: ignore[method-assign]
        try:
            return refresh(with_models, ctx)
        finally:
            ctx.progress = ctx_progress  # type: ignore[method-assign]

    try:
        jobs.append(runner.submit(work))
        with pytest.raises(Cancelled):
            jobs[0].result(timeout=60)
    finally:
        runner.shutdown()
    assert features.missing(with_models) == []  # the committed batch stays
    model_id = active_model(with_models, "prelabel").id
    assert cache.uncertainty_rows(with_models, model_id) == []


def test_flag_resolves_every_image_first(seq_project: Project) -> None:
    names = [r.name for r in seq_project.images()]
    with pytest.raises(ApplianceError):
        flag(seq_project, [names[0], "no-such-image.tif"])
    assert not any(r.cherry_picked for r in seq_project.images())
    ids = flag(seq_project, names[:2])
    assert [r.cherry_picked for r in seq_project.images()] == [True, True, False, False]
    flag(seq_project, [str(ids[0])], on=False)
    assert [r.cherry_picked for r in seq_project.images()][:2] == [False, True]
