"""The generator contract: parsed, validated, and checked against the graph when bundled."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.bundles.archive import BundleError
from appliance.bundles.model_bundle import ModelSpec, read_model_bundle, write_model_bundle
from appliance.contract import GeneratorContract
from appliance.errors import ApplianceError
from export.generators.cgan import LATENT_DIM, MLPGenerator
from export.generators.onnx import export_generator

RAW = {
    "kind": "cgan",
    "inputs": ["z", "class"],
    "output_name": "image",
    "channels": 1,
    "size": 16,
    "classes": ["cell", "granulocyte"],
    "output_range": [-1, 1],
    "latent_dim": LATENT_DIM,
}


def test_round_trip_and_refusals() -> None:
    c = GeneratorContract.parse(RAW, "t")
    assert GeneratorContract.parse(c.to_dict(), "t") == c
    assert c.output_channels == 2 and c.null_class == 2
    for bad, words in (
        ({"kind": "vae"}, "kind"),
        ({"inputs": ["z"]}, "inputs"),
        ({"channels": 2}, "channels"),
        (
            {"kind": "diffusion", "inputs": ["x", "t", "class", "mask"], "output_name": "eps"},
            "schedule",
        ),
        ({"output_range": [1, -1]}, "output_range"),
    ):
        with pytest.raises(ApplianceError, match=words):
            GeneratorContract.parse({**RAW, **bad}, "t")
    with pytest.raises(ApplianceError, match="neuron"):
        c.class_index("neuron", "t")


def test_bundle_checks_the_graph_against_the_contract(tmp_path: Path) -> None:
    model = MLPGenerator(2, 1, 16, width=8).eval()
    contract = GeneratorContract.parse(RAW, "t")
    export_generator(model, contract, tmp_path / "g.onnx")
    out = tmp_path / "g.zip"
    write_model_bundle(out, [ModelSpec("generator", "cgan-mlp", tmp_path / "g.onnx", contract)])
    assert read_model_bundle(out).models[0].contract == contract
    wrong_size = GeneratorContract.parse({**RAW, "size": 32}, "t")
    with pytest.raises(BundleError, match="shape"):
        write_model_bundle(
            tmp_path / "bad.zip", [ModelSpec("generator", "x", tmp_path / "g.onnx", wrong_size)]
        )
    assert not (tmp_path / "bad.zip").exists()
