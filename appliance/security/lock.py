"""Remote revoke: a tablet the lab revoked locks every project on it.

When a sync learns that the lab revoked this device, the tablet forgets its lab credentials
and writes `revoked.json` into the appliance home; from then on `Project.open` refuses every
project on this tablet, so neither the app nor the CLI shows an image. Only someone with
access to the appliance home (the lab, after getting the tablet back) lifts the lock with
`appliance unlock-revoked`. For a plain project this is a lock, not a wipe: the files stay
on the disk. The project whose sync met the revoke is also crypto-erased when it is encrypted
at rest (`appliance.store.at_rest.erase_keys`, docs/security.md).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from appliance.errors import ApplianceError
from appliance.security.home import appliance_home, home_path, write_private

__all__ = ["LOCK_FILE", "Locked", "check_unlocked", "lift_lock", "lock_tablet"]

LOCK_FILE = "revoked.json"


class Locked(ApplianceError):
    """This tablet was revoked by its lab; its projects stay closed."""


def lock_tablet(server: str) -> None:
    """Record that `server` revoked this device (idempotent: the first record stays)."""
    path = appliance_home() / LOCK_FILE
    if path.exists():
        return
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_private(path, json.dumps({"server": server, "revoked": when}).encode())


def check_unlocked() -> None:
    """Raise `Locked` (one line) when this tablet was revoked. Only reads: opening a project
    never creates the appliance home (a read-only home folder must not stop it)."""
    path = home_path() / LOCK_FILE
    if not path.exists():
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        who, when = doc["server"], doc["revoked"]
    except (OSError, ValueError, KeyError, TypeError):
        who, when = "the lab", "an unknown time"
    raise Locked(
        f"this tablet was revoked by {who} at {when}: its projects are locked; "
        "bring it back to the lab"
    )


def lift_lock() -> bool:
    """Remove the lock (the lab, with the tablet in hand); False when there was none."""
    path = home_path() / LOCK_FILE
    if not path.exists():
        return False
    path.unlink()
    return True
