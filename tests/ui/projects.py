"""Real projects for the UI tests (and the screenshot workspace): synthetic 16-bit cell images."""

from __future__ import annotations

from pathlib import Path

from testkit.projects import cell_image, make_project

__all__ = [
    "DEMO_CLASSES",
    "cell_image",
    "demo_workspace",
    "make_project",
    "prelabel_bundle",
    "upgrade_bundle",
]


# twelve classes, one with a long name: the side panel and class editor must cope with both
DEMO_CLASSES = (
    "nucleus",
    "debris",
    "mitosis",
    "apoptotic body",
    "lymphocyte",
    "macrophage",
    "neutrophil",
    "plasma cell",
    "fibroblast",
    "endothelial cell",
    "tumour-infiltrating lymphocyte (TIL)",
    "other",
)


def upgrade_bundle(folder: Path) -> Path:
    """A model bundle with an upgrade model that grows the coarse mask by one pixel (3×3)."""
    from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
    from tests.assist.onnx_builders import contract, mask_model

    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = mask_model(folder / "upgrade.onnx")
    out = folder / "upgrade-bundle.zip"
    spec = ModelSpec("upgrade", "grow-1px", onnx_path, contract(mask=True), {"dice": 0.91})
    write_model_bundle(out, [spec], job_id="job-demo-upgrade")
    return out


def prelabel_bundle(folder: Path, name: str = "threshold-unet") -> Path:
    """A model bundle with a threshold pre-label model (2-class softmax)."""
    from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
    from tests.assist.onnx_builders import contract, threshold_model

    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = threshold_model(folder / f"{name}.onnx")
    out = folder / f"{name}.zip"
    spec = ModelSpec("prelabel", name, onnx_path, contract(), {"dice": 0.84, "images": 32})
    write_model_bundle(out, [spec], job_id="job-demo-prelabel")
    return out


def demo_workspace(root: Path) -> Path:
    """The workspace of the screenshot tour: two projects, labels, models, Otsu pre-labels."""
    from appliance.assist import prelabel
    from appliance.bundles.install import install_model_bundle

    root.mkdir(parents=True, exist_ok=True)
    project = make_project(root / "Nuclei study", n=8, size=512, classes=DEMO_CLASSES)
    for image_id in (2, 3):
        label, _ = prelabel.run(project, image_id, "otsu", save=False)
        project.save_label(image_id, label, author="Dr Demo", source="manual", seconds_spent=95)
    project.set_setting("ui.prelabel", "otsu")
    project.set_setting("inspection", {"warning_threshold": 0.97})
    bundles = root.parent / "bundles"  # test models, not a lab's: nothing to verify them with
    for bundle in (
        prelabel_bundle(bundles),
        prelabel_bundle(bundles, "threshold-unet-v2"),
        upgrade_bundle(bundles),
    ):
        install_model_bundle(project, bundle, allow_unsigned=True)
    project.close()
    make_project(root / "Spheroids", n=3, size=256, classes=("spheroid",)).close()
    return root
