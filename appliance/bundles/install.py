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
import shutil
import time
import uuid
from pathlib import Path

from appliance.bundles.model_bundle import ModelBundle, read_model_bundle
from appliance.durable import file_sha256, replace_durably
from appliance.errors import ApplianceError
from appliance.security.trust import learn, trust_policy
from appliance.store import Project
from appliance.store import models as stored
from appliance.store.db import utcnow
from appliance.store.models import InstalledModel

__all__ = ["MODELS_DIR", "activate_model", "install_model_bundle"]

MODELS_DIR = "models"
STALE_STAGING_SECONDS = 24 * 3600


def install_model_bundle(
    project: Project,
    path: Path | str,
    class_map: dict[str, str] | None = None,
    *,
    allow_unsigned: bool = False,
) -> list[str]:
    """Verify `path`, install its models and make each the active one of its role.

    The bundle must be signed by a lab key this tablet pinned (checked before anything else is
    read); `allow_unsigned` is for a lab without a server, and the models list then says
    "unsigned". A key rotation the signature carries is learned once the install succeeded.

    A model whose classes the project does not have is refused by name, unless `class_map`
    maps each such model class to a project class (stored in the installed contract, so
    predictions land in the mapped class). Returns the model ids. Installing a bundle again
    only re-activates its models.
    """
    models_dir = project.root / MODELS_DIR
    created_dir = not models_dir.exists()
    _sweep_stale_staging(models_dir)
    staging = models_dir / f".staging-{uuid.uuid4().hex}"
    moved: list[Path] = []
    try:
        staging.mkdir(parents=True)
        bundle = read_model_bundle(path, extract_to=staging, trust=trust_policy(allow_unsigned))
        bundle = _map_classes(project, bundle, class_map or {})
        known = _check_ids(project, bundle)
        for model in bundle.models:
            assert model.staged is not None
            final = models_dir / f"{model.sha256}.onnx"
            if not (final.is_file() and file_sha256(final) == model.sha256):
                moved.append(final)
                replace_durably(model.staged, final)
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
    if bundle.verdict is not None:
        learn(bundle.verdict)
    return [m.id for m in bundle.models]


def _map_classes(project: Project, bundle: ModelBundle, class_map: dict[str, str]) -> ModelBundle:
    """Refuse a model for classes the project lacks; rename mapped classes in its contract.

    A binary upgrade model is exempt: its output takes the classes of the coarse label."""
    known = set(project.classes().values())
    bad_targets = sorted(set(class_map.values()) - known)
    if bad_targets:
        raise ApplianceError(
            f"--map target {bad_targets[0]!r} is not a class of {project.root} "
            f"({', '.join(sorted(known))})"
        )
    models = []
    for model in bundle.models:
        names = list(model.contract.classes)
        if model.role == "generator" or (model.role == "upgrade" and len(names) <= 2):
            models.append(model)
            continue
        mapped = names[:1] + [class_map.get(n, n) for n in names[1:]]
        unknown = [n for n in mapped[1:] if n not in known]
        if unknown:
            raise ApplianceError(
                f"bundle {bundle.path}: model {model.name!r} predicts {', '.join(unknown)}, "
                f"which {project.root} does not have (classes: {', '.join(sorted(known))}); "
                f"map them explicitly, e.g. --map {unknown[0]}={sorted(known)[0]}"
            )
        if len(set(mapped)) != len(mapped):
            raise ApplianceError(
                f"bundle {bundle.path}: --map gives model {model.name!r} one class twice "
                f"({', '.join(mapped[1:])})"
            )
        contract = dataclasses.replace(model.contract, classes=tuple(mapped))
        models.append(dataclasses.replace(model, contract=contract))
    return dataclasses.replace(bundle, models=models)


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
        sha256 = stored.installed_sha256(project, model.id)
        if sha256 is None:
            continue
        if sha256 != model.sha256:
            raise ApplianceError(
                f"bundle {bundle.path}, member {model.member!r}: model id {model.id} is already "
                "installed with different content"
            )
        known.add(model.id)
    return known


def _record(project: Project, bundle: ModelBundle, known: set[str]) -> None:
    now = utcnow()
    with project.transaction():
        for model in bundle.models:
            if model.id not in known:
                stored.add_model(
                    project,
                    model_id=model.id,
                    bundle_id=bundle.id,
                    role=model.role,
                    name=model.name,
                    path=f"{MODELS_DIR}/{model.sha256}.onnx",
                    sha256=model.sha256,
                    contract=model.contract,
                    metrics=model.metrics,
                    job_id=bundle.job_id,
                    installed=now,
                    signer=bundle.signer,
                )
            stored.set_active(project, model.role, model.id)


def activate_model(project: Project, model_id: str) -> InstalledModel:
    """Make an installed model (full id or unique prefix) the active one of its role: rollback.

    Its file is re-hashed first, so a model whose file went missing or changed is never activated.
    """
    matches = stored.models_matching(project, model_id)
    if not matches:
        raise ApplianceError(f"no installed model {model_id!r} in {project.root}")
    if len(matches) > 1:
        raise ApplianceError(
            f"{model_id!r} matches {len(matches)} installed models; give more of it"
        )
    model = matches[0]
    if not model.path.is_file() or file_sha256(model.path) != model.sha256:
        raise ApplianceError(
            f"model {model.id}: file {model.path} is missing or changed; reinstall its bundle"
        )
    with project.transaction():
        stored.set_active(project, model.role, model.id)
    return dataclasses.replace(model, active=True)
