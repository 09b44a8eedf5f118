"""Integrity of a project: its database, its stored originals, and what crashes leave behind.

`appliance.store.db.quick_check` runs on every open, before any pragma or migration can write,
so a command never writes into a database failing SQLite's `PRAGMA quick_check`. This module is
the whole check behind `appliance check DIR [--repair]`: the full `integrity_check`, every
label version decoded, the sha256 of every stored original, orphan files nothing refers to,
and the leftovers of killed writes (`.NAME.<hex>.tmp` files, model staging folders). Repair
removes leftovers and orphans only; it never deletes a row or a label. A missing original comes
back when the same file is imported again (`appliance.store.images.add_images`).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.durable import CHUNK, TEMP_GLOB
from appliance.errors import ApplianceError
from appliance.store.at_rest import StoreKeys
from appliance.store.db import DatabaseError, connect_plain
from appliance.store.project import DB_NAME, IMAGES_DIR, ImageRecord, Project

__all__ = ["CheckReport", "check_project", "verified_original"]

MODELS_DIR = "models"  # appliance.bundles.install keeps installed models here
STAGING_GLOB = ".staging-*"
_UNREADABLE: tuple[type[Exception], ...] = (*DatabaseError, UnicodeDecodeError)
# A staging folder this young may belong to an install running right now in another process.
STAGING_GRACE_SECONDS = 600


def verified_original(project: Project, rec: ImageRecord, plain_dir: Path | None = None) -> Path:
    """The stored original of `rec`, re-hashed: a swapped or bit-rotten file never leaves.

    In an encrypted project the plain bytes are written to `plain_dir` (an export the user
    asked for, written in plain) and that copy is returned; without `plain_dir` only the hash
    is checked and the stored (sealed) path returned.
    """
    try:
        if project.encrypted and plain_dir is not None:
            out = plain_dir / f"{rec.sha256}{rec.path.suffix.lower()}"
            digest = hashlib.sha256()
            with project.open_original(rec.path) as src, open(out, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
            actual, path = digest.hexdigest(), out
        else:
            actual, path = project.original_sha256(rec.path), rec.path
    except OSError as exc:
        raise ApplianceError(
            f"{rec.path}: stored original of image {rec.id} ({rec.name}) is unreadable "
            f"({exc.strerror}); import the same file again to restore it"
        ) from exc
    if actual != rec.sha256:
        raise ApplianceError(
            f"{rec.path}: stored original of image {rec.id} ({rec.name}) has changed (sha256 "
            f"{actual[:12]}… instead of {rec.sha256[:12]}…); run `appliance check`"
        )
    return path


@dataclass
class CheckReport:
    """Everything `check_project` found, and what `repair` did about it."""

    database: str = "ok"
    originals_checked: int = 0
    labels_checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    bad_labels: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Problems still present (removed leftovers and orphans no longer count)."""
        remaining = [p for p in self.orphans + self.leftovers if p not in self.removed]
        db_bad = self.database != "ok"
        return (
            db_bad + len(self.missing) + len(self.changed) + len(self.bad_labels) + len(remaining)
        )

    def lines(self) -> list[str]:
        out = [f"database: {self.database}"]
        out.append(
            f"originals: {self.originals_checked} checked, {len(self.missing)} missing, "
            f"{len(self.changed)} changed"
        )
        out += [f"  missing: {m} (import the same file again to restore it)" for m in self.missing]
        out += [
            f"  changed: {m} (restore it from the source file or a backup)" for m in self.changed
        ]
        out.append(f"labels: {self.labels_checked} versions decoded, {len(self.bad_labels)} bad")
        out += [f"  bad: {b}" for b in self.bad_labels]
        for what, paths in (("orphans", self.orphans), ("leftovers", self.leftovers)):
            done = [p for p in paths if p in self.removed]
            out.append(f"{what}: {len(paths)} found, {len(done)} removed")
            out += [f"  {'removed' if p in done else 'found'}: {p}" for p in paths]
        out.append("ok" if not self.problems else f"{self.problems} problem(s) remain")
        return out


def check_project(
    root: Path, *, repair: bool = False, progress: Callable[[int, int], None] | None = None
) -> CheckReport:
    """Check the project at `root`; with `repair`, sweep leftovers and orphans.

    A database failing `integrity_check` is reported and nothing else is touched: its rows
    cannot be trusted to say which files are orphans.
    """
    root = Path(root)
    path = root / DB_NAME
    if not path.is_file():
        raise ApplianceError(f"{root}: no project here (missing {DB_NAME})")
    report = CheckReport()
    key = Project.resolve_key(root)
    report.database = _integrity(path, None if key is None else StoreKeys(key).db_pragma)
    if report.database != "ok":
        return report
    with Project.open(root, key) as project:
        images = project.images()
        for n, rec in enumerate(images, start=1):
            _check_original(project, rec, report)
            if progress:
                progress(n, len(images))
        _check_labels(project, report)
        if repair:
            with project.transaction():  # holds the write lock: no import is mid-way meanwhile
                _find_leftovers(project, report)
                _remove(report.orphans + report.leftovers, report)
        else:
            _find_leftovers(project, report)
    return report


def _integrity(path: Path, key_pragma: str | None) -> str:
    if path.stat().st_size == 0:
        return "empty file (not a database)"
    conn = connect_plain(path, key_pragma)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
    except _UNREADABLE as exc:
        return f"damaged ({exc})"
    finally:
        conn.close()
    return "ok" if rows == ["ok"] else "damaged (" + "; ".join(rows) + ")"


def _check_original(project: Project, rec: ImageRecord, report: CheckReport) -> None:
    if rec.page:  # pages of one file share it: checked once, with page 0
        return
    report.originals_checked += 1
    if not rec.path.is_file():
        report.missing.append(f"image {rec.id} {rec.name}: {rec.path}")
        return
    try:
        verified_original(project, rec)
    except ApplianceError:
        report.changed.append(f"image {rec.id} {rec.name}: {rec.path}")


def _check_labels(project: Project, report: CheckReport) -> None:
    for image_id in project.labeled_image_ids():
        for version in project.history(image_id):
            report.labels_checked += 1
            try:
                version.label  # noqa: B018 (decoding is the check)
            except Exception as exc:  # any decoding failure means the stored bytes are bad
                report.bad_labels.append(f"label version {version.id} of image {image_id}: {exc}")


def _find_leftovers(project: Project, report: CheckReport) -> None:
    root = project.root
    referenced = {rec.path for rec in project.images()}
    models = project.db.execute("SELECT path FROM models").fetchall()
    referenced |= {root / row[0] for row in models} | {Path(row[0]) for row in models}
    report.leftovers += sorted(p for p in root.rglob(TEMP_GLOB) if p.is_file())
    cutoff = time.time() - STAGING_GRACE_SECONDS
    report.leftovers += sorted(
        p for p in (root / MODELS_DIR).glob(STAGING_GLOB) if p.stat().st_mtime < cutoff
    )
    for folder in (root / IMAGES_DIR, root / MODELS_DIR):
        for file in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if (
                file.is_file()
                and file not in referenced
                and file not in report.leftovers
                and not any(part.startswith(".staging-") for part in file.parts)
            ):
                report.orphans.append(file)


def _remove(paths: list[Path], report: CheckReport) -> None:
    for path in paths:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        report.removed.append(path)
