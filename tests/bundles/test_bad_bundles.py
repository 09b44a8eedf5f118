"""A corpus of bad model bundles, each refused with its own one-line message, nothing changed."""

from __future__ import annotations

import json
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import external_data_helper

from appliance.bundles import archive, onnx_check
from appliance.bundles.archive import BundleError, Limits
from appliance.bundles.install import install_model_bundle
from appliance.security.signing import default_signing_key, sign_manifest
from appliance.store import Project
from appliance.store.models import list_models

from .conftest import snapshot

MODEL = "models/0-prelabel.onnx"


@dataclass
class Parts:
    """A good bundle taken apart: its manifest and its members' bytes, ready to be spoiled."""

    manifest: dict
    members: dict[str, bytes]
    tmp: Path

    def listed(self, members: dict[str, bytes] | None = None) -> dict:
        """The manifest with a correct member list for `members`."""
        members = self.members if members is None else members
        entries = [
            {"path": n, "size": len(d), "sha256": archive.hashlib.sha256(d).hexdigest()}
            for n, d in members.items()
        ]
        return {**self.manifest, "members": entries}


def raw_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write entries exactly as given: no name checks, duplicates allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for info, data in entries:
                zf.writestr(info, data)
    return path


def build(
    parts: Parts,
    manifest: dict | bytes,
    members: dict[str, bytes] | None = None,
    extra: list[tuple[str | zipfile.ZipInfo, bytes]] = (),
) -> Path:
    """The spoiled bundle, signed by the test lab's key: a signature vouches for the manifest,
    never for a bundle the reader would otherwise refuse."""
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    signature = sign_manifest(default_signing_key(), raw)
    entries = [
        ("manifest.json", raw),
        ("manifest.sig", signature),
        *(parts.members if members is None else members).items(),
    ]
    return raw_zip(parts.tmp / "bad.zip", [*entries, *extra])


def entry(name: str, mode: int = stat.S_IFREG | 0o644, windows_attrs: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (mode << 16) | windows_attrs
    return info


def listed_extra(parts: Parts, name: str | zipfile.ZipInfo, data: bytes) -> Path:
    """An extra entry that the manifest does list, so only its name or type is wrong."""
    plain = name.filename if isinstance(name, zipfile.ZipInfo) else name
    manifest = parts.listed({**parts.members, plain: data})
    return build(parts, manifest, extra=[(name, data)])


def with_model(parts: Parts, data: bytes) -> Path:
    members = {**parts.members, MODEL: data}
    return build(parts, parts.listed(members), members)


def external_data_model(parts: Parts) -> bytes:
    model = onnx.load_from_string(parts.members[MODEL])
    tensor = model.graph.initializer[0]
    external_data_helper.set_external_data(tensor, location="../../weights.bin")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    return model.SerializeToString()


def forged_size(parts: Parts) -> Path:
    """Headers (local and central) and manifest all claim 10 bytes; the data inflates to 64 KiB."""
    data = bytes(range(256)) * 256
    members = {**parts.members, "extra/big.bin": data}
    manifest = parts.listed(members)
    manifest["members"][-1]["size"] = 10
    path = build(parts, manifest, members)
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("extra/big.bin")
    struct.pack_into("<I", raw, info.header_offset + 22, 10)
    central = raw.rfind(b"extra/big.bin") - 46
    struct.pack_into("<I", raw, central + 24, 10)
    path.write_bytes(bytes(raw))
    return path


def wrong_contract(parts: Parts) -> Path:
    manifest = parts.listed()
    manifest["models"][0]["contract"]["input_name"] = "pixels"
    return build(parts, manifest)


def changed(parts: Parts, **keys: object) -> Path:
    return build(parts, {**parts.listed(), **keys})


def without(parts: Parts, key: str) -> Path:
    manifest = parts.listed()
    del manifest[key]
    return build(parts, manifest)


def flipped_byte(parts: Parts) -> Path:
    data = bytearray(parts.members[MODEL])
    data[-1] ^= 0xFF
    return build(parts, parts.listed(), {**parts.members, MODEL: bytes(data)})


def many_members(parts: Parts) -> Path:
    members = {**parts.members, **{f"extra/{i}.txt": b"x" for i in range(1000)}}
    return build(parts, parts.listed(members), members)


def truncated(parts: Parts, good: Path) -> Path:
    data = good.read_bytes()
    out = parts.tmp / "bad.zip"
    out.write_bytes(data[: len(data) // 2])
    return out


# name -> (builder, member named in the message or None, fragment of the problem)
CORPUS: dict[str, tuple[Callable[..., Path], str | None, str]] = {
    "member outside the manifest": (
        lambda p: build(p, p.listed(), extra=[("extra/sneaky.txt", b"hi")]),
        "extra/sneaky.txt",
        "not listed in the manifest",
    ),
    "missing member": (
        lambda p: build(p, p.listed(), {}),
        MODEL,
        "listed in the manifest but missing",
    ),
    "size mismatch": (
        lambda p: changed(
            p, members=[{**p.listed()["members"][0], "size": len(p.members[MODEL]) + 1}]
        ),
        MODEL,
        "size mismatch",
    ),
    "sha256 mismatch": (flipped_byte, MODEL, "sha256 mismatch"),
    "parent traversal": (
        lambda p: listed_extra(p, "../evil.txt", b"x"),
        "../evil.txt",
        "path traversal",
    ),
    "absolute path": (
        lambda p: listed_extra(p, "/tmp/evil.txt", b"x"),
        "/tmp/evil.txt",
        "absolute path",
    ),
    "drive letter": (lambda p: listed_extra(p, "C:/evil.txt", b"x"), "C:/evil.txt", "drive letter"),
    "backslash": (
        lambda p: listed_extra(p, "extra\\evil.txt", b"x"),
        "extra\\evil.txt",
        "backslash",
    ),
    "symlink": (
        lambda p: listed_extra(p, entry("extra/link", stat.S_IFLNK | 0o777), b"/etc/passwd"),
        "extra/link",
        "symbolic link",
    ),
    "windows link (hardlink/junction)": (
        lambda p: listed_extra(p, entry("extra/junction", windows_attrs=0x400), b"x"),
        "extra/junction",
        "reparse point",
    ),
    "device file": (
        lambda p: listed_extra(p, entry("extra/tty", stat.S_IFCHR | 0o600), b""),
        "extra/tty",
        "character device",
    ),
    "fifo": (
        lambda p: listed_extra(p, entry("extra/pipe", stat.S_IFIFO | 0o600), b""),
        "extra/pipe",
        "FIFO",
    ),
    "duplicate names": (
        lambda p: build(p, p.listed(), extra=[(MODEL, p.members[MODEL])]),
        MODEL,
        "duplicate name: appears twice",
    ),
    "names differing only in case": (
        lambda p: listed_extra(p, MODEL.upper(), b"x"),
        MODEL.upper(),
        "differs only in case",
    ),
    "zip bomb (compression ratio)": (
        lambda p: listed_extra(p, "extra/zeros.bin", bytes(16 << 20)),
        "extra/zeros.bin",
        "compression ratio over 200:1",
    ),
    "forged sizes in zip headers": (forged_size, "extra/big.bin", "corrupt data"),
    "too many members": (many_members, None, "exceed the cap of 1000"),
    "truncated zip": (truncated, None, "not a readable zip archive"),
    "no manifest": (
        lambda p: raw_zip(p.tmp / "bad.zip", list(p.members.items())),
        None,
        "no manifest.json",
    ),
    "manifest not JSON": (
        lambda p: build(p, b"{not json"),
        "manifest.json",
        "not valid UTF-8 JSON",
    ),
    "manifest with a wrong type": (
        lambda p: changed(p, format_version="1"),
        "manifest.json",
        "format_version' must be an integer, got a string",
    ),
    "manifest missing a key": (
        lambda p: without(p, "id"),
        "manifest.json",
        "required key 'manifest.id' is missing",
    ),
    "newer format_version": (
        lambda p: changed(p, format_version=2),
        "manifest.json",
        "format_version 2 is newer than this appliance reads (model version 1)",
    ),
    "other bundle format": (
        lambda p: changed(p, format="training-job"),
        "manifest.json",
        "'training-job' is a different bundle format",
    ),
    "ONNX random bytes": (
        lambda p: with_model(p, np.random.default_rng(0).bytes(len(p.members[MODEL]))),
        MODEL,
        "ONNX",
    ),
    "ONNX external data": (
        lambda p: with_model(p, external_data_model(p)),
        MODEL,
        "refers to external data",
    ),
    "contract does not match graph": (wrong_contract, MODEL, "graph has no input 'pixels'"),
}


@pytest.fixture
def setup(tmp_path: Path, model_bundle):
    good = model_bundle("good.zip")
    with zipfile.ZipFile(good) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        members = {n: zf.read(n) for n in zf.namelist() if n not in archive.RESERVED}
    project = Project.create(tmp_path / "proj", ["nucleus"])
    install_model_bundle(project, model_bundle("installed.zip", seed=5))
    project.close()
    return Parts(manifest, members, tmp_path), good, tmp_path / "proj"


def refuse(project_root: Path, bundle: Path) -> BundleError:
    """Install `bundle` and return the refusal, checking the project is byte-identical."""
    with Project.open(project_root) as project:
        before = snapshot(project_root)
        with pytest.raises(BundleError) as caught:
            install_model_bundle(project, bundle)
        assert snapshot(project_root) == before
        assert len(list_models(project)) == 1
    return caught.value


def test_corpus_is_refused_each_with_its_own_message(setup) -> None:
    parts, good, root = setup
    messages = {}
    for name, (make, member, fragment) in CORPUS.items():
        bundle = make(parts, good) if make is truncated else make(parts)
        error = refuse(root, bundle)
        text = str(error)
        assert fragment in error.problem, f"{name}: {text}"
        assert error.member == member, f"{name}: {text}"
        assert text.startswith(f"bundle {bundle}") and "\n" not in text, name
        messages[name] = text
    assert len(set(messages.values())) == len(CORPUS) >= 12


def test_total_size_cap(setup, monkeypatch) -> None:
    parts, _good, root = setup
    monkeypatch.setitem(archive.LIMITS, "model", Limits(max_members=100, max_total_bytes=50))
    error = refuse(root, build(parts, parts.listed()))
    assert "over the cap of 50" in error.problem


@pytest.mark.parametrize("case", ["ONNX random bytes", "ONNX external data"])
def test_without_onnx_package_onnxruntime_still_refuses(setup, monkeypatch, case: str) -> None:
    parts, _good, root = setup

    def no_onnx(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(onnx_check.importlib, "import_module", no_onnx)
    make, member, _fragment = CORPUS[case]
    error = refuse(root, make(parts))
    assert error.member == member and "onnxruntime cannot load it" in error.problem
