"""An installed cell detector proposes points on the tablet: alone, or beside a mask pre-label;
the expert's own marks survive accepting the proposal, and no proposal lands on a marked cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import tifffile
from onnx import helper, numpy_helper

from appliance import settings
from appliance.assist import prelabel
from appliance.assist.jobs import Job, JobContext
from appliance.bundles.install import install_model_bundle
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.contract import Contract, Normalisation
from appliance.importer import import_paths
from appliance.labels import Box, Label, Point
from appliance.session.assistant import PrelabelChooser
from appliance.session.presenter import merge_under
from appliance.store import Project
from tests.bundles.test_contract_kinds import ONNX_TYPES

SPOTS = [(12, 20), (40, 44)]  # (y, x) of two bright single-pixel cells


def spot_detector(path: Path, contract: Contract) -> Path:
    """A 1×1 convolution: the class-2 ("macrophage") heatmap rises with brightness, class 1's
    is off, sizes are e^0 = 1 px."""
    w = np.zeros((4, 1, 1, 1), np.float32)
    b = np.array([-50.0, -10.0, 0.0, 0.0], np.float32)
    w[1, 0] = 20.0
    io = ONNX_TYPES[contract.dtype]
    graph = helper.make_graph(
        [helper.make_node("Conv", [contract.input_name, "w", "b"], [contract.output_name])],
        "spots",
        [helper.make_tensor_value_info(contract.input_name, io, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info(contract.output_name, io, [1, 4, "h", "w"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def project_with_detector(tmp_path: Path) -> Project:
    image = np.zeros((64, 64), np.uint16)
    for y, x in SPOTS:
        image[y, x] = 4000
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "spots.tif", image)
    project = Project.create(tmp_path / "p", ["neutrophil", "macrophage"])
    import_paths(project, [src])
    contract = Contract(
        "image",
        "logits",
        1,
        "centres",
        ("background", "neutrophil", "macrophage"),
        tile_multiple=8,
        normalisation=Normalisation("percentile", 0.0, 100.0),  # min-max: a spot is 1
    )
    onnx_path = spot_detector(tmp_path / "det.onnx", contract)
    bundle = tmp_path / "det.zip"
    write_model_bundle(bundle, [ModelSpec("detector", "spots", onnx_path, contract)])
    install_model_bundle(project, bundle)
    return project


def ctx() -> JobContext:
    return JobContext(Job(None, None))


def test_the_detector_alone_proposes_its_points(tmp_path: Path) -> None:
    project = project_with_detector(tmp_path)
    try:
        (image,) = project.images()
        settings.PRELABEL.set(project, "none")
        assert PrelabelChooser().prelabel_for(project, image.id, ctx()) is None
        settings.PRELABEL.set(project, "previous")  # no earlier frame: no mask pre-label
        method, label = PrelabelChooser().prelabel_for(project, image.id, ctx())
        assert method == "detector" and label.ids().size == 0
        assert label.objects == tuple(Point(x + 0.5, y + 0.5, 2) for y, x in SPOTS)
        # beside a mask pre-label, the detector's objects join it
        settings.PRELABEL.set(project, "otsu")
        method, both = PrelabelChooser().prelabel_for(project, image.id, ctx())
        assert method == "otsu+detector" and both.ids().size == 2 and both.objects == label.objects
        # the CLI's pre-label stores them as a version
        _, version = prelabel.run(project, image.id, prelabel.DETECTOR)
        assert version is not None and project.latest_label(image.id).label.objects == label.objects
    finally:
        project.close()


def test_accepting_a_proposal_keeps_the_experts_marks_and_skips_marked_cells() -> None:
    drawn = Label(np.zeros((50, 50), np.uint32), {}, (Point(10, 10, 1), Box(30, 30, 40, 40, 2)))
    machine = Label(
        np.zeros((50, 50), np.uint32),
        {},
        (Point(11, 12, 2), Point(35, 34, 1), Point(45, 5, 1), Box(1, 30, 9, 38, 2)),
    )
    merged = merge_under(drawn, machine)
    # the expert's point and box stay; proposals on the marked cells go; the others join
    assert merged.objects == (*drawn.objects, Point(45, 5, 1), Box(1, 30, 9, 38, 2))


def test_a_planted_control_gets_the_detectors_offer_like_any_image(tmp_path: Path) -> None:
    """Its planted pre-label is a mask: shown where other images get points it would stand
    out, so the detector's own proposal is offered."""
    from appliance.store.controls import add_control

    project = project_with_detector(tmp_path)
    try:
        (image,) = project.images()
        settings.PRELABEL.set(project, "none")
        planted = np.zeros((64, 64), np.uint32)
        planted[30:40, 30:40] = 1
        with project.transaction():
            add_control(
                project,
                image.id,
                "planted",
                Label(planted, {1: 1}),
                prelabel=Label(planted, {1: 1}),
            )
        label, _ = prelabel.run(project, image.id, prelabel.DETECTOR, save=False)
        assert label is not None and label.ids().size == 0
        assert label.objects == tuple(Point(x + 0.5, y + 0.5, 2) for y, x in SPOTS)
    finally:
        project.close()


def test_the_annotate_flow_offers_the_points_and_accepting_keeps_them(tmp_path: Path) -> None:
    """The expert sees the detector's proposal like a mask pre-label (counted in the status),
    places a point of their own, then takes the proposal and edits on top of it."""
    from appliance.session.presenter import AnnotatePresenter
    from tests.ui.test_presenter import Jobs, View

    project = project_with_detector(tmp_path)
    jobs = Jobs()
    try:
        settings.PRELABEL.set(project, "previous")  # no mask pre-label: the detector alone
        presenter = AnnotatePresenter(project, "Dr Test", View(), jobs)
        presenter.start()
        jobs.settle(lambda: presenter.offer is not None)
        assert presenter.offer is not None and presenter.offer.method == "detector"
        assert presenter.status().suggested == 2
        work = presenter.work
        assert work is not None
        work.session.place_point(40.0, 41.0)  # on the second spot's cell: the proposal there goes
        presenter.accept_offer(edit=True)
        presenter.settle_save()  # Accept and edit stores in the background
        kept = work.session.label().objects
        assert Point(40.0, 41.0, work.session.active_class) in kept
        assert Point(20.5, 12.5, 2) in kept and Point(44.5, 40.5, 2) not in kept
        assert project.latest_label(work.image_id).source == "prelabel"
    finally:
        jobs.runner.shutdown()
        project.close()
