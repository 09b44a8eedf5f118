"""The annotate flow without Kivy: which image is open, what the machine offers, what is saved.

`AnnotatePresenter` owns the three interacting state machines that used to live in the
annotate screen, so that they can be tested without a window (as `ImageWork` is):

- **offer**: a pre-label computed in the background. It is drawn as outlines *over* the
  expert's own label and never replaces it: the pen keeps drawing while it is shown (or still
  being computed), and only *Accept* takes it — merged so that every pixel the expert drew
  keeps the expert's object. *Reject* drops it; *Cancel* stops a pre-label still running.
- **compare**: a before/after of a machine result (upgrade, post-processing suggestion).
  *Accept* stores it; *Reject*, a pen landing on the image or *Save & next* put it aside.
- **review**: post-assistance after *Save & next* (inspection warnings and suggestions); the
  next image opens when there is nothing to report or when the expert taps *Next image*.

Images open through background jobs (decode + display pre-processing never run on the UI
thread), and while the expert works the selector's next choice is decoded and pre-labeled in
the background, so *Save & next* usually shows the next image with its pre-label at once.

The object list (`appliance.session.objects`) is built here too: `objects()` gives its rows,
`select_object` a row's box to centre the view on, and `delete_object` / `reclass_object` edit
one object as one step of the same undo stack as the pen's. Point and box objects have rows
too (`point:<index>`, `box:<index>`); `delete_row` / `reclass_row` edit any row by its key.

What the screen draws is one explicit state: `panel()` returns a `PanelState` whose `Phase`
says which single thing the assistance panel shows (opening an image, a pre-label being
computed or on offer, an upgrade running, the label being checked, the check's result, plain
drawing, all done), decided here in one place, so a screen never re-derives it from the
fields. The view (`AnnotateView`) is told what changed and renders `panel()` and `status()`;
the screen turns touches into presenter calls. Other screens hook in through the same calls:
`open_image(id)` to jump to an image, `on_opened`/`on_saved` listeners to react to the flow.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np

from appliance import settings
from appliance.assist.jobs import Job, JobContext
from appliance.editing import EditSession, Rect, areas
from appliance.errors import ApplianceError
from appliance.labels import Label, object_centres
from appliance.metrics import POINT_RADIUS, match_points
from appliance.session import assistant
from appliance.session.objects import ObjectRow, mark_index, object_box, object_rows
from appliance.session.resume import ViewState, remember_class, remembered_class
from appliance.session.workflow import (
    ImageData,
    ImageWork,
    PendingSave,
    pending_draft,
    write_draft,
)
from appliance.store import classes as class_store
from appliance.store.models import active_model as installed_model
from appliance.store.project import LabelVersion, Project
from appliance.supervision import config as supervision_config
from appliance.supervision.blind import labeled_count, start_version, visible_conflict
from appliance.supervision.controls import note_offer
from appliance.supervision.serving import Queue
from appliance.supervision.summary import feedback

__all__ = [
    "AnnotatePresenter",
    "AnnotateView",
    "Compare",
    "Offer",
    "PanelState",
    "Phase",
    "RunJob",
    "Status",
    "merge_under",
]

PREREVIEW_DELAY = 0.6  # seconds the pen rests before the label as drawn is checked
# a second Save & next sooner than this after the check's result appeared is the same double
# tap, not a decision: the result (warnings, suggestions) must be seen before moving on
REVIEW_GLANCE = 0.8
MARK_MARGIN = 12  # image px around a selected point or box that the view centres on


class RunJob(Protocol):
    """Runs `fn(ctx)` off the UI thread; `done(result)` / `failed(error)` back on it."""

    def __call__(
        self,
        fn: Callable[[JobContext], Any],
        done: Callable[[Any], None],
        key: Hashable = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> Job: ...


class AnnotateView(Protocol):
    """What the presenter asks of a screen; each call says what changed, the view redraws it."""

    def show_work(self, keep_view: bool) -> None:
        """A new image (or a new display of it) is open; `keep_view`: keep zoom and pan."""

    def show_label(self, rect: Rect | None) -> None:
        """The edited label changed in `rect` (None: everywhere)."""

    def show_layers(self) -> None:
        """The offer outline or the compare preview changed."""

    def show_panel(self) -> None:
        """The assistance panel changed (offer, running pre-label, review, all done)."""

    def show_status(self) -> None:
        """The status line changed (object count, saved state)."""

    def notify(self, text: str, error: bool = False) -> None:
        """A one-line message for the expert."""

    def clear_error(self) -> None:
        """The problem an error message was about is solved: hide the message."""


@dataclass(frozen=True)
class Offer:
    """A pre-label on offer: drawn as outlines until accepted. `areas`: its objects' areas,
    counted in the background job that made it (the object list's suggested rows, and the
    label's areas once accepted, then cost the UI thread no count of 2048² pixels)."""

    method: str
    label: Label
    areas: dict[int, int] | None = field(default=None, compare=False)

    @classmethod
    def counted(cls, method: str, label: Label) -> Offer:
        """An offer with its areas counted (call it off the UI thread)."""
        return cls(method, label, areas(label.instances))


@dataclass(frozen=True)
class Compare:
    """A machine result shown before/after, waiting for Accept or Reject."""

    title: str
    before: Label
    after: Label
    source: str  # the version source stored on Accept: "upgrade" or "postprocess"
    # the edit session's revision `before` was taken at: a label changed since makes the
    # result stale, and Accept must not overwrite the newer label with it
    revision: int | None = None


class Phase(Enum):
    """The one thing the assistance panel shows, in the order `AnnotatePresenter.panel`
    decides it (the first that holds wins)."""

    CLOSED = "closed"  # no image and nothing to say (before start, after leaving)
    ALL_DONE = "all done"  # the selector has nothing left: offer the export
    LOADING = "loading"  # an image is being opened in the background
    PRELABELING = "prelabeling"  # a pre-label is computed; the pen keeps drawing
    OFFER = "offer"  # a pre-label outlined: Accept all / Accept and edit / Reject
    UPGRADING = "upgrading"  # the upgrade model runs on the drawing as it was
    REVIEWING = "reviewing"  # the saved label is being checked (post-assistance)
    REVIEW = "review"  # the check's warnings and suggestions, Next image
    DRAWING = "drawing"  # nothing from the machine: how to draw


@dataclass(frozen=True)
class PanelState:
    """Everything the assistance panel and its buttons show, decided by the presenter."""

    phase: Phase
    loading: int | None = None  # LOADING: the image being opened
    offer: Offer | None = None  # OFFER
    review: assistant.Review | None = None  # REVIEW
    compare: Compare | None = None  # a before/after beside any phase (its own bar)
    can_upgrade: bool = False  # Upgrade is tappable (an image is open, no upgrade running)
    conflict: int = 0  # versions from different tablets competing for the open image (0: none)


@dataclass(frozen=True)
class Status:
    """Everything the status line shows."""

    name: str
    position: int  # this image's place in the expert's progress, 1-based
    total: int
    objects: int
    suggested: int  # objects of a pre-label on offer (not yet accepted)
    saved: bool
    seconds: float
    done_this_session: int
    conflict: int = 0  # versions from different tablets competing for this image (0: none)
    points: int = 0  # point objects of the label (cells marked by a pen tap)
    boxes: int = 0  # box objects of the label
    saving: bool = False  # a version is being stored in the background
    has_version: bool = True  # a version of this image's label is stored (by anyone visible)

    @property
    def saved_state(self) -> str:
        """The words of the status line: an image never saved is not "saved" (issue 25);
        Accept and edit stores in the background ("saving")."""
        if self.saved:
            return "saved" if self.has_version else "not saved"
        return "saving" if self.saving else "unsaved"


@dataclass(frozen=True)
class _Prefetched:
    image_id: int
    data: ImageData | None
    offer: Offer | None
    error: str | None = None


def merge_under(drawn: Label, machine: Label) -> Label:
    """`machine`'s objects added where the expert drew nothing: no drawn pixel changes owner,
    and no proposed point or box lands on a cell the expert already marked (its centre within
    `POINT_RADIUS` of a drawn object's)."""
    instances = drawn.instances.copy()
    free = (machine.instances > 0) & (drawn.instances == 0)
    base = int(drawn.instances.max(initial=0))
    instances[free] = machine.instances[free] + base
    classes = {int(i): drawn.class_of(int(i)) for i in np.unique(drawn.instances) if i}
    for i in np.unique(machine.instances[free]):
        classes[int(i) + base] = machine.class_of(int(i))
    marked = match_points(
        object_centres(drawn.objects), object_centres(machine.objects), POINT_RADIUS
    )
    taken = {j for _, j in marked.pairs}
    proposed = (o for j, o in enumerate(machine.objects) if j not in taken)
    return Label(instances, classes, (*drawn.objects, *proposed))


class AnnotatePresenter:
    """The annotate flow of one project for one annotator; see the module doc."""

    def __init__(
        self,
        project: Project,
        annotator: str,
        view: AnnotateView,
        run_job: RunJob,
        clock: Callable[[], float] = time.monotonic,
        run_write: RunJob | None = None,
    ) -> None:
        self.project, self.annotator, self.view = project, annotator, view
        self._submit, self._clock = run_job, clock
        # stores a version off the UI thread; one worker, so versions are stored in order
        self._write = run_write or run_job
        self._saving: tuple[Job, ImageWork, PendingSave] | None = None  # in the background
        self._after_save: Callable[[], None] | None = None  # once that save is stored
        self._drafting: Job | None = None  # the last crash draft given to the writer
        self.closed = False  # left (Home, another project): late job results are dropped
        self.selector = Queue(project, annotator)  # the selector's choices with hidden controls
        self.prelabeler = assistant.PrelabelChooser()
        self.work: ImageWork | None = None
        self.loading: int | None = None  # image id being opened in the background
        classes = project.classes()
        # the class this annotator chose last time (issue 25: it was lost on quit)
        remembered = remembered_class(project, annotator, classes)
        self.active_class = remembered if remembered is not None else min(classes, default=1)
        self.visited: list[int] = []
        self.skipped: set[int] = set()
        self.failed: set[int] = set()
        self.done_this_session = 0
        self.all_done = False
        self.offer: Offer | None = None
        self.conflict: list[LabelVersion] = []  # competing versions of the open image
        self.prelabel_job: Job | None = None
        self.compare: Compare | None = None
        self.upgrade_job: Job | None = None  # the upgrade model running on the drawing
        self.selected_object: str | None = None  # an object list row's key
        self.review: assistant.Review | None = None
        self.reviewing = False  # a review job is running
        self.reviewed_revision: int | None = None
        self._review_shown_at = float("-inf")  # clock time the check's result appeared
        self._prefetched: _Prefetched | None = None
        self._prefetching: int | None = None  # image id of the prefetch job in flight
        self.prefetch = True  # off only to measure what prefetching saves (bench/ui_flow.py)
        self._prereviewed: tuple[int, int, assistant.Review] | None = None
        self._total = len(project.images())
        self.on_opened: list[Callable[[ImageWork], None]] = []
        self.on_saved: list[Callable[[ImageWork, int, str], None]] = []

    def _run_job(
        self,
        fn: Callable[[JobContext], Any],
        done: Callable[[Any], None],
        key: Hashable = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> Job:
        """Submit a job whose result is dropped once this presenter was left."""

        def deliver(result: Any) -> None:
            if not self.closed:
                done(result)

        def fail(exc: BaseException) -> None:
            if self.closed:
                return
            if failed is None:
                raise exc
            failed(exc)

        return self._submit(fn, deliver, key, fail)

    # ----- opening images ------------------------------------------------------------------
    def start(self) -> None:
        """First entry: the crash draft's image if any, else the selector's next choice."""
        draft = pending_draft(self.project)
        if draft is not None:
            self.view.notify("Unsaved strokes from last time were recovered")
            self.open_image(int(draft["image_id"]))
        else:
            self.open_next()

    def resume(self) -> None:
        """Back from Settings or Models: the same image, undo stack, class, zoom and pan;
        new settings apply (a changed display pre-processing re-renders the image)."""
        self.selector = Queue(self.project, self.annotator, session=self.selector)
        if self.work is not None and self.work.refresh_display():
            self.view.show_work(keep_view=True)
        self.view.show_panel()
        self.view.show_status()

    def _excluded(self) -> set[int]:
        current = self.work.image_id if self.work else self.loading
        return self.skipped | self.failed | ({current} if current is not None else set())

    def next_choice(self) -> int | None:
        """The queue's next image (not skipped, failed or open), without taking it: the
        prefetch peeks, `open_next` takes, and both see the same image."""
        return self.selector.peek(exclude=self._excluded())

    def open_next(self) -> None:
        if self._saving is not None:  # Accept all's store still running: open it once stored
            self._after_save = self.open_next  # (never waiting for it on the UI thread)
            return
        image_id = self.selector.next(exclude=self._excluded())
        if image_id is None:
            self._close()
            self.all_done = True
            self.view.show_work(keep_view=False)
            self.view.show_panel()
            return
        self.open_image(image_id)

    def open_image(self, image_id: int, remember: bool = True) -> None:
        """Open an image: at once when it was prefetched, else decoded in the background."""
        self.settle_save()
        self._close()
        self.all_done = False
        if remember and (not self.visited or self.visited[-1] != image_id):
            self.visited.append(image_id)
        ready = self._prefetched
        if ready is not None and ready.image_id == image_id and ready.error is None:
            self._prefetched = None
            self._show(image_id, ready.data, ready.offer, prefetched=True)
            return
        self.loading = image_id
        # Decoded here even when a prefetch of it is in flight: a prefetch can be superseded
        # and never report back, and whichever job answers first opens the image.
        project = self.project
        self.view.show_panel()
        self._run_job(
            lambda _ctx: ImageData.load(project, image_id),
            lambda data: self._show(image_id, data, None, prefetched=False),
            "open",
            lambda exc: self._failed(image_id, exc),
        )

    def _failed(self, image_id: int, exc: BaseException) -> None:
        if self.loading != image_id:
            return
        self.loading = None
        if not isinstance(exc, ApplianceError):
            raise exc
        self.failed.add(image_id)
        if self.visited and self.visited[-1] == image_id:
            self.visited.pop()
        self.view.notify(f"Skipped an image that cannot be shown: {exc}", error=True)
        self.open_next()

    def _show(
        self, image_id: int, data: ImageData | None, offer: Offer | None, prefetched: bool
    ) -> None:
        if not prefetched and self.loading != image_id:
            return  # the expert went elsewhere meanwhile
        self.loading = None
        try:
            self.work = ImageWork(
                self.project, image_id, self.annotator, self.active_class, self._clock, data=data
            )
        except ApplianceError as exc:
            self.loading = image_id
            self._failed(image_id, exc)
            return
        self.reviewed_revision = None
        self.conflict = visible_conflict(self.project, image_id, self.annotator)
        self.view.show_work(keep_view=False)
        if self.work.parent_id is None and not self.work.recovered:
            if offer is not None or prefetched:
                self._set_offer(offer)
            else:
                self._start_prelabel()
        self.view.show_panel()
        self.view.show_status()
        for listener in self.on_opened:
            listener(self.work)
        self._prefetch()

    def _close(self) -> None:
        """Forget the open image's machine state (the caller has saved what must be saved)."""
        for job in (self.prelabel_job, self.upgrade_job):
            if job is not None:
                job.cancel()
        self.work, self.offer, self.prelabel_job, self.compare = None, None, None, None
        self.upgrade_job = None
        self.selected_object = None
        self.review, self.reviewing = None, False
        self.view.show_layers()

    def leave(self, view: ViewState | None = None) -> None:
        """Leave the project (Home, quitting): no version is saved; unsaved edits stay a draft
        that is restored, with their time, undo history and the screen's `view`, when the
        project is opened again."""
        self.settle_save()
        work = self.work
        self._close()
        self.closed, self._prefetched = True, None
        if work is not None:
            work.park(view)

    # ----- background pre-label and prefetch -----------------------------------------------
    def _start_prelabel(self) -> None:
        work, project, chooser = self.work, self.project, self.prelabeler
        assert work is not None

        def compute(ctx: JobContext) -> Offer | None:
            found = chooser.prelabel_for(project, work.image_id, ctx)
            return None if found is None else Offer.counted(*found)

        def done(offer: Offer | None) -> None:
            if self.prelabel_job is job and self.work is work and work.parent_id is None:
                self.prelabel_job = None
                self._set_offer(offer)
                self.view.show_panel()
                self.view.show_status()

        job = self.prelabel_job = self._run_job(compute, done, "prelabel")

    def _set_offer(self, offer: Offer | None) -> None:
        self.offer = offer
        if offer is not None and self.work is not None:
            note_offer(self.project, self.work.image_id, self.annotator, offer.method, offer.label)
        self.view.show_layers()

    def cancel_prelabel(self) -> None:
        """Stop a pre-label that is still being computed (long work can be cancelled)."""
        if self.prelabel_job is not None:
            self.prelabel_job.cancel()
            self.prelabel_job = None
            self.view.notify("Pre-label cancelled")
            self.view.show_panel()

    def _prefetch(self) -> None:
        """Decode and pre-label the selector's next choice while the expert works."""
        image_id = self.next_choice() if self.prefetch else None
        if image_id is None or (self._prefetched and self._prefetched.image_id == image_id):
            return
        project, chooser, annotator = self.project, self.prelabeler, self.annotator
        want_offer = settings.PRELABEL.get(project) != "none"

        def compute(ctx: JobContext) -> _Prefetched:
            try:
                data = ImageData.load(project, image_id)
            except ApplianceError as exc:
                return _Prefetched(image_id, None, None, str(exc))
            ctx.check()
            offer = None
            if want_offer and start_version(project, image_id, annotator) is None:
                found = chooser.prelabel_for(project, image_id, ctx)
                offer = None if found is None else Offer.counted(*found)
            return _Prefetched(image_id, data, offer)

        def done(result: _Prefetched) -> None:
            self._prefetching = None
            if self.loading != result.image_id:
                self._prefetched = result
            elif result.error is not None:
                self._failed(result.image_id, ApplianceError(result.error))
            else:
                self._show(result.image_id, result.data, result.offer, prefetched=True)

        def failed(exc: BaseException) -> None:
            self._prefetching = None
            if self.loading == image_id:
                self._failed(image_id, exc)

        self._prefetched, self._prefetching = None, image_id
        self._run_job(compute, done, "prefetch", failed)

    # ----- the expert's decisions ----------------------------------------------------------
    def accept_offer(self, edit: bool) -> None:
        """Take the pre-label: *Accept all* stores it (reviewed) and moves on; *Accept and edit*
        keeps editing on top of it. What the expert drew meanwhile is kept (`merge_under`)."""
        work, offer = self.work, self.offer
        if work is None or offer is None:
            return
        if self.compare is not None:  # a before/after of the drawing as it was: now stale
            self.reject_compare()
        self._set_offer(None)
        # the label taken is stored as it is: no second scan of a 2048² label for its objects
        taken = merge_under(work.session.label(), offer.label) if work.has_label else offer.label
        known = offer.areas if taken is offer.label else None
        self.view.show_label(work.session.replace(taken, known))
        # stored in the background: the expert draws on at once (Accept and edit), or sees
        # the check of the accepted label (Accept all; the next image waits for the store)
        self._save(work, "prelabel", label=taken, reviewed=not edit, background=True)
        self.view.clear_error()
        self.view.show_panel()
        self.view.show_status()
        if not edit:
            self.selector.done(work.image_id)
            self._start_review()

    def reject_offer(self) -> None:
        self._set_offer(None)
        self.view.show_panel()
        self.view.show_status()

    def pen_down(self) -> None:
        """A pen landed on the image: a before/after on show is put aside, the pen draws."""
        if self.compare is not None:
            self.reject_compare()
            self.view.notify("Suggestion put aside: your stroke comes first")

    def stroke_done(self) -> None:
        """A gesture changed the label: persist the draft so a crash loses no finished stroke
        (taken now, encoded and written on the writer thread, after any save before it)."""
        if self.work is not None:
            self._write_draft(self.work)
            self._prereview()
        self.view.clear_error()
        self.view.show_status()

    def undo(self) -> None:
        self._history(lambda w: w.session.undo(), "Nothing to undo")

    def redo(self) -> None:
        self._history(lambda w: w.session.redo(), "Nothing to redo")

    def _history(self, step: Callable[[ImageWork], Rect | None], empty: str) -> None:
        rect = step(self.work) if self.work is not None else None
        if rect is None:
            self.view.notify(empty)
            return
        self.view.show_label(rect)
        self.stroke_done()

    def set_class(self, class_id: int) -> None:
        self.active_class = class_id
        remember_class(self.project, self.annotator, class_id)
        if self.work is not None:
            self.work.session.active_class = class_id

    def save_and_next(self) -> None:
        """Save a version, run post-assistance once per revision, then go to the next image."""
        self.settle_save()  # a background save first: then `dirty` says what is left to store
        work = self.work
        if work is None:
            if self.loading is None:
                self.open_next()
            return
        if self.offer is not None and not work.has_label:
            self.view.notify("Accept the pre-label, or Reject it to save an empty label")
            return
        if self.reviewing:
            return  # the check of this save is running; its result decides what follows
        unseen = self._clock() - self._review_shown_at < REVIEW_GLANCE
        if unseen and self.review is not None and self.reviewed_revision == work.session.revision:
            return  # the double tap that saved: the check's result has not been seen yet
        if self.compare is not None:
            self.reject_compare()
        self.offer = None
        if work.dirty or work.parent_id is None:
            self._save(work, "manual")
            self.selector.done(work.image_id)
        if self.reviewed_revision == work.session.revision:
            self.review = None
            self.open_next()
            return
        self._start_review()

    def _save(
        self,
        work: ImageWork,
        source: str,
        label: Label | None = None,
        background: bool = False,
        **options: Any,
    ) -> None:
        """Store a version of `work`: now, or (`background`) on the writer thread while the
        expert goes on. A save still running is finished first, so each version is stored on
        top of the one before and none is stored twice."""
        self.settle_save()
        pending = work.pending_save(source, label, **options)
        if not background:
            self._stored(work, pending, work.store(pending))
            return

        def done(result: tuple[int, Any]) -> None:
            if self._saving is not None and self._saving[0] is job:
                self._saving = None
                self._stored(work, pending, result)
                then, self._after_save = self._after_save, None
                if then is not None:
                    then()

        def failed(exc: BaseException) -> None:
            if self._saving is not None and self._saving[0] is job:
                self._saving, self._after_save = None, None  # the image stays open
                self.view.show_status()  # still unsaved: Save & next stores it again
                raise exc

        job = self._write(lambda _ctx: work.store(pending), done, None, failed)
        self._saving = (job, work, pending)

    def _write_draft(self, work: ImageWork) -> None:
        draft, project = work.draft(), self.project
        saving = self._saving[0] if self._saving and self._saving[1] is work else None

        def write(_ctx: JobContext) -> None:
            # the writer is serial: a save asked for before this draft has been stored
            parent = None
            if saving is not None:
                with contextlib.suppress(Exception):  # failed: the draft keeps its parent
                    parent = saving.result()[0]
            write_draft(project, draft, parent)

        def done(_result: None) -> None:
            if self._drafting is job:
                self._drafting = None

        # keyed: a draft still queued when the next stroke ends is never written
        job = self._drafting = self._write(write, done, "draft")

    @property
    def saving(self) -> bool:
        """Whether a version is being stored in the background."""
        return self._saving is not None

    def settle_save(self) -> None:
        """Wait for a background save still running (what remains of it) and take its
        result, so that what follows (another save, leaving the image) builds on it."""
        drafting, self._drafting = self._drafting, None
        if drafting is not None:  # written before what follows (a save clears it)
            with contextlib.suppress(Exception):  # its own failure was shown by run_write
                drafting.result()
        if self._saving is None:
            return
        job, work, pending = self._saving
        self._saving, self._after_save = None, None  # whatever settles it goes on instead
        self._stored(work, pending, job.result())  # re-raises its error: the label stays unsaved

    def _stored(self, work: ImageWork, pending: PendingSave, result: tuple[int, Any]) -> None:
        version, score = result
        work.stored(pending, version, score)
        for listener in self.on_saved:
            listener(work, version, pending.source)
        if score is not None and supervision_config.load(self.project).feedback:
            self.view.notify(feedback(score))
        if work is self.work:
            self.view.show_status()

    def resolve_conflict(self) -> None:
        """Close the open image's conflict with the label on screen: the expert's merge (or
        the version shown, picked as it is), stored on top of it and merging every other
        competing version. An ordinary save never does this (`appliance.store.conflicts`)."""
        work = self.work
        if work is None or not self.conflict:
            return
        self.settle_save()
        others = [v.id for v in self.conflict if v.id != work.parent_id]
        self._save(work, "manual", merges=others)
        self.conflict = []
        self.view.notify(f"Conflict closed: {len(others)} other versions merged into this one")
        self.view.show_panel()
        self.view.show_status()

    def skip(self) -> None:
        """Not this image now: unsaved edits are saved as a version, the next choice opens."""
        if self.work is not None:
            work = self.work
            self.skipped.add(work.image_id)
            self._close()
            self._left(work, "skipped")
        self.open_next()

    def _left(self, work: ImageWork, kind: str = "closed") -> None:
        """Leave an image; unsaved edits become a version, and a saved image leaves the queue
        (a control as an ordinary image: it never comes back pre-filled to be scored again)."""
        self.settle_save()
        if work.leave(kind) is not None:
            self.selector.done(work.image_id)

    def previous(self) -> None:
        """Back to the image opened before this one in this session."""
        if self.work is not None and self.visited and self.visited[-1] == self.work.image_id:
            self.visited.pop()
        if not self.visited:
            self.view.notify("This is the first image of this session")
            if self.work is not None:
                self.visited.append(self.work.image_id)
            return
        work = self.work
        self._close()
        if work is not None:
            self._left(work)
        self.open_image(self.visited[-1], remember=False)

    def jump(self, image_id: int) -> None:
        """Open any image (from the gallery): unsaved edits are saved first, as with Previous."""
        if self.work is not None and self.work.image_id == image_id:
            return
        work = self.work
        self._close()
        if work is not None:
            self._left(work)
        self.open_image(image_id)

    # ----- the object list ---------------------------------------------------------------
    def objects(self) -> list[ObjectRow]:
        """Rows of the open image's object list: the expert's objects, then suggested ones."""
        work = self.work
        if work is None:
            return []
        session, offer = work.session, self.offer
        if offer is not None and offer.areas is None:  # made without its areas (tests)
            offer = self.offer = Offer.counted(offer.method, offer.label)
        return object_rows(
            Label(session.instances, session.classes, session.objects),
            self.project.classes(),
            class_store.colours(self.project),
            offer.label if offer is not None else None,
            session.areas(),
            offer.areas if offer is not None else None,
        )

    def select_object(self, key: str | None) -> Rect | None:
        """Select a row (`ObjectRow.key`; None: nothing); returns the object's box for the
        view to centre on, None when the object is gone (then nothing stays selected)."""
        self.selected_object = None
        work = self.work
        if key is None or work is None:
            return None
        kind, _, number = key.partition(":")
        index = mark_index(key)
        objects = work.session.objects
        if index is not None:
            ok = index < len(objects) and objects[index].kind == kind
            box = Rect.around(objects[index], work.session.shape, MARK_MARGIN) if ok else None
        elif kind == "object":
            box = work.session.instance_rect(int(number))
        elif kind == "suggested" and self.offer is not None:
            box = object_box(self.offer.label, int(number))
        elif kind in ("suggested-point", "suggested-box") and self.offer is not None:
            offered = self.offer.label.objects
            i = int(number)
            ok = i < len(offered) and f"suggested-{offered[i].kind}" == kind
            box = Rect.around(offered[i], work.session.shape, MARK_MARGIN) if ok else None
        else:
            box = None
        if box is not None:
            self.selected_object = key
        return box

    def delete_object(self, instance_id: int) -> None:
        """Delete one of the expert's objects (from the object list): one undo step."""
        if self.selected_object == f"object:{instance_id}":
            self.selected_object = None
        self._edit_object(lambda session: session.delete_instance(instance_id))

    def reclass_object(self, instance_id: int, class_id: int) -> None:
        """Give one of the expert's objects another class (from the list): one undo step."""
        self._edit_object(lambda session: session.set_class(instance_id, class_id))

    def delete_row(self, key: str) -> None:
        """Delete the object of an object list row (a mask, a point or a box): one undo step."""
        index = mark_index(key)
        if index is None:
            kind, _, number = key.partition(":")
            if kind == "object":
                self.delete_object(int(number))
            return
        self.selected_object = None  # the indices after it shift: nothing stays selected
        self._edit_object(lambda session: session.delete_object(index))

    def reclass_row(self, key: str, class_id: int) -> None:
        """Give the object of an object list row another class: one undo step."""
        index = mark_index(key)
        if index is None:
            kind, _, number = key.partition(":")
            if kind == "object":
                self.reclass_object(int(number), class_id)
            return
        self._edit_object(lambda session: session.set_object_class(index, class_id))

    def _edit_object(self, change: Callable[[EditSession], Rect | None]) -> None:
        """Apply a one-step edit as a finished gesture (draft, resting check, status); a
        before/after on show is put aside first, as when the pen lands, so the edit is seen."""
        work = self.work
        if work is None:
            return
        if self.compare is not None:
            self.reject_compare()
        rect = change(work.session)
        if rect is None:
            return
        self.view.show_label(rect)
        self.stroke_done()

    # ----- cherry-picking (Label Assistant): flagged images are served first -------------------
    def set_flag(self, on: bool) -> None:
        """Flag or unflag the open image (selector weight `cherry_pick`); the choice of the
        next image follows at once."""
        if self.work is None:
            return
        self.project.set_cherry_picked(self.work.image_id, on)
        self.rebuild_selector()
        self.view.notify(
            "Flagged: served early while cherry-pick weighs in" if on else "Flag removed"
        )

    def rebuild_selector(self) -> None:
        """Re-read flags, feature vectors and uncertainty scores (after the background cache
        job); the open image stays."""
        self.selector = Queue(self.project, self.annotator, session=self.selector)

    def flagged(self) -> bool:
        return self.work is not None and self.project.image(self.work.image_id).cherry_picked

    # ----- upgrade and before/after --------------------------------------------------------
    def upgrade(self) -> None:
        """Turn the quick drawing into the upgrade model's refinement, shown as before/after."""
        work, project = self.work, self.project
        if work is None:
            return
        if not work.has_label:
            self.view.notify("Draw a quick, rough outline of the objects first, then Upgrade")
            return
        if installed_model(project, "upgrade") is None:
            self.view.notify("No upgrade model is installed: install a model bundle on Home", True)
            return
        if self.upgrade_job is not None:
            self.view.notify("The upgrade is still running")
            return
        coarse = work.session.label()
        self._save(work, "manual", label=coarse, coarse=True)
        revision = work.session.revision

        def done(refined: Label) -> None:
            if self.upgrade_job is not job:
                return  # the image was closed (or the job superseded) meanwhile
            self.upgrade_job = None
            self.view.show_panel()
            if work.session.revision != revision:  # drawn, undone or accepted meanwhile
                self.view.notify("The label changed while the upgrade ran: tap Upgrade again")
                return
            self.show_compare(Compare("Upgrade", coarse, refined, "upgrade", revision))

        def failed(exc: BaseException) -> None:
            if self.upgrade_job is job:
                self.upgrade_job = None
                self.view.show_panel()
            raise exc

        job = self.upgrade_job = self._run_job(
            lambda ctx: assistant.upgrade_label(project, work.pixels, coarse, ctx),
            done,
            "upgrade",
            failed,
        )
        self.view.show_panel()

    def show_compare(self, compare: Compare) -> None:
        self.compare = compare
        self.view.show_layers()
        self.view.show_panel()

    def suggest(self, name: str) -> None:
        """Show a post-processing suggestion of the review as before/after."""
        if self.work is None or self.review is None:
            return
        for s in self.review.suggestions:
            if s.name == name:
                before = self.work.session.label()
                self.show_compare(
                    Compare(s.name, before, s.after, "postprocess", self.reviewed_revision)
                )

    def accept_compare(self) -> None:
        work, compare = self.work, self.compare
        if work is None or compare is None:
            return
        if compare.revision is not None and compare.revision != work.session.revision:
            self.reject_compare()  # made from an older label: it must not replace the newer
            self.view.notify("The label changed since this result was made: it was put aside")
            return
        self.compare = None
        self.view.show_label(work.session.replace(compare.after))
        self._save(work, compare.source)
        self.view.show_layers()
        self.view.show_status()
        self.reviewed_revision = None
        if self.review is not None:
            self._start_review(advance=False)
        else:
            self.view.show_panel()

    def reject_compare(self) -> None:
        self.compare = None
        self.view.show_layers()
        self.view.show_panel()

    # ----- post-assistance -----------------------------------------------------------------
    def _prereview(self) -> None:
        """Check the label as drawn once the pen rests (`PREREVIEW_DELAY`), in the background,
        so that Save & next finds the post-assistance result ready and moves on at once."""
        work, project = self.work, self.project
        assert work is not None
        revision, label_now = work.session.revision, work.session.label()

        def check(ctx: JobContext) -> assistant.Review:
            time.sleep(PREREVIEW_DELAY)  # superseded meanwhile by the next stroke: cancelled
            ctx.check()
            return assistant.review(project, label_now, ctx)

        def done(result: assistant.Review) -> None:
            if self.work is work:
                self._prereviewed = (work.image_id, revision, result)

        self._run_job(check, done, "prereview")

    def _start_review(self, advance: bool = True) -> None:
        """Check the label as saved. `advance`: with nothing to report, go on to the next
        image (after Save & next); after accepting a suggestion the expert stays and sees
        that nothing is left to check, then taps Next image."""
        work, project = self.work, self.project
        assert work is not None
        revision, label_now = work.session.revision, work.session.label()
        ready = self._prereviewed
        if ready is not None and ready[:2] == (work.image_id, revision):
            self._reviewed(work, revision, ready[2], advance)  # checked while the expert worked
            return
        self.reviewing = True
        self.view.show_panel()
        self._run_job(
            lambda ctx: assistant.review(project, label_now, ctx),
            lambda result: self._reviewed(work, revision, result, advance),
            "review",
        )

    def _reviewed(
        self, work: ImageWork, revision: int, result: assistant.Review, advance: bool
    ) -> None:
        if self.work is not work:
            return
        self.reviewing = False
        self.reviewed_revision = revision
        if result.empty and advance:
            self.done_this_session += 1
            self.review = None
            self.open_next()
            return
        self.review = result
        self._review_shown_at = self._clock()
        self.view.show_panel()

    def review_done(self) -> None:
        """Next image after the review, keeping the label as saved."""
        self.review = None
        self.done_this_session += 1
        self.open_next()

    # ----- what the view draws -------------------------------------------------------------
    def panel(self) -> PanelState:
        """The assistance panel's state: the one place that decides what it shows."""
        if self.all_done:
            return PanelState(Phase.ALL_DONE)
        if self.loading is not None:
            return PanelState(Phase.LOADING, loading=self.loading)
        if self.work is None:
            return PanelState(Phase.CLOSED)
        if self.prelabel_job is not None:
            phase = Phase.PRELABELING
        elif self.offer is not None:
            phase = Phase.OFFER
        elif self.upgrade_job is not None:
            phase = Phase.UPGRADING
        elif self.reviewing:
            phase = Phase.REVIEWING
        elif self.review is not None:
            phase = Phase.REVIEW
        else:
            phase = Phase.DRAWING
        return PanelState(
            phase,
            offer=self.offer if phase is Phase.OFFER else None,
            review=self.review if phase is Phase.REVIEW else None,
            compare=self.compare,
            can_upgrade=self.upgrade_job is None,
            conflict=len(self.conflict),
        )

    def status(self) -> Status | None:
        work = self.work
        if work is None:
            return None
        labeled = labeled_count(self.project, self.annotator)  # as the gallery shows them
        position = labeled + (0 if work.parent_id is not None else 1)
        return Status(
            name=work.record.name,
            position=max(1, min(position, self._total)),
            total=self._total,
            objects=len(work.session.classes),
            suggested=self.offer.label.count() if self.offer else 0,  # masks, points, boxes
            saved=not work.dirty,
            seconds=work.seconds(),
            done_this_session=self.done_this_session,
            conflict=len(self.conflict),
            points=sum(o.kind == "point" for o in work.session.objects),
            boxes=sum(o.kind == "box" for o in work.session.objects),
            saving=self._saving is not None and self._saving[2].revision == work.session.revision,
            has_version=work.parent_id is not None,
        )

    def markers(self) -> list[tuple[float, float, float]]:
        """Circles (image x, y, radius) around the objects the review warns about."""
        out = []
        for warning in self.review.warnings if self.review else ():
            for obj in warning.objects:
                y0, x0, y1, x1 = obj.bbox
                out.append(((x0 + x1) / 2, (y0 + y1) / 2, max(y1 - y0, x1 - x0) / 2))
        return out
