"""The archive layer: writer and reader agree, for any member names and contents."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.bundles.archive import (
    MANIFEST_NAME,
    BundleError,
    BundleReader,
    member_name_problem,
    write_bundle,
)

segment = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\:"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
names = st.lists(segment, min_size=1, max_size=3).map("/".join).filter(lambda n: n != MANIFEST_NAME)
members = st.dictionaries(names, st.binary(max_size=3000), min_size=1, max_size=6).filter(
    lambda d: len({k.casefold() for k in d}) == len(d)
)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(content=members)
def test_random_members_round_trip(tmp_path: Path, content: dict[str, bytes]) -> None:
    out = tmp_path / "random.zip"
    bundle_id = write_bundle(out, "model", {"note": "hypothesis"}, content)
    with BundleReader(out, "model") as reader:
        reader.verify_all()
        assert reader.manifest["id"] == bundle_id
        assert set(reader.members) == set(content)
        for name, data in content.items():
            assert reader.read_bytes(name) == data


@SETTINGS
@given(name=st.text(max_size=40), data=st.binary(max_size=200))
def test_any_name_is_refused_by_writer_or_round_trips(
    tmp_path: Path, name: str, data: bytes
) -> None:
    out = tmp_path / "any.zip"
    try:
        write_bundle(out, "model", {}, {name: data})
    except BundleError as exc:
        assert member_name_problem(name) or name == MANIFEST_NAME, str(exc)
        return
    with BundleReader(out, "model") as reader:
        assert reader.read_bytes(name) == data


def test_manifest_lists_every_member_with_size_and_hash(tmp_path: Path) -> None:
    out = tmp_path / "b.zip"
    write_bundle(out, "training-job", {"task": "all"}, {"a.bin": b"abc", "d/e.txt": b""})
    manifest = json.loads(zipfile.ZipFile(out).read(MANIFEST_NAME))
    assert manifest["format"] == "training-job" and manifest["format_version"] == 1
    assert manifest["producer"]["name"] == "appliance"
    assert manifest["members"] == [
        {
            "path": "a.bin",
            "size": 3,
            "sha256": ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        },
        {
            "path": "d/e.txt",
            "size": 0,
            "sha256": ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        },
    ]


def test_highly_compressible_member_is_stored_so_the_bomb_guard_accepts_it(tmp_path: Path) -> None:
    out = tmp_path / "zeros.zip"
    write_bundle(out, "model", {}, {"zeros.raw": bytes(4 << 20)})
    assert zipfile.ZipFile(out).getinfo("zeros.raw").compress_type == zipfile.ZIP_STORED
    with BundleReader(out, "model") as reader:
        reader.verify_all()


def test_writer_refuses_reserved_keys_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "x.zip"
    with pytest.raises(BundleError, match="reserved"):
        write_bundle(out, "model", {}, {MANIFEST_NAME: b"{}"})
    with pytest.raises(Exception, match="reserved"):
        write_bundle(out, "model", {"id": "mine"}, {})
    assert list(tmp_path.iterdir()) == []
