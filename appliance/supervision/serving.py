"""What one annotator sees next: the selector's choice with hidden controls mixed in.

Seed 000 hides items of known truth among real ones. The rules that keep them hidden:
- controls make up `rate` of the items served in a session (default 5 %), never more at any
  point of it: the n-th item may be a control only if the controls so far, this one included,
  stay within rate · n, so a session never starts with a burst of them;
- never two in a row;
- when a control is due, it is served with probability one half, so the spacing is not a
  fixed period an annotator could learn;
- a control is served only while an ordinary image is left for after it, so controls never
  come alone when the ordinary images run out;
- each annotator saves each control once: one served and left unsaved comes back later (as an
  unsaved ordinary image does), one saved never; which control comes next is drawn at
  random, flagged ones (cherry-picking) first.
Ordinary images come from the selector, with "done" meaning: labeled by this annotator, or by
k people already (seed 002's independent votes, k per project). Controls never enter the
selector's pool, and nothing returned says which kind an item is.
"""

from __future__ import annotations

import secrets

import numpy as np

from appliance.assist import selector as selector_mod
from appliance.store import controls as store
from appliance.store.project import Project
from appliance.supervision import config

__all__ = ["Queue"]


class Queue:
    """The next image ids for `annotator`; call `done(image_id)` after each save."""

    def __init__(
        self,
        project: Project,
        annotator: str,
        seed: int | None = None,
        session: Queue | None = None,
    ) -> None:
        """`session`: the queue this one replaces in the same session (the UI rebuilds its
        queue when settings change); its counts carry over so the rate holds across."""
        self.cfg = config.load(project)
        self.annotator = annotator
        self.rng = np.random.default_rng(secrets.randbits(64) if seed is None else seed)
        controls = project.control_image_ids()
        authors = store.human_authors_by_image(project)
        finished = [
            i
            for i, who in authors.items()
            if annotator in who or len(who - {annotator}) >= self.cfg.k
        ]
        self.selector = selector_mod.from_project(
            project, labeled=np.array(sorted(controls | set(finished)), np.int64)
        )
        todo = [c for c in controls if annotator not in authors.get(c, set())]
        shuffled = [todo[i] for i in self.rng.permutation(len(todo))]
        # flagged controls are served first (the list is served from its end), as the
        # selector serves flagged ordinary images first (cherry-picking)
        self._flagged = {p.id for p in project.image_positions() if p.cherry_picked} & controls
        self._controls = sorted(shuffled, key=lambda c: c in self._flagged)
        self._control_ids = controls
        self.served: int = 0
        self.served_controls: int = 0
        self._last_control: bool = False
        self._due: bool | None = None  # the pending control-or-not draw (see `peek`)
        if session is not None and session.annotator == annotator:
            self.served, self.served_controls = session.served, session.served_controls
            self._last_control = session._last_control

    def _control_due(self) -> bool:
        if not self._controls or self._last_control or self.cfg.rate <= 0:
            return False
        if self.served_controls + 1 > self.cfg.rate * (self.served + 1) + 1e-9:
            return False
        if self._controls[-1] in self._flagged:
            return True  # flagged: at the first place the rate allows
        return bool(self.rng.random() < 0.5)

    def _ordinary(self, exclude: set[int] | frozenset[int]) -> int | None:
        for choice in self.selector.next(len(exclude) + 1):
            if choice.image_id not in exclude:
                return choice.image_id
        return None

    def peek(self, exclude: set[int] | frozenset[int] = frozenset()) -> int | None:
        """What `next` will return, without serving it (the UI prefetches the next image).

        The control-or-not draw is made once and kept until `next` consumes it, so peeking
        never changes the order. A control is served only while an ordinary image is left
        for after it: controls never come alone when the ordinary images run out.
        """
        ordinary = self._ordinary(exclude)
        if ordinary is None:
            return None
        if self._due is None:
            self._due = self._control_due()
        if self._due:
            control = next((c for c in reversed(self._controls) if c not in exclude), None)
            if control is not None:
                return control
        return ordinary

    def next(self, exclude: set[int] | frozenset[int] = frozenset()) -> int | None:
        """The next image id (None when nothing is left); counts it as served.

        A served control stays in the queue until `done`: left unsaved (Previous, Gallery,
        Skip), it comes back later, as an unsaved ordinary image does.
        """
        pick = self.peek(exclude)
        if pick is None:
            return None
        control = pick in self._control_ids
        if control:
            self._controls.remove(pick)
            self._controls.insert(0, pick)  # back of the line until saved
            self.served_controls += 1
        self._last_control = control
        self._due = None
        self.served += 1
        return pick

    def done(self, image_id: int) -> None:
        """The annotator saved `image_id`: it leaves their queue."""
        if image_id in self._control_ids:
            if image_id in self._controls:
                self._controls.remove(image_id)
        else:
            self.selector.mark_labeled(image_id)
