"""The `models` table: installed model bundles, one active model per role.

The files themselves are placed by `appliance.bundles.install`; this module only records and
reads rows, so the runtime, the selector and the UI find the active model without importing
the bundle code.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.contract import Contract, GeneratorContract
from appliance.store import db as dbm
from appliance.store import oplog

if TYPE_CHECKING:
    from appliance.store.project import Project

__all__ = [
    "InstalledModel",
    "active_model",
    "add_model",
    "installed_sha256",
    "list_models",
    "models_matching",
    "set_active",
]

_COLUMNS = (
    "id, bundle_id, role, name, path, sha256, contract, metrics, job_id, installed, active, signer"
)


@dataclass(frozen=True)
class InstalledModel:
    """A row of the `models` table; `path` is the absolute path of the installed .onnx."""

    id: str
    bundle_id: str
    role: str
    name: str
    path: Path
    sha256: str
    contract: Contract | GeneratorContract
    metrics: dict[str, Any]
    job_id: str | None
    installed: str
    active: bool
    signer: str | None = None  # lab key id; None: unsigned


def _from_row(project: Project, row: sqlite3.Row) -> InstalledModel:
    return InstalledModel(
        id=row["id"],
        bundle_id=row["bundle_id"],
        role=row["role"],
        name=row["name"],
        path=project.root / row["path"],
        sha256=row["sha256"],
        contract=(GeneratorContract if row["role"] == "generator" else Contract).parse(
            row["contract"], f"model {row['id']}"
        ),
        metrics=json.loads(row["metrics"]),
        job_id=row["job_id"],
        installed=row["installed"],
        active=bool(row["active"]),
        signer=row["signer"],
    )


def list_models(project: Project) -> list[InstalledModel]:
    """Every installed model, oldest installation first."""
    rows = dbm.rows(project.db, f"SELECT {_COLUMNS} FROM models ORDER BY installed, rowid")
    return [_from_row(project, r) for r in rows]


def active_model(project: Project, role: str) -> InstalledModel | None:
    """The model the runtime should use for `role`, or None when none is installed."""
    rows = dbm.rows(
        project.db, f"SELECT {_COLUMNS} FROM models WHERE role = ? AND active = 1", (role,)
    )
    return _from_row(project, rows[0]) if rows else None


def models_matching(project: Project, prefix: str) -> list[InstalledModel]:
    """Installed models whose id starts with `prefix` (a full id matches itself)."""
    rows = dbm.rows(
        project.db,
        f"SELECT {_COLUMNS} FROM models WHERE substr(id, 1, length(?1)) = ?1",
        (prefix,),
    )
    return [_from_row(project, r) for r in rows]


def installed_sha256(project: Project, model_id: str) -> str | None:
    """The content hash recorded for `model_id`, or None when it is not installed."""
    row = project.db.execute("SELECT sha256 FROM models WHERE id = ?", (model_id,)).fetchone()
    return None if row is None else str(row[0])


def add_model(
    project: Project,
    *,
    model_id: str,
    bundle_id: str,
    role: str,
    name: str,
    path: str,
    sha256: str,
    contract: Contract | GeneratorContract,
    metrics: dict[str, Any],
    job_id: str | None,
    installed: str,
    signer: str | None = None,
) -> None:
    """Record an installed model, inactive. Call inside `project.transaction()`.

    `path` is relative to the project root.
    """
    project.db.execute(
        f"INSERT INTO models ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        (
            model_id,
            bundle_id,
            role,
            name,
            path,
            sha256,
            contract.to_json(),
            json.dumps(metrics),
            job_id,
            installed,
            signer,
        ),
    )


def set_active(project: Project, role: str, model_id: str) -> None:
    """Make `model_id` the only active model of `role`. Call inside `project.transaction()`."""
    project.db.execute("UPDATE models SET active = (id = ?) WHERE role = ?", (model_id, role))
    oplog.record_model_activated(project.db, model_id, role)
