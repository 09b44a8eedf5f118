"""A bundle that installs must run: every kind of contract the schema allows is installed into a
real project and served by the runtime; contracts the runtime could not serve are refused at
install, even when the bundle was written without the workstation's checks."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from appliance.assist.contract import DECODERS
from appliance.assist.runtime import active_model
from appliance.bundles.archive import BundleError, write_bundle
from appliance.bundles.install import install_model_bundle
from appliance.bundles.model_bundle import FORMAT, ModelSpec, write_model_bundle
from appliance.contract import DTYPES, INPUT_CHANNELS, OUTPUT_KINDS, Contract, ContractError
from appliance.security.signing import default_signing_key
from appliance.store import Project
from appliance.store.models import list_models

ONNX_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}


def brightness_model(path: Path, contract: Contract, *, fixed: int | None = None) -> Path:
    """Cast to float, a 1×1 convolution, cast back: the foreground channel (index 1, or the
    only one) rises with the image's brightness, or with the mask channel for upgrade models;
    any further class channel is strongly off. `fixed` gives the graph a fixed side length."""
    c_in, c_out = contract.channels_in, contract.channels_out
    w = np.zeros((c_out, c_in, 1, 1), np.float32)
    b = np.zeros(c_out, np.float32)
    fg = 1 if c_out > 1 else 0
    if contract.mask_channel:
        w[fg, c_in - 1] = 20.0
        b[fg] = -10.0
    else:
        w[fg, : contract.input_channels] = 20.0 / contract.input_channels
        b[fg] = -10.0
    if c_out > 1:
        w[0], b[0] = -w[fg], -b[fg]
        b[2:] = -50.0
    side: list[int | str] = [fixed, fixed] if fixed else ["h", "w"]
    io_type = ONNX_TYPES[contract.dtype]
    nodes = [
        helper.make_node("Cast", [contract.input_name], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["xf", "w", "b"], ["yf"]),
        helper.make_node("Cast", ["yf"], [contract.output_name], to=io_type),
    ]
    graph = helper.make_graph(
        nodes,
        "kind",
        [helper.make_tensor_value_info(contract.input_name, io_type, [1, c_in, *side])],
        [helper.make_tensor_value_info(contract.output_name, io_type, [1, c_out, *side])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def every_contract() -> list[tuple[str, Contract]]:
    """(role, contract) for each combination the schema allows: every output kind and role it
    serves, every input channel count, dtype, and 2 or 3 classes where the kind allows it."""
    out = []
    for kind, role, channels, dtype, n_classes in itertools.product(
        OUTPUT_KINDS.values(), ("prelabel", "upgrade", "detector"), INPUT_CHANNELS, DTYPES, (2, 3)
    ):
        if role not in kind.roles:
            continue
        try:
            contract = Contract(
                input_name="pixels",
                output_name="scores",
                input_channels=channels,
                mask_channel=role == "upgrade",
                dtype=dtype,
                output_kind=kind.name,
                classes=("background", "nucleus", "debris")[:n_classes],
                tile_multiple=8,
            )
        except ContractError:  # this kind refuses that class count (sigmoid: exactly 2)
            continue
        out.append((role, contract))
    return out


CONTRACTS = every_contract()


def test_every_output_kind_has_a_decoder_and_is_exercised() -> None:
    assert set(DECODERS) == set(OUTPUT_KINDS)
    assert {c.output_kind for _, c in CONTRACTS} == set(OUTPUT_KINDS)
    assert len(CONTRACTS) >= 16


@pytest.mark.parametrize(
    "role, contract",
    CONTRACTS,
    ids=[
        f"{r}-{c.output_kind}-{c.input_channels}ch-{c.dtype}-{c.n_classes}cls" for r, c in CONTRACTS
    ],
)
def test_each_installable_contract_installs_and_runs(
    tmp_path: Path, role: str, contract: Contract
) -> None:
    onnx_path = brightness_model(tmp_path / "m.onnx", contract)
    bundle = tmp_path / "b.zip"
    write_model_bundle(bundle, [ModelSpec(role, "kind", onnx_path, contract)])
    with Project.create(tmp_path / "proj", ["nucleus", "debris"]) as project:
        install_model_bundle(project, bundle)
        model = active_model(project, role)
        assert model is not None and model.contract == contract
        image = np.zeros((37, 45), np.uint16)  # not a multiple of the tile: padded and cropped
        image[:, 20:] = 4000
        mask = np.zeros(image.shape, bool)
        mask[5:15, 5:15] = True
        prediction = model.predict(image, mask if contract.mask_channel else None)
    assert prediction.probs.shape == (contract.n_classes if contract.n_classes > 2 else 2, 37, 45)
    if role == "detector":  # cells as objects: heatmap of class 1 peaks where the image is
        # dark, of class 2 (3 classes) where it is bright
        found = prediction.label.objects
        assert prediction.label.ids().size == 0 and found
        assert all((o.bounds()[0] < 20) == (o.class_id == 1) for o in found)
        assert {o.class_id for o in found} == set(range(1, contract.n_classes))
        return
    foreground = prediction.label.semantic() > 0
    expected = mask if contract.mask_channel else image > 0
    assert np.array_equal(foreground, expected)


def forged_bundle(path: Path, role: str, raw_contract: dict, onnx_path: Path) -> Path:
    """A bundle written without the model-bundle writer's checks (as a foreign tool might)."""
    entry = {
        "id": "6f1c1f9e-3b7a-4d7e-9a51-8a2a4c3c9e01",
        "role": role,
        "name": "forged",
        "file": "models/0.onnx",
        "contract": raw_contract,
        "metrics": {},
    }
    members = {"models/0.onnx": onnx_path}
    write_bundle(str(path), FORMAT, {"models": [entry]}, members, sign=default_signing_key())
    return path


BASE = Contract("image", "logits", 1, "softmax", ("background", "nucleus")).to_dict()


@pytest.mark.parametrize(
    "change, graph_in, graph_out, fragment",
    [
        # the three: each used to install and then fail every pre-label
        ({"input_channels": 2}, 2, 2, "contract.input_channels: must be 1 (grey) or 3 (RGB)"),
        (
            {"output_kind": "sigmoid", "classes": ["background", "a", "b"]},
            1,
            1,
            "contract.classes: a sigmoid output has exactly 2 classes",
        ),
        (
            {"normalisation": {"method": "zscore"}},
            1,
            2,
            "contract.normalisation.method: 'zscore' is not supported",
        ),
        # and what else the runtime could not serve
        ({"mask_channel": True}, 2, 2, "contract.mask_channel: a pre-label model gets no mask"),
        ({"layout": "NHWC"}, 1, 2, "contract.layout"),
        ({"tile_multiple": 256}, 1, 2, "contract.tile_multiple: must be 1..128"),
        ({"decoding": {"threshold": 0.3}}, 1, 2, "contract.decoding.threshold: is not a parameter"),
    ],
)
def test_contracts_the_runtime_cannot_serve_are_refused_at_install(
    tmp_path: Path, change: dict, graph_in: int, graph_out: int, fragment: str
) -> None:
    raw = {**BASE, **change}
    # a graph that matches the bad contract, so only the contract's own rules can refuse it
    kind = "sigmoid" if graph_out == 1 else "softmax"
    graph = Contract("image", "logits", 1, kind, ("background", "nucleus"))
    onnx_path = brightness_model(tmp_path / "m.onnx", graph)
    model = onnx.load(str(onnx_path))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = graph_in
    model.graph.initializer[0].CopyFrom(
        numpy_helper.from_array(np.zeros((graph_out, graph_in, 1, 1), np.float32), "w")
    )
    onnx.save(model, str(onnx_path))
    bundle = forged_bundle(tmp_path / "bad.zip", "prelabel", raw, onnx_path)
    with Project.create(tmp_path / "proj", ["nucleus"]) as project:
        with pytest.raises(BundleError) as caught:
            install_model_bundle(project, bundle)
        assert list_models(project) == []
    text = str(caught.value)
    assert fragment in text and "\n" not in text, text


def test_a_graph_with_a_fixed_size_is_refused(tmp_path: Path) -> None:
    """It would pass a probe of exactly its size and then fail on every real image."""
    contract = Contract("image", "logits", 1, "softmax", ("background", "nucleus"))
    onnx_path = brightness_model(tmp_path / "m.onnx", contract, fixed=16)
    with pytest.raises(BundleError, match=r"fixed_size: graph input has a fixed size"):
        write_model_bundle(tmp_path / "b.zip", [ModelSpec("prelabel", "m", onnx_path, contract)])


def test_generator_role_needs_a_generator_contract(tmp_path: Path) -> None:
    """A generator has its own contract (`appliance.contract.GeneratorContract`)."""
    onnx_path = brightness_model(tmp_path / "m.onnx", Contract.parse(BASE, "base"))
    bundle = forged_bundle(tmp_path / "gen.zip", "generator", BASE, onnx_path)
    refused = pytest.raises(BundleError, match=r"contract\.kind: is missing")
    with Project.create(tmp_path / "proj", ["nucleus"]) as project, refused:
        install_model_bundle(project, bundle)
