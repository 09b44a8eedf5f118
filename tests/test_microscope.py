"""Microscope files through bioio's Java-free plugins: one channel as a stack, read plane by
plane; a missing plugin or an unreadable file is one line naming the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.microscope import open_stack
from appliance.store import Project
from testkit.microscope_files import LifSeries, edit_lif_xml, write_lif, write_nd2
from tests.robust.conftest import cli, unchanged

DATA = (np.arange(2 * 3 * 4 * 64 * 80) % 4000).astype(np.uint16).reshape(2, 3, 4, 64, 80)


def _ome_zarr(path: Path) -> Path:
    writers = pytest.importorskip("bioio_ome_zarr.writers")
    writer = writers.OMEZarrWriter(
        str(path),
        level_shapes=[DATA.shape],
        dtype=DATA.dtype,
        channels=[writers.Channel(label=n, color="FFFFFF") for n in ("DAPI", "GFP", "RFP")],
        axes_names=["t", "c", "z", "y", "x"],
        axes_types=["time", "channel", "space", "space", "space"],
    )
    writer.write_full_volume(DATA)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", "nucleus").rc == 0
    return root


def test_ome_zarr_channel_by_name_becomes_a_t_z_stack(project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    _ome_zarr(folder / "timelapse.ome.zarr")
    res = cli("import", project, folder, "--channel", "GFP")  # found inside a folder
    assert res.rc == 0, res.err
    assert "imported 8" in res.out
    assert "2 × 4 planes (T × Z) of channel GFP; channels DAPI, GFP, RFP" in res.out
    with Project.open(project) as p:
        images = p.images()
        assert [r.frame for r in images] == list(range(8))
        for k, rec in enumerate(images):
            assert np.array_equal(p.load_pixels(rec.id), DATA[k // 4, 1, k % 4])
            assert rec.dtype == "uint16"
    again = cli("import", project, folder / "timelapse.ome.zarr", "--channel", "1")
    assert "imported 0, duplicates 8" in again.out


def test_unknown_channel_is_one_line_and_stores_nothing(project: Path, tmp_path: Path) -> None:
    path = _ome_zarr(tmp_path / "cells.ome.zarr")
    for channel, needle in (
        ("YFP", "no channel 'YFP' (channels: DAPI, GFP, RFP)"),
        ("7", "no channel 7"),
    ):
        with unchanged(project):
            res = cli("import", project, path, "--channel", channel)
        (line,) = res.err.strip().splitlines()
        assert res.rc == 1 and needle in line and str(path) in line


@pytest.mark.parametrize(("suffix", "fmt"), [(".nd2", "Nikon ND2"), (".lif", "Leica LIF")])
def test_unreadable_files_name_the_file_and_the_format(
    project: Path, tmp_path: Path, suffix: str, fmt: str
) -> None:
    pytest.importorskip(f"bioio_{suffix[1:]}")
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00" * 4096)
    with unchanged(project):
        res = cli("import", project, path)
    (line,) = res.err.strip().splitlines()
    assert res.rc == 1 and f"{path}: not a readable {fmt} file" in line


def test_a_missing_plugin_is_named(project: Path, tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        "appliance.microscope.importlib.util.find_spec",
        lambda name, *a: None if name == "bioio_czi" else real(name, *a),
    )
    path = tmp_path / "zeiss.czi"
    path.write_bytes(b"ZISRAWFILE" + b"\x00" * 100)
    with pytest.raises(ApplianceError) as err:
        open_stack(path)
    assert str(err.value) == (
        f"{path}: reading Zeiss CZI files needs the package bioio-czi, which is not installed "
        "(pip install 'annotation-appliance[microscopy]')"
    )
    with unchanged(project):
        res = cli("import", project, path)
    assert "needs the package bioio-czi" in res.err


def test_czi_written_by_pylibczirw_imports_its_channel(project: Path, tmp_path: Path) -> None:
    pytest.importorskip("bioio_czi")
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    planes = DATA[0, :, :2]  # C=3, Z=2
    path = tmp_path / "zeiss.czi"
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for c in range(3):
            for z in range(2):
                czi.write(data=planes[c, z], plane={"C": c, "Z": z, "T": 0})
    res = cli("import", project, path, "--channel", "2")
    assert res.rc == 0, res.err
    assert "imported 2" in res.out and "1 × 2 planes (T × Z) of channel Channel:2" in res.out
    with Project.open(project) as p:
        for z, rec in enumerate(p.images()):
            assert np.array_equal(p.load_pixels(rec.id), planes[2, z])


def _stack(dtype: type, shape: tuple[int, ...] = (2, 3, 3, 24, 32), seed: int = 0) -> np.ndarray:
    """(T, C, Z, Y, X) noise, every plane different from every other."""
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, shape, endpoint=True).astype(dtype)


# the names each instrument's software gives channels: Leica a LUT, Nikon a dye
CHANNELS = {".lif": ("Blue", "Green", "Red"), ".nd2": ("DAPI", "GFP", "mCherry")}


def _write(path: Path, data: np.ndarray) -> Path:
    """A LIF (with a second series after the first, which must not leak in) or an ND2."""
    names = CHANNELS[path.suffix]
    if path.suffix == ".lif":
        other = LifSeries("Overview", _stack(data.dtype.type, data.shape, seed=9), names)
        return write_lif(path, data, names, more=[other])
    return write_nd2(path, data, names)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lif_writer_is_read_by_liffile_as_written(tmp_path: Path, dtype: type) -> None:
    """The file itself is right, read by liffile alone: a writer bug cannot hide behind ours."""
    liffile = pytest.importorskip("liffile")
    data, second = _stack(dtype), _stack(dtype, (1, 2, 1, 24, 32), seed=1)
    more = [LifSeries("Overview", second, ("Gray", "Red"))]
    path = write_lif(tmp_path / "leica.lif", data, CHANNELS[".lif"], more=more)
    assert path.stat().st_size < 2 * data.nbytes + 8_000  # KBs: the pixels and a little XML
    with liffile.LifFile(path) as lif:
        first, other = lif.images
        assert (first.name, other.name) == ("Series001", "Overview")
        assert first.sizes == {"T": 2, "Z": 3, "C": 3, "Y": 24, "X": 32}
        assert first.dtype == dtype and other.dtype == dtype
        assert [c.lut_name for c in first._channels] == list(CHANNELS[".lif"])
        assert np.array_equal(first.asarray(), data.transpose(0, 2, 1, 3, 4))
        assert np.array_equal(other.asarray(), second[0, :, 0])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_nd2_writer_is_read_by_nd2_as_written(tmp_path: Path, dtype: type) -> None:
    """The file itself is right, read by the nd2 package alone (sizes, channels, voxel size,
    experiment loops, every frame)."""
    nd2 = pytest.importorskip("nd2")
    data = _stack(dtype)
    path = write_nd2(tmp_path / "nikon.nd2", data, CHANNELS[".nd2"])
    assert path.stat().st_size < 2 * data.nbytes + 16 * 4096  # 4 KB-aligned chunks
    with nd2.ND2File(path) as f:
        assert f.version == (3, 0)
        assert dict(f.sizes) == {"T": 2, "Z": 3, "C": 3, "Y": 24, "X": 32}
        assert f.dtype == dtype
        assert [ch.channel.name for ch in f.metadata.channels] == list(CHANNELS[".nd2"])
        assert tuple(f.voxel_size()) == (0.2, 0.2, 0.5)
        assert [loop.type for loop in f.experiment] == ["TimeLoop", "ZStackLoop"]
        assert np.array_equal(f.asarray(), data.transpose(0, 2, 1, 3, 4))


@pytest.mark.parametrize(
    ("suffix", "dtype", "channel"),
    [
        (".lif", np.uint16, "Red"),
        (".lif", np.uint8, "Blue"),
        (".nd2", np.uint16, "mCherry"),
        (".nd2", np.uint8, "GFP"),
    ],
)
def test_lif_and_nd2_channel_by_name_becomes_a_t_z_stack(
    project: Path, tmp_path: Path, suffix: str, dtype: type, channel: str
) -> None:
    pytest.importorskip(f"bioio_{suffix[1:]}")
    data = _stack(dtype)
    path = _write(tmp_path / f"scope{suffix}", data)
    res = cli("import", project, path, "--channel", channel)
    assert res.rc == 0, res.err
    assert "imported 6" in res.out
    names = CHANNELS[suffix]
    assert f"2 × 3 planes (T × Z) of channel {channel}; channels {', '.join(names)}" in res.out
    assert ("series 1 of 2 (Series001) only, not Overview" in res.out) == (suffix == ".lif")
    c = names.index(channel)
    with Project.open(project) as p:
        images = p.images()
        assert [r.frame for r in images] == list(range(6))
        for k, rec in enumerate(images):  # T-major, then Z; a LIF's first series only
            assert np.array_equal(p.load_pixels(rec.id), data[k // 3, c, k % 3])
            assert rec.dtype == np.dtype(dtype).name
    again = cli("import", project, path, "--channel", str(c))
    assert "imported 0, duplicates 6" in again.out


@pytest.mark.parametrize(
    ("suffix", "needle"), [(".lif", "cannot read plane"), (".nd2", "not a readable Nikon ND2 file")]
)
def test_file_cut_in_its_pixels_is_one_line_and_stores_nothing(
    project: Path, tmp_path: Path, suffix: str, needle: str
) -> None:
    pytest.importorskip(f"bioio_{suffix[1:]}")
    data = _stack(np.uint16)
    path = _write(tmp_path / f"cut{suffix}", data)
    raw = path.read_bytes()
    if suffix == ".lif":  # the first series' pixels start after the XML and block header
        middle = raw.rindex("MemBlock_1".encode("utf-16-le")) + 20 + data.nbytes // 2
    else:  # an ND2 frame's pixels start 4096 + 8 bytes after its chunk
        middle = raw.index(b"ImageDataSeq|3!") - 16 + 4096 + 8 + data.nbytes // 12
    path.write_bytes(raw[:middle])
    with unchanged(project):
        res = cli("import", project, path, "--channel", CHANNELS[suffix][1])
    (line,) = res.err.strip().splitlines()
    assert res.rc == 1 and str(path) in line and needle in line


def _huge_lif(path: Path) -> Path:
    write_lif(path, _stack(np.uint16, (1, 1, 1, 24, 32)), ["Gray"])

    def huge(xml: str) -> str:  # 100000 × 100000, strides consistent: only the size lies
        xml = xml.replace('DimID="1" NumberOfElements="32"', 'DimID="1" NumberOfElements="100000"')
        return xml.replace(
            'DimID="2" NumberOfElements="24"', 'DimID="2" NumberOfElements="100000"'
        ).replace('BytesInc="64"/>', 'BytesInc="200000"/>')

    edit_lif_xml(path, huge)
    return path


def _huge_nd2(path: Path) -> Path:
    lie = {"uiWidth": 100_000, "uiHeight": 100_000, "uiWidthBytes": 200_000}
    return write_nd2(path, _stack(np.uint16, (1, 1, 1, 24, 32)), ["Gray"], attributes=lie)


@pytest.mark.parametrize(("suffix", "make"), [(".lif", _huge_lif), (".nd2", _huge_nd2)])
def test_file_declaring_a_huge_image_is_refused_before_reading(
    project: Path, tmp_path: Path, suffix: str, make: Callable[[Path], Path]
) -> None:
    pytest.importorskip(f"bioio_{suffix[1:]}")
    path = make(tmp_path / f"bomb{suffix}")
    with unchanged(project):
        res = cli("import", project, path)
    (line,) = res.err.strip().splitlines()
    assert res.rc == 1 and str(path) in line
    assert "100000×100000 pixels exceeds the limit" in line


def test_lif_series_left_out_are_named(project: Path, tmp_path: Path) -> None:
    pytest.importorskip("bioio_lif")
    plane = _stack(np.uint8, (1, 1, 1, 8, 8))
    fields = [_stack(np.uint8, (1, 1, 1, 8, 8), seed) for seed in range(1, 8)]
    more = [LifSeries(f"Field{k}", field, ["Gray"]) for k, field in enumerate(fields)]
    path = write_lif(tmp_path / "fields.lif", plane, ["Gray"], more=more)
    res = cli("import", project, path)
    assert res.rc == 0, res.err
    assert "imported 1" in res.out
    left = "Field0, Field1, Field2, Field3, Field4 and 2 more"
    assert f"series 1 of 8 (Series001) only, not {left}" in res.out
    with Project.open(project) as p:
        (rec,) = p.images()
        assert np.array_equal(p.load_pixels(rec.id), plane[0, 0, 0])


def _three_series(path: Path) -> tuple[Path, list[np.ndarray]]:
    """A LIF with three series of different pixels (T=1, C=3, Z=2), the last one named
    like a folder (LAS X nests images in collections)."""
    data = [_stack(np.uint8, (1, 3, 2, 16, 24), seed) for seed in (1, 2, 3)]
    names = CHANNELS[".lif"]
    more = [LifSeries("Field A", data[1], names), LifSeries("Region/2", data[2], names)]
    return write_lif(path, data[0], names, more=more), data


@pytest.mark.parametrize("series", ["Field A", "1"])
def test_a_series_by_name_or_index_is_imported_and_named(
    project: Path, tmp_path: Path, series: str
) -> None:
    pytest.importorskip("bioio_lif")
    path, data = _three_series(tmp_path / "fields.lif")
    res = cli("import", project, path, "--series", series, "--channel", "Green")
    assert res.rc == 0, res.err
    assert "imported 2" in res.out
    assert "series 2 of 3 (Field A) only, not Series001, Region/2 (choose with --series)" in res.out
    assert ".tif" not in res.out  # no note about the temporary TIFF the planes went through
    with Project.open(project) as p:
        images = p.images()
        assert [r.name for r in images] == [
            "fields.lif (Field A).c1.tif[0]",
            "fields.lif (Field A).c1.tif[1]",
        ]
        assert {r.sequence for r in images} == {f"{path.resolve()} [Field A]"}
        for z, rec in enumerate(images):
            assert np.array_equal(p.load_pixels(rec.id), data[1][0, 1, z])


def test_all_series_become_stacks_of_their_own(project: Path, tmp_path: Path) -> None:
    pytest.importorskip("bioio_lif")
    path, data = _three_series(tmp_path / "fields.lif")
    assert cli("import", project, path, "--channel", "Red").rc == 0  # the first, as before
    res = cli("import", project, path, "--series", "all", "--channel", "Red")
    assert res.rc == 0, res.err
    assert "imported 4, duplicates 2" in res.out  # the first series was there already
    assert "3 of 3 series (Series001, Field A, Region/2), each a stack of channel Red" in res.out
    with Project.open(project) as p:
        by_sequence: dict[str | None, list] = {}
        for rec in p.images():
            by_sequence.setdefault(rec.sequence, []).append(rec)
        where = str(path.resolve())
        assert list(by_sequence) == [where, f"{where} [Field A]", f"{where} [Region/2]"]
        for k, records in enumerate(by_sequence.values()):
            assert [r.frame for r in records] == [0, 1]
            for z, rec in enumerate(records):
                assert np.array_equal(p.load_pixels(rec.id), data[k][0, 2, z])
        names = [r.name for r in by_sequence[f"{where} [Region/2]"]]
        assert names == ["fields.lif (Region_2).c2.tif[0]", "fields.lif (Region_2).c2.tif[1]"]


@pytest.mark.parametrize(
    ("series", "needle"),
    [
        ("Field B", "no series 'Field B' (series: Series001, Field A, Region/2)"),
        ("3", "no series 3 (it has 3)"),
    ],
)
def test_unknown_series_is_one_line_and_stores_nothing(
    project: Path, tmp_path: Path, series: str, needle: str
) -> None:
    pytest.importorskip("bioio_lif")
    path, _ = _three_series(tmp_path / "fields.lif")
    with unchanged(project):
        res = cli("import", project, path, "--series", series)
    (line,) = res.err.strip().splitlines()
    assert res.rc == 1 and line == f"failed: {path}: {needle}"
    with pytest.raises(ApplianceError, match="no series"):
        open_stack(path, series=series)


def test_every_series_goes_on_past_one_without_the_channel(project: Path, tmp_path: Path) -> None:
    pytest.importorskip("bioio_lif")
    data = [_stack(np.uint8, (1, 2, 1, 8, 8), seed) for seed in (1, 2, 3)]
    more = [
        LifSeries("Overview", data[1], ("Gray", "Blue")),
        LifSeries("B", data[2], ("Red", "Green")),
    ]
    path = write_lif(tmp_path / "mixed.lif", data[0], ("Red", "Green"), more=more)
    res = cli("import", project, path, "--series", "all", "--channel", "Green")
    assert res.rc == 1
    (line,) = res.err.strip().splitlines()
    assert line == f"failed: {path}: series 'Overview': no channel 'Green' (channels: Gray, Blue)"
    assert "imported 2" in res.out and "2 of 3 series (Series001, B)" in res.out
    with Project.open(project) as p:
        first, last = p.images()
        assert np.array_equal(p.load_pixels(first.id), data[0][0, 1, 0])
        assert np.array_equal(p.load_pixels(last.id), data[2][0, 1, 0])


def test_the_probe_lists_channels_and_series_without_reading_pixels(tmp_path: Path) -> None:
    pytest.importorskip("bioio_lif")
    from appliance.importer import microscope_files
    from appliance.microscope import MicroscopeInfo, same_channels

    folder = tmp_path / "day1"
    folder.mkdir()
    _three_series(folder / "fields.lif")
    lone = write_lif(folder / "gray.lif", _stack(np.uint8, (1, 1, 1, 8, 8)), ["Gray"])
    _ome_zarr(folder / "b.ome.zarr")
    _ome_zarr(folder / "c.ome.zarr")
    cut = _write(folder / "cut.lif", _stack(np.uint16))
    raw = cut.read_bytes()
    cut.write_bytes(raw[: raw.rindex("MemBlock_1".encode("utf-16-le")) + 100])  # no pixels
    (folder / "broken.nd2").write_bytes(b"\x00" * 4096)
    (folder / "notes.tif").write_bytes(b"not looked at")
    found = microscope_files([folder])  # broken.nd2 left out: the import reports it
    assert [(f.path.name, f.channels, f.series) for f in found] == [
        ("b.ome.zarr", ("DAPI", "GFP", "RFP"), ("Image",)),
        ("c.ome.zarr", ("DAPI", "GFP", "RFP"), ("Image",)),
        ("cut.lif", ("Blue", "Green", "Red"), ("Series001", "Overview")),
        ("fields.lif", ("Blue", "Green", "Red"), ("Series001", "Field A", "Region/2")),
        ("gray.lif", ("Gray",), ("Series001",)),
    ]
    assert [f.asks for f in found] == [True, True, True, True, False]
    groups = same_channels([f for f in found if f.asks])
    assert [[f.path.name for f in group] for group in groups] == [
        ["b.ome.zarr", "c.ome.zarr"],  # one question for both
        ["cut.lif", "fields.lif"],
    ]
    assert same_channels([MicroscopeInfo(lone, ("Gray",), ("a", "b"))])[0][0].asks


def test_each_file_takes_its_own_choice(tmp_path: Path) -> None:
    pytest.importorskip("bioio_lif")
    from appliance.importer import StackChoice, import_paths

    folder = tmp_path / "in"
    folder.mkdir()
    first, data = _three_series(folder / "a.lif")
    second = write_lif(folder / "b.lif", DATA[:, :, :1].astype(np.uint8), CHANNELS[".lif"])
    choices = {first: StackChoice("Red", None), second: StackChoice(1, 0)}
    with Project.create(tmp_path / "p", ["cell"]) as p:
        summary = import_paths(p, [folder], choices=choices, channel="Blue")
        assert not summary.failed and len(summary.imported) == 3 * 2 + 2
        assert not any("choose with" in note for note in summary.notes)  # the expert chose
        images = p.images()
        for k in range(3):
            for z in range(2):
                rec = images[k * 2 + z]
                assert np.array_equal(p.load_pixels(rec.id), data[k][0, 2, z])
        for t, rec in enumerate(images[6:]):
            assert np.array_equal(p.load_pixels(rec.id), DATA[t, 1, 0].astype(np.uint8))
        again = import_paths(p, [folder], channel="Red")  # no choices: the defaults
        assert len(again.imported) == 2 and len(again.duplicates) == 2
        assert any("(choose with --channel)" in note for note in again.notes)


def test_import_help_explains_channel_and_series() -> None:
    text = " ".join(cli("import", "--help").out.split())  # argparse wraps at the terminal width
    assert "--series N|NAME|all" in text and "--channel N|NAME" in text
    assert "'all' imports every series, each its own stack" in text
    assert "a LIF's images, an ND2's XY positions" in text
