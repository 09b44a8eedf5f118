"""One image open for annotation: its edit session, label versions, time, and crash-safe draft.

No Kivy here: this is the bookkeeping between the editing core and the store, so it can be
reasoned about (and tested) without a screen.

Crash safety: after every completed stroke the whole label is written as a draft into the
project's `settings` table under one key (`ui.draft`, one transaction). A tablet has one image
open at a time, so one draft slot is enough; it is cleared when the label is saved as a version.
A power cut therefore loses at most the stroke in progress (and a finished one whose draft,
taken on the UI thread, was still being encoded and written on the writer thread: tens of
milliseconds); on the next start the draft is restored if it still belongs on top of the
image's latest version.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance import settings
from appliance.assist import preprocess
from appliance.editing import EditSession
from appliance.errors import ApplianceError
from appliance.labels import Label, decode_label, encode_label
from appliance.session import resume
from appliance.session.appearance import display_pixels
from appliance.store.project import ImageRecord, Project
from appliance.supervision import blind
from appliance.supervision.controls import score_save
from appliance.supervision.scoring import ControlScore

__all__ = ["Draft", "ImageData", "ImageWork", "PendingSave", "pending_draft", "write_draft"]

log = logging.getLogger(__name__)


def pending_draft(project: Project) -> dict | None:
    """The unsaved draft left by a crash or power cut, if any."""
    draft = settings.DRAFT.get(project)
    return draft if isinstance(draft, dict) and "image_id" in draft else None


@dataclass(frozen=True)
class ImageData:
    """What opening an image costs: decoding and display pre-processing (run off the UI thread)."""

    record: ImageRecord
    pixels: np.ndarray
    display: np.ndarray
    preprocessing: preprocess.Preprocessing

    @classmethod
    def load(cls, project: Project, image_id: int) -> ImageData:
        h = preprocess.load(project)
        pixels = project.load_pixels(image_id)
        return cls(project.image(image_id), pixels, display_pixels(pixels, h), h)


@dataclass(frozen=True)
class Draft:
    """A crash draft taken on the UI thread: the label and what `pending_draft` reads back."""

    label: Label
    fields: dict


def write_draft(project: Project, draft: Draft, parent_id: int | None = None) -> None:
    """Store a crash draft (encoding and one transaction; any thread). `parent_id`: the
    version it builds on when a save still running at the time it was taken stored it."""
    fields = dict(draft.fields)
    if parent_id is not None:
        fields["parent_id"] = parent_id
    blob = encode_label(draft.label)
    fields["instances"] = base64.b64encode(blob).decode("ascii")
    settings.DRAFT.set(project, fields)


@dataclass(frozen=True)
class PendingSave:
    """A version about to be stored, taken on the UI thread: `ImageWork.store` writes it (on
    any thread), `ImageWork.stored` then brings the work up to date (on the UI thread)."""

    label: Label
    source: str
    parent_id: int | None
    seconds: float  # time spent since the last version, up to `taken_at`
    taken_at: float  # clock time the save was asked for: time after it counts for the next
    revision: int | None  # the session's revision `label` is (None: not the label on screen)
    coarse: bool = False
    reviewed: bool = False
    merges: tuple[int, ...] = ()


class ImageWork:
    """An image being annotated by `author`; `session` holds the label on screen."""

    def __init__(
        self,
        project: Project,
        image_id: int,
        author: str,
        active_class: int = 1,
        clock: Callable[[], float] = time.monotonic,
        data: ImageData | None = None,
    ) -> None:
        data = data if data is not None else ImageData.load(project, image_id)
        self.project = project
        self.author = author
        self.record = data.record
        self.pixels = data.pixels
        self.display = data.display
        self.preprocessing = data.preprocessing
        latest = blind.start_version(project, image_id, author)
        self.last_score: ControlScore | None = None  # set when a save was scored (controls)
        self.parent_id: int | None = latest.id if latest else None
        self.parent_source: str | None = latest.source if latest else None
        shape = (self.record.height, self.record.width)
        base = latest.label if latest else Label.empty(shape)
        self._clock = clock
        self._seconds_before = 0.0
        self.recovered = False
        self.resumed_view: resume.ViewState | None = None  # where the expert left it, if kept
        draft = pending_draft(project)
        if draft and draft["image_id"] == image_id and draft.get("parent_id") == self.parent_id:
            base = decode_label(
                base64.b64decode(draft["instances"]),
                {int(k): int(v) for k, v in draft["classes"].items()},
            )
            self._seconds_before = float(draft.get("seconds", 0.0))
            self.recovered = True
        self.session = EditSession(base, active_class)
        if self.recovered and draft is not None:
            self._resume(draft)
        self.saved_revision = -1 if self.recovered else self.session.revision
        self._started = clock()
        project.record_event(image_id, "opened", annotator=author)

    @property
    def image_id(self) -> int:
        return self.record.id

    @property
    def dirty(self) -> bool:
        """Whether the label on screen differs from the last saved version."""
        return self.session.revision != self.saved_revision

    @property
    def has_label(self) -> bool:
        return bool(self.session.objects) or bool(self.session.instances.any())

    def seconds(self) -> float:
        """Time spent on this image since its last saved version."""
        return self._seconds_before + (self._clock() - self._started)

    def _resume(self, draft: dict) -> None:
        """Undo history and view kept on leaving (see `resume`); a record that does not fit
        is dropped with one log line, the recovered label stays."""
        try:
            self.session.restore_undo(resume.decode_history(draft.get("undo", []), self.shape))
        except ApplianceError as exc:
            log.warning("%s: kept undo history dropped: %s", self.record.name, exc)
        self.resumed_view = resume.decode_view(draft.get("view"))

    @property
    def shape(self) -> tuple[int, int]:
        return self.record.height, self.record.width

    def save_draft(self, view: resume.ViewState | None = None, history: bool = False) -> None:
        """Persist the label on screen (one transaction) so a crash loses no finished stroke;
        on leaving, with the undo `history` and the `view` to come back to."""
        write_draft(self.project, self.draft(view, history))

    def draft(self, view: resume.ViewState | None = None, history: bool = False) -> Draft:
        """The label on screen as a crash draft, taken now (a copy); `write_draft` stores it
        (on any thread: the annotate flow writes it on the writer thread after each stroke).
        On leaving, `history` adds the undo steps and the `view` (see `resume`)."""
        fields: dict[str, object] = {
            "image_id": self.image_id,
            "parent_id": self.parent_id,
            "author": self.author,
            "seconds": self.seconds(),
            "classes": {str(k): v for k, v in self.session.classes.items()},
        }
        if history:
            fields["undo"] = resume.encode_history(self.session)
            fields["view"] = resume.encode_view(view)
        return Draft(self.session.label(), fields)

    def clear_draft(self) -> None:
        if pending_draft(self.project) is not None:
            settings.DRAFT.set(self.project, None)

    def save(
        self,
        source: str = "manual",
        label: Label | None = None,
        coarse: bool = False,
        reviewed: bool = False,
        merges: list[int] | None = None,
    ) -> int:
        """Store `label` (default: the one on screen) as a new version on top of the last one.

        `reviewed` marks a machine-made label the expert accepted as it is (a human label);
        `merges` names the other versions of a conflict this one resolves.
        """
        pending = self.pending_save(source, label, coarse, reviewed, merges)
        version, score = self.store(pending)
        self.stored(pending, version, score)
        return version

    def pending_save(
        self,
        source: str = "manual",
        label: Label | None = None,
        coarse: bool = False,
        reviewed: bool = False,
        merges: list[int] | None = None,
    ) -> PendingSave:
        """What `save` stores, taken now; nothing is written yet."""
        on_screen = label is None or np.array_equal(label.instances, self.session.instances)
        return PendingSave(
            self.session.label() if label is None else label,
            source,
            self.parent_id,
            self.seconds(),
            self._clock(),
            self.session.revision if on_screen else None,
            coarse,
            reviewed,
            tuple(merges or ()),
        )

    def store(self, pending: PendingSave) -> tuple[int, ControlScore | None]:
        """Write a pending save as a version and score it (a control); touches only the
        store, so it may run on a worker thread while the expert goes on drawing."""
        version = self.project.save_label(
            self.image_id,
            pending.label,
            author=self.author,
            source=pending.source,
            seconds_spent=pending.seconds,
            parent_id=pending.parent_id,
            coarse=pending.coarse,
            reviewed=pending.reviewed,
            merges=list(pending.merges) or None,
        )
        return version, score_save(self.project, version)

    def stored(self, pending: PendingSave, version: int, score: ControlScore | None) -> None:
        """The pending save is stored as `version`: the next one builds on it. The label is
        saved unless it changed since (strokes drawn while it was being stored), and only then
        is the crash draft, which holds those strokes, cleared."""
        self.last_score = score
        self.parent_id, self.parent_source = version, pending.source
        if pending.revision is not None:
            self.saved_revision = pending.revision
        self._seconds_before, self._started = 0.0, pending.taken_at
        if not self.dirty:
            self.clear_draft()

    def refresh_display(self) -> bool:
        """Re-apply the project's display pre-processing if it changed; whether it did."""
        h = preprocess.load(self.project)
        if h == self.preprocessing:
            return False
        self.display, self.preprocessing = display_pixels(self.pixels, h), h
        return True

    def park(self, view: resume.ViewState | None = None) -> None:
        """Put the image aside without a version (Home, quitting): unsaved edits stay a draft
        that is restored, with their undo history and `view`, when the image is opened again;
        saving stays the expert's decision."""
        if self.dirty:
            self.save_draft(view, history=True)
        self.project.record_event(
            self.image_id, "closed", annotator=self.author, seconds=self.seconds()
        )

    def leave(self, kind: str = "closed") -> int | None:
        """Autosave unsaved work as a version and record the time; returns the new version."""
        seconds = self.seconds()
        version = self.save() if self.dirty else None
        self.project.record_event(self.image_id, kind, annotator=self.author, seconds=seconds)
        self.clear_draft()
        return version
