"""Driving the app's own annotate presenter from a test: jobs run in order on the test's thread
(as the Kivy clock delivers them), a view that only records messages, and what an annotator
can see of the open image."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from appliance.assist.jobs import Cancelled
from appliance.labels import Label
from appliance.session import gallery_data
from appliance.session.presenter import AnnotatePresenter
from appliance.store import Project


class _Job:
    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.cancelled = False
        self._fn = fn
        self._ran = False
        self._result: Any = None

    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> Any:
        """Run the job once (the queue, or a caller waiting for it, whichever comes first)."""
        if not self._ran:
            self._result, self._ran = self._fn(_Ctx()), True
        return self._result

    def result(self, _timeout: float | None = None) -> Any:
        """As `Job.result`: the presenter waits for a background save before the next."""
        return self.run()


class _Ctx:
    def check(self) -> None:
        pass

    def progress(self, _fraction: float) -> None:
        pass


class QueuedJobs:
    """`run_job` for the presenter: jobs wait in a queue until `settle` runs them in order."""

    def __init__(self) -> None:
        self.queue: deque[tuple[_Job, Callable, Callable, Callable | None]] = deque()

    def __call__(
        self,
        fn: Callable[[Any], Any],
        done: Callable[[Any], None],
        key: Hashable = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> _Job:
        job = _Job(fn)
        self.queue.append((job, fn, done, failed))
        return job

    def settle(self) -> None:
        while self.queue:
            job, _fn, done, failed = self.queue.popleft()
            if job.cancelled:
                continue
            try:
                result = job.run()
            except Cancelled:
                continue
            except Exception as exc:
                if failed is None:
                    raise
                failed(exc)
                continue
            done(result)


class View:
    """Ignores redraws; keeps the one-line messages the annotator would read."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("show_") or name == "clear_error":
            return lambda *args, **kw: None
        raise AttributeError(name)

    def notify(self, text: str, error: bool = False) -> None:
        self.messages.append(text)


def open_presenter(project: Project, annotator: str) -> tuple[AnnotatePresenter, QueuedJobs]:
    jobs = QueuedJobs()
    presenter = AnnotatePresenter(project, annotator, View(), jobs)
    presenter.start()
    jobs.settle()
    return presenter, jobs


@dataclass(frozen=True)
class Seen:
    """What the annotator can see or reach while an image is open."""

    image_id: int
    name: str
    sequence: str | None
    frame: int | None
    position: int
    total: int
    prefilled: bool
    offer_method: str | None
    offer_classes: frozenset[int]
    offer: Label | None
    gallery_size: int
    gallery_state: str | None  # the open image's tile; None: no tile
    gallery_versions: int | None
    conflict: bool  # a conflict marker on the tile or the status line


def seen(presenter: AnnotatePresenter) -> Seen:
    work, status = presenter.work, presenter.status()
    assert work is not None and status is not None
    tiles = {t.image_id: t for t in gallery_data.items(presenter.project, presenter.annotator)}
    tile = tiles.get(work.image_id)
    offer = presenter.offer
    return Seen(
        image_id=work.image_id,
        name=work.record.name,
        sequence=work.record.sequence,
        frame=work.record.frame,
        position=status.position,
        total=status.total,
        prefilled=work.parent_id is not None,
        offer_method=None if offer is None else offer.method,
        offer_classes=frozenset()
        if offer is None
        else frozenset(offer.label.class_of(i) for i in offer.label.ids()),
        offer=None if offer is None else offer.label,
        gallery_size=len(tiles),
        gallery_state=None if tile is None else tile.state,
        gallery_versions=None if tile is None else tile.versions,
        conflict=bool(status.conflict) or (tile is not None and tile.conflict),
    )


def save_and_go_on(presenter: AnnotatePresenter, jobs: QueuedJobs) -> None:
    """Save & next, then past the review (inspection, suggestions) to the next image."""
    presenter.save_and_next()
    jobs.settle()
    while presenter.review is not None:
        presenter.review_done()
        jobs.settle()
