"""Bring your own model: outside ONNX files, MONAI and segmentation-models-pytorch networks are
wrapped as bundles, installed on a tablet project and run there through onnxruntime, without torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from appliance.bundles.install import install_model_bundle  # noqa: E402
from appliance.cli import main as appliance_main  # noqa: E402
from appliance.errors import ApplianceError  # noqa: E402
from appliance.importer import import_paths  # noqa: E402
from appliance.store import Project  # noqa: E402
from export.bundle import from_torch, wrap_onnx  # noqa: E402
from export.cli import main as export_main  # noqa: E402
from export.synth import synth_samples, write_dataset  # noqa: E402

CONTRACT = {
    "input_name": "input",
    "output_name": "output",
    "input_channels": 1,
    "output_kind": "softmax",
    "classes": ["background", "nucleus"],
    "tile_multiple": 16,
}
# Prelabel through the CLI in a child whose `import torch` fails: the tablet has no torch.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from appliance.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


class Brightness(torch.nn.Module):
    """Foreground where the (normalised) image is bright: a 3×3 conv with a fixed filter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0] = 20.0 / 9
            self.conv.weight[0, 0] = -20.0 / 9
            self.conv.bias.copy_(torch.tensor([6.0, -6.0]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image)


def _tablet_project(tmp_path: Path, n: int = 3) -> Path:
    """A project of virtual-microscope images, as a tablet would hold them."""
    data = tmp_path / "data"
    write_dataset(data, n, 128, 11, "nuclei")
    project = Project.create(tmp_path / "tablet", ["nucleus"])
    assert not import_paths(project, [data / "images"]).failed
    project.close()
    return tmp_path / "tablet"


def _prelabel_without_torch(project_dir: Path, bundle: Path) -> dict[int, int]:
    """Install the bundle, pre-label every image in a torch-less child; objects per image."""
    project = Project.open(project_dir)
    try:
        install_model_bundle(project, bundle)
    finally:
        project.close()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TORCH,
            "prelabel",
            str(project_dir),
            "--method",
            "model",
            "--all",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    project = Project.open(project_dir)
    try:
        return {
            r.id: len(v.label.classes) if (v := project.latest_label(r.id)) else 0
            for r in project.images()
        }
    finally:
        project.close()


def _torchscript_onnx(path: Path) -> Path:
    """An ONNX file made outside the project's exporter: TorchScript, its own names and axes."""
    torch.onnx.export(
        Brightness().eval(),
        (torch.rand(1, 1, 64, 64),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h", 3: "w"}},
    )
    return path


def test_outside_onnx_file_is_wrapped_installed_and_prelabels_without_torch(
    tmp_path: Path,
) -> None:
    onnx_path = _torchscript_onnx(tmp_path / "brightness.onnx")
    (tmp_path / "contract.json").write_text(json.dumps(CONTRACT))
    out = tmp_path / "brightness.zip"
    args = ["bundle", "--onnx", str(onnx_path), "--contract", str(tmp_path / "contract.json")]
    assert export_main([*args, "--out", str(out), "--name", "brightness"]) == 0
    manifest = json.loads(__import__("zipfile").ZipFile(out).read("manifest.json"))
    metrics = manifest["models"][0]["metrics"]
    assert metrics["latency_ms_512_2threads"] > 0
    assert metrics["dice"] > 0.5 and 0.0 <= metrics["instance_f1"] <= 1.0
    objects = _prelabel_without_torch(_tablet_project(tmp_path), out)
    assert all(n > 0 for n in objects.values()), objects


def test_job_test_split_scores_the_wrapped_model(tmp_path: Path) -> None:
    data, proj, job = tmp_path / "data", tmp_path / "proj", tmp_path / "job.zip"
    write_dataset(data, 10, 96, 5, "nuclei")
    assert appliance_main(["init", str(proj), "--classes", "nucleus"]) == 0
    imp = ["import", str(proj), str(data / "images"), "--labels", str(data / "masks")]
    assert appliance_main(imp) == 0
    assert appliance_main(["export-job", str(proj), str(job), "--task", "segment"]) == 0
    report = wrap_onnx(
        _torchscript_onnx(tmp_path / "m.onnx"),
        role="prelabel",
        contract=CONTRACT,
        out=tmp_path / "m.zip",
        job=job,
        progress=lambda _line: None,
    )
    assert "test images of job" in report.checked_on
    assert report.metrics["dice"] > 0.5


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input_channels": 3}, "input_channels"),
        ({"output_name": "logits"}, "output_name"),
        ({"classes": ["background", "nucleus", "debris"]}, "output_kind"),
        ({"normalisation": {"method": "zscore"}}, "normalisation.method"),
        ({"input_name": None}, "input_name"),
    ],
)
def test_wrong_contract_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict, field: str
) -> None:
    onnx_path = _torchscript_onnx(tmp_path / "m.onnx")
    contract = {**CONTRACT, **change}
    if change.get("input_name", "") is None:
        del contract["input_name"]
    (tmp_path / "c.json").write_text(json.dumps(contract))
    out = tmp_path / "m.zip"
    args = ["bundle", "--onnx", str(onnx_path), "--contract", str(tmp_path / "c.json")]
    assert export_main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and repr(field) in err, err
    assert not out.exists()


def test_a_graph_the_contract_cannot_express_is_refused(tmp_path: Path) -> None:
    class TwoInputs(torch.nn.Module):
        def forward(self, input: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
            return torch.cat([input, extra], 1)

    path = tmp_path / "two.onnx"
    torch.onnx.export(
        TwoInputs(), (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)), str(path),
        dynamo=False, input_names=["input", "extra"], output_names=["output"],
    )  # fmt: skip
    with pytest.raises(ApplianceError, match="input_name"):
        wrap_onnx(path, role="prelabel", contract=CONTRACT, out=tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def _train_briefly(module: torch.nn.Module, steps: int = 25) -> list[float]:
    """A few Adam steps on 64² virtual-microscope crops, so the weights mean something."""
    from appliance.imageio import percentile_normalise

    samples = list(synth_samples(8, 64, seed=7))
    x = torch.from_numpy(np.stack([percentile_normalise(s.image, 1.0, 99.8) for s in samples]))
    y = torch.from_numpy(np.stack([(s.cells > 0).astype(np.int64) for s in samples]))
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    losses = []
    module.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(x[:, None].float()), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


@pytest.mark.slow
def test_monai_unet_from_torch_runs_on_the_tablet(tmp_path: Path) -> None:
    monai_nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    net = monai_nets.UNet(
        spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2),
        num_res_units=1,
    )  # fmt: skip
    losses = _train_briefly(net)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    out = tmp_path / "monai.zip"
    report = from_torch(
        net.eval(), CONTRACT, out=out, name="monai-unet", progress=lambda _line: None
    )
    assert report.metrics["parity_max_abs_diff"] <= 1e-4
    assert report.metrics["dice"] > 0.5
    objects = _prelabel_without_torch(_tablet_project(tmp_path), out)
    assert sum(objects.values()) > 0


def _segmentation_models_pytorch():  # -> module
    """smp, or a skip that says why (it needs torchvision, which must match the torch build)."""
    try:
        import segmentation_models_pytorch as smp
    except Exception as exc:  # ImportError, or torchvision's RuntimeError on a mismatched build
        pytest.skip(f"segmentation-models-pytorch cannot be imported here: {exc}")
    return smp


@pytest.mark.slow
def test_smp_unet_from_torch_runs_on_the_tablet(tmp_path: Path) -> None:
    smp = _segmentation_models_pytorch()
    torch.manual_seed(0)
    net = smp.Unet(
        "resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8),
        in_channels=1, classes=2,
    )  # fmt: skip
    losses = _train_briefly(net)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    out = tmp_path / "smp.zip"
    contract = {**CONTRACT, "tile_multiple": 32}
    from_torch(net.eval(), contract, out=out, name="smp-unet", progress=lambda _line: None)
    objects = _prelabel_without_torch(_tablet_project(tmp_path), out)
    assert sum(objects.values()) > 0


def test_fixed_size_model_is_tiled_at_its_size(tmp_path: Path) -> None:
    from appliance.assist.runtime import InferenceModel
    from appliance.contract import Contract
    from appliance.metrics import dice

    fixed = tmp_path / "fixed.onnx"
    torch.onnx.export(
        Brightness().eval(), (torch.rand(1, 1, 64, 64),), str(fixed), dynamo=False,
        opset_version=17, input_names=["input"], output_names=["output"],
    )  # fmt: skip
    with pytest.raises(ApplianceError, match="fixed_size"):
        wrap_onnx(fixed, role="prelabel", contract=CONTRACT, out=tmp_path / "no.zip")
    contract = {**CONTRACT, "fixed_size": 64}
    report = wrap_onnx(
        fixed, role="prelabel", contract=contract, out=tmp_path / "fixed.zip",
        progress=lambda _line: None,
    )  # fmt: skip
    assert report.metrics["dice"] > 0.5
    dynamic = InferenceModel(
        _torchscript_onnx(tmp_path / "dyn.onnx"), Contract.parse(CONTRACT, "c")
    )
    tiled = InferenceModel(fixed, Contract.parse(contract, "c"))
    for size in ((200, 150), (40, 30)):  # tiled at 64², and padded up to 64²
        image = next(iter(synth_samples(1, max(size), seed=3))).image[: size[0], : size[1]]
        a, b = dynamic.predict(image).label, tiled.predict(image).label
        assert b.instances.shape == size
        assert dice(a.instances, b.instances) > 0.97
