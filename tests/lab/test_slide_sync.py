"""Slides through sync (issue 23): a slide imported on tablet A, its regions and their point and
box labels reach tablet B over a real lab server; B opens the slide at the same regions and
its labels sit at the same level-0 places. Bad slide and region operations are refused by
the server and by a receiving tablet; a cut slide download resumes."""

from __future__ import annotations

import base64
import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main as appliance
from appliance.errors import ApplianceError
from appliance.importer import SlideRegions, import_paths
from appliance.label_io import export_geojson
from appliance.labels import Label, Point
from appliance.session.slide_work import SlideWork
from appliance.store import Project, oplog
from appliance.store.slides import regions, slides
from appliance.sync.blobs import BlobChannel
from appliance.sync.client import enroll, sync_project
from appliance.sync.http import Retry
from export.lab import store as lab_store
from export.lab.serve import LabServer
from testkit.slides import tissue_image, write_ndpi, write_ome_pyramid, write_svs
from tests.lab.conftest import make_config, tablet
from tests.lab.crafted import image_op, png, region_op, slide_op
from tests.lab.faults import FaultProxy
from tests.lab.test_downloads import recording
from tests.lab.test_rogue_device import Rogue, cli_works
from tests.lab.test_security import call, device

IMG = tissue_image(600, 800, seed=3)
BOXES = ((0, 0, 256, 128), (400, 300, 128, 160))


@pytest.fixture(params=["svs", "ndpi"])
def scan(request, tmp_path: Path) -> tuple[Path, str]:
    """A scanner's slide file and the vendor tiffslide names for it."""
    path = tmp_path / "scans" / f"bal.{request.param}"
    path.parent.mkdir()
    if request.param == "svs":
        write_svs(path, IMG, mpp=0.25, tile=128)
        return path, "aperio"
    write_ndpi(path, IMG, mpp=0.25, levels=2)
    return path, "hamamatsu"


def annotate(project: Project) -> dict[str, list]:
    """On each region, as the expert does on the slide: a point and a box placed in level-0
    coordinates (`SlideWork`), saved; returns each region's marks (level 0) by image sha."""
    out = {}
    for k, r in enumerate(regions(project)):
        work = SlideWork(project, r.image_id, "anna")
        try:
            assert work.place_point(r.x + 10.5 + k, r.y + 20)
            assert work.draw_box(r.x + 30, r.y + 40, r.x + 60.5, r.y + 70)
            work.save()
            out[project.image(r.image_id).sha256] = work.objects()
        finally:
            work.close()
    return out


def placements(project: Project) -> dict[str, tuple]:
    """Region image sha → (slide sha, x, y, width, height, origin)."""
    by_id = {s.id: s.sha256 for s in slides(project)}
    return {
        project.image(r.image_id).sha256: (by_id[r.slide_id], r.x, r.y, r.width, r.height, r.origin)
        for r in regions(project)
    }


def test_a_slide_its_regions_and_their_labels_reach_a_second_tablet(
    tmp_path: Path, lab, scan: tuple[Path, str]
) -> None:
    svs, vendor = scan
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    import_paths(a, [svs], slide_regions=SlideRegions(lab=BOXES))
    labels = annotate(a)
    sync_project(a)
    report = sync_project(b)
    assert report.ops_refused == []

    (slide_a,) = slides(a)
    (slide_b,) = slides(b)
    assert (slide_b.sha256, slide_b.name, slide_b.width, slide_b.height) == (
        slide_a.sha256,
        svs.name,
        800,
        600,
    )
    assert (slide_b.levels, slide_b.mpp, slide_b.vendor) == (2, 0.25, vendor)
    assert slide_b.path.read_bytes() == svs.read_bytes()
    assert placements(b) == placements(a) and len(placements(b)) == 2
    for r in regions(b):  # B opens each region on the slide and sees A's marks there
        work = SlideWork(b, r.image_id, "ben")
        try:
            on_slide = work.slide.read_region(r.x, r.y, r.width, r.height)
            assert np.array_equal(on_slide, b.load_pixels(r.image_id))
            assert work.objects() == labels[b.image(r.image_id).sha256]
        finally:
            work.close()
    # the labels lie at the same level-0 places on both tablets (QuPath's coordinates)
    export_geojson(a, tmp_path / "ga")
    export_geojson(b, tmp_path / "gb")
    ga = json.loads((tmp_path / "ga" / "bal.geojson").read_text())
    gb = json.loads((tmp_path / "gb" / "bal.geojson").read_text())
    assert ga == gb and len(ga["features"]) == 4
    # and again: nothing new either way
    assert sync_project(b).pulled_ops == 0
    assert sync_project(a).pulled_ops == 0


def test_regions_added_later_on_the_second_tablet_come_back(tmp_path: Path, lab) -> None:
    from appliance.importer import add_regions
    from appliance.store.slides import find_slide

    path = tmp_path / "section.ome.tif"
    write_ome_pyramid(path, IMG, levels=3, tile=128, mpp=0.5)
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    import_paths(a, [path], slide_regions=SlideRegions(lab=BOXES[:1]))
    sync_project(a)
    sync_project(b)
    add_regions(b, find_slide(b, "section.ome.tif"), [(500, 100, 200, 200)], "expert")
    sync_project(b)
    sync_project(a)
    assert placements(a) == placements(b)
    assert sorted(v[1:] for v in placements(a).values()) == [
        (0, 0, 256, 128, "lab"),
        (500, 100, 200, 200, "expert"),
    ]


def _rogue_slide_ops(rogue, folder: Path) -> tuple[list[dict], list[dict]]:
    """(good setup operations, malformed slide and region operations) of a rogue device."""
    svs = folder / "s.svs"
    write_svs(svs, tissue_image(240, 320, seed=5), mpp=0.25, tile=64)
    slide = rogue.upload(svs.read_bytes())
    image = rogue.upload(png(8, 8, seed=60))
    wide = rogue.upload(png(1, 4097, seed=61))
    junk = rogue.upload(png(6, 6, seed=62))
    setup = [
        slide_op("rogueslide01", slide),
        image_op("rogueimg0100", image),
        image_op("rogueimg0101", wide, height=1, width=4097),
        region_op("rogueregion1", image, slide),  # a good region, for contrast
    ]
    bad = [
        slide_op("rogueslide02", slide, width=321),  # not what its header says
        slide_op("rogueslide03", slide, levels=3),
        slide_op("rogueslide04", slide, mpp=0.5),
        slide_op("rogueslide05", junk, suffix=".png"),  # not a slide
        dict(slide_op("rogueslide06", slide), ref=image),
        slide_op("rogueslide07", slide, width=10**7),
        region_op("rogueregion2", image, slide, x=316),  # leaves the slide on the right
        region_op("rogueregion3", image, slide, y=236),  # and at the bottom
        region_op("rogueregion4", image, slide, x=-1),
        region_op("rogueregion5", image, "e" * 64),  # a slide nobody added
        region_op("rogueregion6", "d" * 64, slide),  # an image nobody added
        region_op("rogueregion7", wide, slide, x=0),  # over 4096 px on a side
        region_op("rogueregion8", image, slide, origin="guess"),
        dict(region_op("rogueregion9", image, slide), ref=f"{junk}:"),
    ]
    return setup, bad


def test_the_server_refuses_bad_slide_and_region_operations(tmp_path: Path, lab) -> None:
    rogue = Rogue(lab, "P", tmp_path / "rogue")
    setup, bad = _rogue_slide_ops(rogue, tmp_path)
    assert rogue.push(*setup) == 200
    before = len(lab.store.pull_ops(1, 0, 10_000))
    for op in bad:
        assert rogue.push(op) == 422, op["uid"]
    assert len(lab.store.pull_ops(1, 0, 10_000)) == before == 4  # nothing numbered


def test_a_tablet_refuses_bad_slide_and_region_operations_itself(
    tmp_path: Path, lab, monkeypatch
) -> None:
    rogue = Rogue(lab, "P", tmp_path / "rogue")
    setup, bad = _rogue_slide_ops(rogue, tmp_path)
    monkeypatch.setattr(lab_store, "check_operation", lambda op, known: None)
    assert rogue.push(*setup, *bad) == 200  # a server that does not check numbers them all
    monkeypatch.undo()
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    report = sync_project(b)
    assert {op.uid for op, _ in oplog.refusals(b.db) if op} == {op["uid"] for op in bad}
    assert len(report.ops_refused) == len(bad)
    (slide,) = slides(b)
    assert (slide.width, slide.height, slide.levels, slide.mpp) == (320, 240, 2, 0.25)
    (region,) = regions(b)
    assert (region.x, region.y, region.width, region.height) == (8, 8, 8, 8)
    point = Label(np.zeros((8, 8), np.uint32), {}, (Point(2.0, 3.0, 1),))
    b.save_label(region.image_id, point, author="b", source="manual")
    cli_works(b.root, tmp_path)  # exports, jobs, pre-labels and the check all work
    assert appliance(["export-geojson", str(b.root), str(tmp_path / "geo")]) == 0
    assert sync_project(b).ops_refused == []  # kept aside, not refused again


class CutProxy(FaultProxy):
    """Cuts every connection's replies after `cut_at` bytes while `faults` is on."""

    def __init__(self, upstream: tuple[str, int], cut_at: int) -> None:
        super().__init__(upstream, seed=0)
        self.cut_at = cut_at

    def _plan(self) -> tuple[int | None, int | None, float]:
        with self._lock:
            self.connections += 1
            return None, (self.cut_at if self.faults else None), 0.0


def test_a_slide_download_cut_midway_resumes_at_the_next_sync(
    tmp_path: Path, lab, monkeypatch
) -> None:
    noise = np.random.default_rng(7).integers(0, 255, (1024, 1536, 3), dtype=np.uint8)
    path = tmp_path / "noisy.svs"
    write_svs(path, noise, tile=256)  # JPEG of noise: about 2 MB that do not compress
    size = path.stat().st_size
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    import_paths(a, [path], slide_regions=SlideRegions(lab=((0, 0, 64, 64),)))
    sync_project(a)
    proxy = CutProxy(("127.0.0.1", lab.port), cut_at=size // 2)
    try:
        b = Project.create(tmp_path / "b", ["nucleus"])
        code, _ = lab.store.create_enrollment("P", "tablet", "tab-b")
        proxy.faults = False
        enroll(b, proxy.url, code, "tab-b")
        proxy.faults = True
        with pytest.raises(ApplianceError):  # the connection drops mid-slide; no retry
            sync_project(b, retry=Retry(attempts=1))
        (part,) = (b.root / ".sync-downloads").glob("*.part")
        got = part.stat().st_size
        assert size // 4 < got < size and slides(b) == []
        proxy.faults = False
        seen = recording(monkeypatch)
        sync_project(b)
    finally:
        proxy.close()
    slide_gets = [(r, s) for p, r, s in seen if p.endswith(slides(a)[0].sha256)]
    assert slide_gets == [(f"bytes={got}-", 206)]  # only the rest was fetched
    (slide,) = slides(b)
    assert slide.path.read_bytes() == path.read_bytes() and not part.exists()
    assert placements(b) == placements(a)


def test_a_slide_over_the_blob_limit_passes_under_the_labs_slide_limit(
    tmp_path: Path, database
) -> None:
    noise = np.random.default_rng(8).integers(0, 255, (512, 768, 3), dtype=np.uint8)
    path = tmp_path / "noisy.svs"
    write_svs(path, noise, tile=256)
    size = path.stat().st_size
    assert size > 256 << 10
    limits = dict(max_blob_bytes=256 << 10, max_chunk_bytes=128 << 10)
    config = make_config(tmp_path / "lab", database, max_slide_bytes=size, **limits)
    with LabServer(config) as lab:
        a = tablet(tmp_path / "a", lab, "P", "tab-a")
        b = tablet(tmp_path / "b", lab, "P", "tab-b")
        import_paths(a, [path], slide_regions=SlideRegions(lab=((0, 0, 64, 64),)))
        sync_project(a, chunk=100 << 10)
        sync_project(b)
        assert slides(b)[0].path.read_bytes() == path.read_bytes()
        # a blob announced as a slide may not then be sent as an ordinary image
        rogue = Rogue(lab, "P", tmp_path / "rogue")
        big = png(300, 600, seed=9)
        assert len(big) > 256 << 10
        sha = hashlib.sha256(big).hexdigest()
        (rogue.folder / sha).write_bytes(big)
        BlobChannel(rogue.http, rogue.base, 100 << 10).upload(sha, rogue.folder / sha, kind="slide")
        assert rogue.push(image_op("roguebigimg1", sha, height=300, width=600)) == 422
    config = make_config(tmp_path / "lab2", database, max_slide_bytes=size - 1, **limits)
    with LabServer(config) as lab:
        c = tablet(tmp_path / "c", lab, "Q", "tab-c")  # Q: PostgreSQL's database is shared
        import_paths(c, [path], slide_regions=SlideRegions(lab=((0, 0, 64, 64),)))
        with pytest.raises(ApplianceError, match=f"413 blob over the limit of {size - 1}") as e:
            sync_project(c, chunk=100 << 10)
        assert str(e.value).startswith(f"{slides(c)[0].path}: ")  # names the slide file


def test_unfinished_uploads_count_against_the_project_quota(tmp_path: Path, database) -> None:
    """A device cannot fill the server by sending parts of many uploads: every chunk is
    checked against the quota with the bytes of all unfinished uploads counted."""
    config = make_config(
        tmp_path / "lab",
        database,
        max_chunk_bytes=128 << 10,
        max_blob_bytes=256 << 10,
        max_project_bytes=300 << 10,
        max_open_uploads=3,
    )
    with LabServer(config) as lab:
        token, _ = device(lab, "A")
        chunk = b"x" * (100 << 10)

        def create(length: int) -> str:
            sha = hashlib.sha256(b"%d" % length).hexdigest()
            meta = "sha256 " + base64.b64encode(sha.encode()).decode()
            status, headers, _ = call(
                lab,
                token,
                "POST",
                "/api/v1/projects/A/uploads",
                headers={"Upload-Length": str(length), "Upload-Metadata": meta},
            )
            assert status == 201, status
            return headers["location"]

        def patch(url: str, offset: int) -> int:
            headers = {
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            }
            return call(lab, token, "PATCH", url, chunk, headers)[0]

        first, second = create(250 << 10), create(240 << 10)
        assert patch(first, 0) == patch(first, 100 << 10) == 204  # 200 KiB held in parts
        assert patch(second, 0) == 204  # 300 KiB: the quota, not more
        assert patch(second, 100 << 10) == 413
        assert call(lab, token, "HEAD", second, headers={"Tus-Resumable": "1.0.0"})[0] == 404
        assert (
            call(
                lab,
                token,
                "POST",
                "/api/v1/projects/A/uploads",
                headers={
                    "Upload-Length": str(150 << 10),
                    "Upload-Metadata": "sha256 " + base64.b64encode(b"b" * 64).decode(),
                },
            )[0]
            == 413
        )  # 200 KiB held + 150
        create(50 << 10)
        create(60 << 10)
        meta = "sha256 " + base64.b64encode(b"a" * 64).decode()
        status = call(
            lab,
            token,
            "POST",
            "/api/v1/projects/A/uploads",
            headers={"Upload-Length": "10", "Upload-Metadata": meta},
        )[0]
        assert status == 429  # three unfinished uploads of this device: no fourth


def test_a_slide_is_never_held_whole_in_memory_by_sync(tmp_path: Path, lab) -> None:
    """Slides are GBs: uploading, checking, storing and downloading one streams it in chunks.
    A 24 MB slide goes tablet → lab server → tablet (server in this process, so its
    allocations count too) with a Python heap peak of a few chunks of 1 MiB."""
    noise = np.random.default_rng(9).integers(0, 255, (2048, 3072, 3), dtype=np.uint8)
    path = tmp_path / "noise.ome.tif"
    write_ome_pyramid(path, noise, levels=2, tile=256)  # deflate of noise: no smaller
    size = path.stat().st_size
    assert size > 20 << 20
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    import_paths(a, [path], slide_regions=SlideRegions(lab=((0, 0, 64, 64),)))
    peaks = []
    for t in (a, b):
        tracemalloc.start()
        try:
            sync_project(t, chunk=1 << 20)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert slides(b)[0].path.read_bytes() == path.read_bytes()
    assert max(peaks) < 8 << 20, peaks


def test_the_same_slide_imported_on_two_tablets_syncs_once(tmp_path: Path, lab) -> None:
    """The lab's USB stick goes round: A and B import the same slide, with one region in
    common. Both slide.added and both region.added of the common region are accepted; each
    tablet keeps one slide, and every region once, at its place."""
    path = tmp_path / "section.ome.tif"
    write_ome_pyramid(path, IMG, levels=2, tile=128, mpp=0.5)
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    import_paths(a, [path], slide_regions=SlideRegions(lab=BOXES))
    import_paths(b, [path], slide_regions=SlideRegions(lab=(BOXES[1], (600, 0, 200, 100))))
    for t in (a, b, a):
        assert sync_project(t).ops_refused == []
    assert len(slides(a)) == len(slides(b)) == 1
    assert placements(a) == placements(b) and len(placements(a)) == 3


def test_a_pull_page_never_ends_between_a_region_image_and_its_place(tmp_path: Path, lab):
    path = tmp_path / "section.ome.tif"
    write_ome_pyramid(path, IMG, levels=2, tile=128, mpp=0.5)
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    import_paths(a, [path], slide_regions=SlideRegions(lab=BOXES))
    sync_project(a)
    kinds = [op.kind for op in lab.store.pull_ops(1, 0, 2)]
    assert kinds == ["slide.added", "image.added", "region.added"]


def test_slides_imported_before_slide_sync_are_sent_at_the_next_sync(tmp_path: Path, lab) -> None:
    """A project whose slides and regions predate their operations (imported by an older
    version) logs them at its first sync (`sync_log.backfill`), after the images they name."""
    path = tmp_path / "section.ome.tif"
    write_ome_pyramid(path, IMG, levels=2, tile=128, mpp=0.5)
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    import_paths(a, [path], slide_regions=SlideRegions(lab=BOXES))
    with a.transaction():  # as an older version left it: no slide or region operations
        a.db.execute(
            "DELETE FROM outbox WHERE ref IN (SELECT uid FROM operations WHERE kind IN "
            "('slide.added', 'region.added'))"
        )
        a.db.execute("DELETE FROM operations WHERE kind IN ('slide.added', 'region.added')")
    sync_project(a)
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    assert sync_project(b).ops_refused == []
    assert placements(b) == placements(a) and len(placements(b)) == 2
    assert sync_project(a).pushed_ops == 0  # logged once
