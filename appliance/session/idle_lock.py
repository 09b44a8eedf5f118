"""The kiosk lock of an open project: the annotator's PIN at opening and after some minutes
without a touch (docs/security.md).

Kivy-free: the app feeds it touches (`touch`) and a periodic `tick`, and shows its lock
screen while `locked`. A project without PINs (`appliance set-pin` never run) is never
locked. The PIN is checked by `appliance.security.vault.unlock`, with its back-off; the key it
unwraps is the one encryption at rest will use, so the same PIN will open the data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from appliance.security.vault import KEYS_FILE, unlock

__all__ = ["DEFAULT_IDLE_MINUTES", "IdleLock"]

DEFAULT_IDLE_MINUTES = 5.0


class IdleLock:
    """Locked at start when the project has PINs; locks again `idle_minutes` after the last
    touch."""

    def __init__(
        self,
        root: Path,
        idle_minutes: float = DEFAULT_IDLE_MINUTES,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.idle_s = idle_minutes * 60.0
        self.clock, self.wall = clock, wall
        self.required = (self.root / KEYS_FILE).is_file()
        self.locked = self.required
        self._last = clock()

    def touch(self) -> None:
        """The annotator did something: the idle time starts again."""
        self._last = self.clock()

    def tick(self) -> bool:
        """Lock when idle too long; True when this call locked it."""
        if self.required and not self.locked and self.clock() - self._last >= self.idle_s:
            self.locked = True
            return True
        return False

    def unlock(self, annotator: str, pin: str) -> None:
        """Unlock with `annotator`'s PIN; `WrongPin` (one line, with the back-off) otherwise."""
        unlock(self.root, annotator, pin, self.wall)
        self.locked = False
        self.touch()
