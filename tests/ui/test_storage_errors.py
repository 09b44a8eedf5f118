"""A full disk or a damaged database in the app: one message line naming the problem, counted
as the environment's failure, not as a bug."""

from __future__ import annotations

import errno
import sqlite3


def test_storage_errors_are_one_message_line(app):
    app.errors.clear()
    full = OSError(errno.ENOSPC, "No space left on device", "/data/proj/images/ab/x.tif")
    app.safely(lambda: (_ for _ in ()).throw(full))
    assert app.message.error
    assert (
        app.message.text == "storage problem: /data/proj/images/ab/x.tif: No space left on device"
    )
    app.safely(
        lambda: (_ for _ in ()).throw(sqlite3.DatabaseError("database disk image is malformed"))
    )
    assert "project database problem (database disk image is malformed)" in app.message.text
    assert "\n" not in app.message.text
    assert not app.errors
