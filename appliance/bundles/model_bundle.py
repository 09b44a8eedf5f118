"""Model bundles (workstation → tablet): ONNX models with their role, I/O contract and metrics.

The writer lives beside the reader and runs the same checks, so the workstation learns about
a model the tablet would refuse when it exports it, not when an expert tries to install it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from appliance import __version__
from appliance.bundles.archive import BundleError, BundleReader, Fields, Limits, write_bundle
from appliance.bundles.onnx_check import Fail, check_onnx
from appliance.contract import ROLES, Contract, ContractError, GeneratorContract, parse_contract
from appliance.durable import atomic_write
from appliance.security.signing import SigningKey, Verdict, default_signing_key
from appliance.security.trust import TrustPolicy

__all__ = [
    "FORMAT",
    "ROLES",
    "BundleModel",
    "ModelBundle",
    "ModelSpec",
    "read_model_bundle",
    "write_model_bundle",
]

FORMAT = "model"


@dataclass(frozen=True)
class ModelSpec:
    """One model to ship: `onnx_path` is read when the bundle is written."""

    role: str
    name: str
    onnx_path: Path
    contract: Contract | GeneratorContract
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BundleModel:
    """A verified model inside a bundle; `staged` is its extracted file when one was asked for."""

    id: str
    role: str
    name: str
    member: str
    sha256: str
    contract: Contract | GeneratorContract
    metrics: dict[str, Any]
    staged: Path | None = None


@dataclass(frozen=True)
class ModelBundle:
    """A verified model bundle: its id, origin and the models it carries."""

    id: str
    path: Path
    created: str
    producer: dict[str, str]
    job_id: str | None
    models: list[BundleModel]
    extra: list[str]  # member paths of the other files (curves, reports)
    manifest: dict[str, Any]
    verdict: Verdict | None = None  # who signed it, when read with a trust policy

    @property
    def signer(self) -> str | None:
        """The id of the key that signed the bundle; None when unsigned or not checked."""
        return self.verdict.signer.id if self.verdict else None


def write_model_bundle(
    out_zip: Path | str,
    specs: list[ModelSpec],
    *,
    job_id: str | None = None,
    extra_files: Mapping[str, Path] | None = None,
    producer: tuple[str, str] = ("appliance", __version__),
    sign: SigningKey | bool = True,
) -> str:
    """Check every model against its contract, then write the bundle; returns the bundle id.

    `sign`: a key, False for an unsigned bundle, True for the APPLIANCE_SIGNING_KEY key if set.
    """
    out = str(out_zip)
    if not specs:
        raise BundleError(out, "a model bundle needs at least one model")
    members: dict[str, Path] = {}
    entries = []
    for i, spec in enumerate(specs):
        member = f"models/{i}-{spec.role}.onnx"
        entry = {
            "id": str(uuid.uuid4()),
            "role": spec.role,
            "name": spec.name,
            "file": member,
            "contract": spec.contract.to_dict(),
            "metrics": spec.metrics,
        }
        contract = _validate_entry(Fields(entry, out, member, f"models[{i}]"))
        try:
            data = Path(spec.onnx_path).read_bytes()
        except OSError as exc:
            raise BundleError(
                out, f"cannot read {spec.onnx_path} ({exc.strerror})", member
            ) from None
        check_onnx(data, contract, _failing(out, member))
        members[member] = Path(spec.onnx_path)
        entries.append(entry)
    _refuse_repeated_roles(entries, out)
    for name, path in (extra_files or {}).items():
        members[f"extra/{name}"] = Path(path)
    body: dict[str, Any] = {"models": entries}
    if job_id is not None:
        body["job_id"] = job_id
    return write_bundle(
        out, FORMAT, body, members, producer=producer, sign=default_signing_key(sign)
    )


def read_model_bundle(
    path: Path | str,
    *,
    extract_to: Path | None = None,
    limits: Limits | None = None,
    trust: TrustPolicy | None = None,
) -> ModelBundle:
    """Verify the whole bundle (members, hashes, ONNX against contracts) and describe it.

    With `extract_to`, each verified model is also written there as `<sha256>.onnx` (fsynced),
    which is how installation stages files without reading the archive twice. With `trust`,
    the signature is checked first (a tablet installing); without, it is not looked at.
    """
    with BundleReader(path, FORMAT, limits, trust) as reader:
        top = reader.fields(reader.manifest, where="manifest")
        job_id = top.get("job_id", str, optional=True)
        raw_models = top.get("models", list)
        if not raw_models:
            top.fail("manifest.models is empty; a model bundle ships at least one model")
        entries, contracts = [], []
        for i, raw in enumerate(raw_models):
            entry = reader.fields(raw, where=f"manifest.models[{i}]")
            contracts.append(_validate_entry(entry))
            if entry.obj["file"] not in reader.members:
                entry.fail(f"{entry.where}.file {entry.obj['file']!r} is not a listed member")
            entries.append(entry.obj)
        _refuse_repeated_roles(entries, reader.name)
        files = [e["file"] for e in entries]
        if len(set(files)) != len(files) or len({e["id"] for e in entries}) != len(entries):
            top.fail("two models share a file or an id")
        reader.verify_all(skip=files)
        models = [
            _verified_model(reader, e, c, extract_to)
            for e, c in zip(entries, contracts, strict=True)
        ]
        return ModelBundle(
            id=reader.manifest["id"],
            path=Path(path),
            created=reader.manifest["created"],
            producer=dict(reader.manifest["producer"]),
            job_id=job_id,
            models=models,
            extra=[m for m in reader.members if m not in files],
            manifest=reader.manifest,
            verdict=reader.verdict,
        )


def _verified_model(
    reader: BundleReader,
    entry: dict[str, Any],
    contract: Contract | GeneratorContract,
    extract_to: Path | None,
) -> BundleModel:
    member = entry["file"]
    data = reader.read_bytes(member)
    check_onnx(data, contract, _failing(reader.name, member))
    sha = reader.members[member].sha256
    staged = None
    if extract_to is not None:
        staged = atomic_write(extract_to / f"{sha}.onnx", data)
    return BundleModel(
        id=entry["id"],
        role=entry["role"],
        name=entry["name"],
        member=member,
        sha256=sha,
        contract=contract,
        metrics=entry["metrics"],
        staged=staged,
    )


def _validate_entry(f: Fields) -> Contract | GeneratorContract:
    """Check one manifest model entry; returns its contract, checked against the role too."""
    try:
        uuid.UUID(f.get("id", str))
    except ValueError:
        f.fail(f"{f.where}.id {f.obj['id']!r} is not a UUID")
    if f.get("role", str) not in ROLES:
        f.fail(f"{f.where}.role {f.obj['role']!r} is not one of {', '.join(ROLES)}")
    if not f.get("name", str).strip():
        f.fail(f"{f.where}.name is empty")
    if not f.get("file", str).endswith(".onnx"):
        f.fail(f"{f.where}.file must end in .onnx")
    f.get("metrics", dict)
    raw = f.get("contract", dict)
    try:
        contract = parse_contract(raw, f.obj["role"], "")
    except ContractError as exc:
        f.fail(f"{f.where}.contract.{exc.field}: {exc.problem}")
    return contract


def _refuse_repeated_roles(entries: list[dict[str, Any]], bundle: str) -> None:
    """One model per role, so installing a bundle says unambiguously which model becomes active."""
    roles = [e["role"] for e in entries]
    for role in set(roles):
        if roles.count(role) > 1:
            raise BundleError(
                bundle, f"{roles.count(role)} models have role {role!r}; one per role"
            )


def _failing(bundle: str, member: str) -> Fail:
    def fail(problem: str) -> NoReturn:
        raise BundleError(bundle, problem, member)

    return fail
