"""The kiosk lock of an open project: the annotator's PIN at opening and after some minutes
without a touch (docs/security.md).

Kivy-free: the app feeds it touches (`touch`) and a periodic `tick`, and shows its lock
screen while `locked`. A project without PINs (`appliance set-pin` never run) is never
locked. The PIN is checked by `appliance.security.vault.unlock`, with its back-off; the key it
unwraps opens an encrypted project (`appliance.store.at_rest`): it is remembered for this
process while unlocked and forgotten when the lock comes back. The project the app holds open
keeps its connections (SQLCipher keeps their key) and the annotate screen its image and undo
history under the lock: the lock hides them, it does not wipe memory (docs/security.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from appliance.security.vault import KEYS_FILE, unlock
from appliance.store import at_rest

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
            at_rest.forget(self.root)  # new opens (jobs, Home) need the PIN again
            return True
        return False

    def unlock(self, annotator: str, pin: str) -> None:
        """Unlock with `annotator`'s PIN; `WrongPin` (one line, with the back-off) otherwise.
        The key is remembered for this process, so the project (and its jobs) can open."""
        at_rest.remember(self.root, unlock(self.root, annotator, pin, self.wall))
        self.locked = False
        self.touch()
