"""SQLite connections with the durability settings every project needs, and migrations.

WAL with synchronous=FULL: a committed save survives a power cut, and a crash mid-save leaves
the last committed state. Transactions are explicit (`BEGIN IMMEDIATE`) so one save is exactly
one transaction. Rows are read by column name (`rows`), never by position.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from appliance.errors import ApplianceError
from appliance.store.migrations import MIGRATIONS

__all__ = [
    "DatabaseError",
    "applied_migrations",
    "check_schema",
    "connect",
    "connect_plain",
    "export_encrypted",
    "lenient_text",
    "migrate",
    "quick_check",
    "require_sqlcipher",
    "rows",
    "transaction",
    "utcnow",
]


try:  # SQLCipher, for projects encrypted at rest (docs/security.md); wheels for some platforms
    from sqlcipher3 import dbapi2 as sqlcipher  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - platforms without the wheel
    sqlcipher = None

# What the store raises for a damaged, locked, full or read-only database; the CLI boundary
# catches it by this name, so no module outside the store imports sqlite3. SQLCipher's errors
# are not subclasses of sqlite3's: both are caught.
DatabaseError: tuple[type[Exception], ...] = (sqlite3.Error,) + (
    (sqlcipher.Error,) if sqlcipher is not None else ()
)
_DamagedDatabase: tuple[type[Exception], ...] = (sqlite3.DatabaseError,) + (
    (sqlcipher.DatabaseError,) if sqlcipher is not None else ()
)
# a damaged page may also mangle the error's message
_Unreadable: tuple[type[Exception], ...] = (*_DamagedDatabase, UnicodeDecodeError)
_Operational: tuple[type[Exception], ...] = (sqlite3.OperationalError,) + (
    (sqlcipher.OperationalError,) if sqlcipher is not None else ()
)


def require_sqlcipher() -> ModuleType:
    """The SQLCipher module, or one line saying this platform has none."""
    if sqlcipher is None:
        raise ApplianceError(
            "encryption at rest needs SQLCipher (the sqlcipher3-binary package), which this "
            "platform lacks"
        )
    return sqlcipher


def _open(path: Path, key_pragma: str | None, **kwargs: Any) -> sqlite3.Connection:
    """A connection to a plain database (stdlib sqlite3) or, with `key_pragma`, to a SQLCipher
    one (the key is the first statement, before anything reads the file)."""
    if key_pragma is None:
        return sqlite3.connect(str(path), **kwargs)
    conn: sqlite3.Connection = require_sqlcipher().connect(str(path), **kwargs)
    conn.execute(key_pragma)
    return conn


def utcnow() -> str:
    """The current UTC time as ISO 8601 with milliseconds, as every table stores times."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: Path, key_pragma: str | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode: every transaction is an explicit `transaction()`.

    Each connection belongs to one thread (`Project.db`); `check_same_thread=False` only lets
    `Project.close()` close every thread's connection from the thread that closes the project.
    With `key_pragma` (`at_rest.StoreKeys.db_pragma`) the database is SQLCipher's.
    """
    conn = _open(path, key_pragma, isolation_level=None, check_same_thread=False, timeout=30)
    conn.text_factory = lenient_text
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def rows(db: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
    """All rows of a query, each readable by column name (`row["sha256"]`)."""
    cursor = db.cursor()
    cursor.row_factory = sqlite3.Row if isinstance(db, sqlite3.Connection) else sqlcipher.Row
    return cursor.execute(sql, params).fetchall()


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One atomic unit of work; rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def connect_plain(path: Path, key_pragma: str | None = None) -> sqlite3.Connection:
    """A connection that changes nothing on open (no WAL switch, no migration)."""
    conn = _open(path, key_pragma, isolation_level=None, timeout=30)
    conn.text_factory = lenient_text
    return conn


def lenient_text(raw: bytes) -> str:
    """Text that is not UTF-8 (a damaged page, a foreign writer) reads as U+FFFD, not a crash."""
    return raw.decode("utf-8", "replace")


def quick_check(path: Path, key_pragma: str | None = None) -> None:
    """Refuse a damaged or empty database file before anything writes to it."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise ApplianceError(
            f"{path}: empty file, not a project database (restore it from a backup; only "
            "`init` creates a project)"
        )
    conn = connect_plain(path, key_pragma)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(1)")]
    except _Operational as exc:
        if not os.access(path.parent, os.W_OK):  # WAL needs its -shm file beside the database
            raise ApplianceError(
                f"{path.parent}: project folder is read-only ({exc}); copy the project to "
                "writable storage or make the folder writable"
            ) from exc
        rows = [str(exc)]
    except _Unreadable as exc:  # the message may be mangled
        rows = [str(exc)]
    finally:
        conn.close()
    if rows != ["ok"]:
        raise ApplianceError(
            f"{path}: not a readable project database ({rows[0]}); nothing was written. Run "
            f"`appliance check {path.parent}` and restore the file from a backup"
        )


def applied_migrations(path: Path, key_pragma: str | None = None) -> list[str]:
    """Read the migration record without writing (no pragmas, no WAL switch).

    A read-write handle is used on purpose: as the last connection it removes the -wal and
    -shm files on close, where a read-only one would leave them behind.
    """
    conn = _open(path, key_pragma)
    try:
        names = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='migrations'"
        ).fetchall()
        if not names:
            return []
        return [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
    except _DamagedDatabase as exc:
        raise ApplianceError(f"{path}: not a readable project database ({exc})") from exc
    finally:
        conn.close()


def check_schema(path: Path, key_pragma: str | None = None) -> None:
    """Refuse a database written by a newer version before anything touches it."""
    known = {name for name, _ in MIGRATIONS}
    unknown = [n for n in applied_migrations(path, key_pragma) if n not in known]
    if unknown:
        raise ApplianceError(
            f"{path}: written by a newer version of the appliance (schema "
            f"{len(known) + len(unknown)} > {len(known)}, unknown migration {unknown[0]}); "
            "update the app to open it"
        )


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this database lacks, each in one transaction with its record."""
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied TEXT)")
    done = {r[0] for r in db.execute("SELECT name FROM migrations")}
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        with transaction(db):
            for statement in _statements(sql):
                db.execute(statement)
            db.execute("INSERT INTO migrations VALUES (?, ?)", (name, utcnow()))
    if db.execute("PRAGMA user_version").fetchone()[0] != len(MIGRATIONS):
        db.execute(f"PRAGMA user_version={len(MIGRATIONS)}")  # only when it changes: no write


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def export_encrypted(plain: Path, dest: Path, key_pragma: str) -> None:
    """Copy the plain database `plain` into a new SQLCipher database `dest` under the key of
    `key_pragma`, fsynced; `plain`'s WAL is checkpointed into it and removed first, so no
    page of it is left outside the copy (`at_rest.encrypt`)."""
    module = require_sqlcipher()
    conn = sqlite3.connect(str(plain), isolation_level=None, timeout=5)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")  # removes the -wal file: nothing to replay
    except sqlite3.OperationalError as exc:  # another connection holds the WAL open
        raise ApplianceError(
            f"{plain}: in use by another process (the app, a sync: {exc}); close it and run "
            "again (nothing was changed)"
        ) from exc
    finally:
        conn.close()
    dest.unlink(missing_ok=True)
    secret = key_pragma.split("=", 1)[1].strip()
    conn = module.connect(str(plain), isolation_level=None, timeout=30)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"ATTACH DATABASE ? AS sealed KEY {secret}", (str(dest),))
        conn.execute("SELECT sqlcipher_export('sealed')")
        conn.execute(f"PRAGMA sealed.user_version = {int(version)}")
        conn.execute("DETACH DATABASE sealed")
    finally:
        conn.close()
    with open(dest, "rb+") as fh:
        os.fsync(fh.fileno())
