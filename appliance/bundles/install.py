"""Installing model bundles into a project, listing them, and switching the active model.

Installation is all-or-nothing: the bundle is verified while its models are extracted into a
staging folder inside the project (same file system, so the later rename is atomic), the
content-addressed files are renamed into `models/`, and the `models` rows are written and the
new models activated in one transaction. A failure removes what this attempt added; a crash
leaves at worst an unreferenced `models/<sha256>.onnx` that nothing points to, so the project
is in the old state until the transaction commits and in the new one after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.bundles.model_bundle import ModelBundle, read_model_bundle
from appliance.contract import Contract
from appliance.errors import ApplianceError
from appliance.store import Project
from appliance.store.db import utcnow

MODELS_DIR = "models"
STALE_STAGING_SECONDS = 24 * 3600
_COLUMNS = "id, bundle_id, role, name, path, sha256, contract, metrics, job_id, installed, active"


@dataclass(frozen=True)
class InstalledModel:
    """A row of the `models` table; `path` is the absolute path of the installed .onnx."""

    id: str
    bundle_id: str
    role: str
    name: str
    path: Path
    sha256: str
    contract: Contract
    metrics: dict[str, Any]
    job_id: str | None
    installed: str
    active: bool


def install_model_bundle(project: Project, path: Path | str) -> list[str]:
    """Verify `path`, install its models and make each the active one of its role.

    Returns the model ids. Installing a bundle again only re-activates its models.
    """
    models_dir = project.root / MODELS_DIR
    created_dir = not models_dir.exists()
    _sweep_stale_staging(models_dir)
    staging = models_dir / f".staging-{uuid.uuid4().hex}"
    moved: list[Path] = []
    try:
        staging.mkdir(parents=True)
        bundle = read_model_bundle(path, extract_to=staging)
        known = _check_ids(project, bundle)
        for model in bundle.models:
            assert model.staged is not None
            final = models_dir / f"{model.sha256}.onnx"
            if not (final.is_file() and _sha256(final) == model.sha256):
                moved.append(final)
                _move_into_place(model.staged, final)
        _record(project, bundle, known)
    except OSError as exc:  # disk full, read-only project folder: a user problem, not a bug
        _remove(moved)
        problem = exc.strerror or str(exc)
        raise ApplianceError(
            f"bundle {path}: cannot install into {project.root} ({problem})"
        ) from None
    except BaseException:
        _remove(moved)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created_dir and models_dir.exists() and not any(models_dir.iterdir()):
            models_dir.rmdir()
    return [m.id for m in bundle.models]


def _sweep_stale_staging(models_dir: Path) -> None:
    """Remove staging folders a crashed install left behind (older than a day, so never the
    folder of an install running right now in another process)."""
    cutoff = time.time() - STALE_STAGING_SECONDS
    for folder in models_dir.glob(".staging-*"):
        with contextlib.suppress(OSError):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder)


def _remove(files: list[Path]) -> None:
    """Undo this attempt's renames, so a failed install leaves no new file behind."""
    for file in files:
        file.unlink(missing_ok=True)


def _check_ids(project: Project, bundle: ModelBundle) -> set[str]:
    """Ids already installed with the same content; a same id with other content is refused."""
    known = set()
    for model in bundle.models:
        row = project.db.execute("SELECT sha256 FROM models WHERE id = ?", (model.id,)).fetchone()
        if row is None:
            continue
        if row[0] != model.sha256:
            raise ApplianceError(
                f"bundle {bundle.path}, member {model.member!r}: model id {model.id} is already "
                "installed with different content"
            )
        known.add(model.id)
    return known


def _move_into_place(staged: Path, final: Path) -> None:
    """Atomic rename within the project's file system, made durable before the commit."""
    os.replace(staged, final)
    _fsync_dir(final.parent)


def _record(project: Project, bundle: ModelBundle, known: set[str]) -> None:
    now = utcnow()
    with project.transaction():
        for model in bundle.models:
            if model.id not in known:
                project.db.execute(
                    f"INSERT INTO models ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                    (
                        model.id,
                        bundle.id,
                        model.role,
                        model.name,
                        f"{MODELS_DIR}/{model.sha256}.onnx",
                        model.sha256,
                        model.contract.to_json(),
                        json.dumps(model.metrics),
                        bundle.job_id,
                        now,
                    ),
                )
            _set_active(project, model.role, model.id)


def _set_active(project: Project, role: str, model_id: str) -> None:
    """Inside a transaction: exactly one active model for `role`."""
    project.db.execute("UPDATE models SET active = (id = ?) WHERE role = ?", (model_id, role))


def list_models(project: Project) -> list[InstalledModel]:
    """Every installed model, oldest installation first."""
    rows = project.db.execute(f"SELECT {_COLUMNS} FROM models ORDER BY installed, rowid")
    return [_from_row(project, r) for r in rows]


def active_model(project: Project, role: str) -> InstalledModel | None:
    """The model the runtime should use for `role`, or None when none is installed."""
    row = project.db.execute(
        f"SELECT {_COLUMNS} FROM models WHERE role = ? AND active = 1", (role,)
    ).fetchone()
    return _from_row(project, row) if row else None


def activate_model(project: Project, model_id: str) -> InstalledModel:
    """Make an installed model (full id or unique prefix) the active one of its role: rollback.

    Its file is re-hashed first, so a model whose file went missing or changed is never activated.
    """
    rows = project.db.execute(
        f"SELECT {_COLUMNS} FROM models WHERE substr(id, 1, length(?1)) = ?1", (model_id,)
    ).fetchall()
    if not rows:
        raise ApplianceError(f"no installed model {model_id!r} in {project.root}")
    if len(rows) > 1:
        raise ApplianceError(f"{model_id!r} matches {len(rows)} installed models; give more of it")
    model = _from_row(project, rows[0])
    if not model.path.is_file() or _sha256(model.path) != model.sha256:
        raise ApplianceError(
            f"model {model.id}: file {model.path} is missing or changed; reinstall its bundle"
        )
    with project.transaction():
        _set_active(project, model.role, model.id)
    return dataclasses.replace(model, active=True)


def _from_row(project: Project, row: tuple) -> InstalledModel:
    return InstalledModel(
        id=row[0],
        bundle_id=row[1],
        role=row[2],
        name=row[3],
        path=project.root / row[4],
        sha256=row[5],
        contract=Contract.parse(row[6], f"model {row[0]}"),
        metrics=json.loads(row[7]),
        job_id=row[8],
        installed=row[9],
        active=bool(row[10]),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX); Windows has no directory handles and needs none."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
