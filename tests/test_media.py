"""Finding USB sticks with a fake mount table and fake folders; the stored image source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.media import (
    ROOTS_ENV,
    ImageSource,
    Medium,
    Root,
    count_images,
    find_media,
    mount_points,
    search_roots,
    windows_drives,
)


def _stick(path: Path, images: int, other: int = 0) -> Path:
    (path / "sub").mkdir(parents=True)
    for k in range(images):
        (path / ("sub" if k % 2 else "") / f"img{k}.PNG").write_bytes(b"x")
    for k in range(other):
        (path / f"notes{k}.txt").write_text("n")
    (path / ".Trash-1000").mkdir()
    (path / ".Trash-1000" / "old.png").write_bytes(b"x")  # hidden: not counted
    return path


def test_mount_table_escapes_and_short_lines() -> None:
    table = "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /media/alice/MY\\040SCANS vfat rw 0 0\ngarbage\n"
    assert mount_points(table) == {Path("/"), Path("/media/alice/MY SCANS")}


def test_user_roots_list_every_folder_shared_roots_only_mount_points(tmp_path: Path) -> None:
    user_root, shared = tmp_path / "media-alice", tmp_path / "mnt"
    _stick(user_root / "SCANS", 3, other=2)
    (shared / "not-mounted").mkdir(parents=True)
    _stick(shared / "CARD", 1)
    roots = [Root(user_root, True), Root(shared, False), Root(tmp_path / "absent", True)]
    media = find_media(roots, mounts=[shared / "CARD", Path("/proc")])
    assert [(m.name, m.images, m.more) for m in media] == [("CARD", 1, False), ("SCANS", 3, False)]
    assert media[1].label() == "SCANS (3 images)"


def test_count_stops_at_the_limit(tmp_path: Path) -> None:
    _stick(tmp_path / "big", 30)
    assert count_images(tmp_path / "big", limit=10)[1] is True
    assert count_images(tmp_path / "big") == (30, False)
    assert Medium(tmp_path, "big", 10, more=True).label() == "big (10+ images)"
    assert count_images(tmp_path / "absent") == (0, False)


def test_roots_from_the_environment_replace_the_system_ones(tmp_path: Path) -> None:
    env = {ROOTS_ENV: f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}"}
    assert search_roots(env) == [Root(tmp_path / "a", True), Root(tmp_path / "b", True)]
    system = search_roots({}, user="alice")
    assert Root(Path("/media/alice"), True) in system and Root(Path("/mnt"), False) in system
    assert all(not r.any_folder for r in search_roots({}, user=""))


def test_windows_lists_removable_drive_letters_only() -> None:
    types = {"C:\\": 3, "E:\\": 2, "F:\\": 2, "Z:\\": 4}
    assert windows_drives(lambda root: types.get(root, 1)) == [Path("E:\\"), Path("F:\\")]
    media = find_media(platform="win32", drive_type=lambda root: types.get(root, 1), count=False)
    assert [m.path for m in media] == [Path("E:\\"), Path("F:\\")]


def test_source_round_trip_and_nonsense() -> None:
    source = ImageSource("usb", "/media/a/SCANS", "SCANS")
    assert ImageSource.from_json(source.to_json()) == source
    assert ImageSource.from_json({"kind": "cloud"}) is None
    assert ImageSource.from_json("usb") is None
    assert ImageSource("later").locate([]) is None


def test_a_stick_is_found_by_name_wherever_it_is_mounted(tmp_path: Path) -> None:
    now = _stick(tmp_path / "SCANS1", 2)
    source = ImageSource("usb", str(tmp_path / "gone" / "SCANS"), "SCANS")
    assert source.locate([Medium(now, "SCANS", 2)]) == now
    with pytest.raises(ApplianceError, match=r"^USB stick SCANS is not plugged in") as err:
        source.locate([Medium(now, "OTHER", 2)])
    assert "\n" not in str(err.value)
    folder = ImageSource("folder", str(tmp_path / "nowhere"))
    with pytest.raises(ApplianceError, match="nowhere: image folder not found"):
        folder.locate([])
    assert ImageSource("folder", str(now)).locate([]) == now
