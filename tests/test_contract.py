"""The one model I/O contract: parse, validate (itself, a role, a graph) and write back."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from appliance.contract import Contract, ContractError, Normalisation

RAW = {
    "input_name": "image",
    "output_name": "logits",
    "input_channels": 1,
    "mask_channel": False,
    "dtype": "float32",
    "layout": "NCHW",
    "normalisation": {"method": "percentile", "low": 1.0, "high": 99.8},
    "tile_multiple": 16,
    "output_kind": "sigmoid",
    "classes": ["background", "nucleus"],
    "decoding": {"threshold": 0.3},
}


@dataclass
class Port:
    name: str
    shape: list
    type: str = "tensor(float)"


def test_round_trip_through_json_and_dict() -> None:
    c = Contract.parse(json.dumps(RAW), "m")
    assert c.normalisation == Normalisation("percentile", 1.0, 99.8)
    assert c.decoding == {"threshold": 0.3} and c.channels_out == 1 and c.channels_in == 1
    assert Contract.parse(c.to_json(), "again") == c
    assert Contract.parse(c.to_dict(), "again") == c
    assert json.loads(c.to_json()) == RAW


def test_defaults_fill_optional_fields_and_decoding() -> None:
    c = Contract.parse(
        {k: RAW[k] for k in ("input_name", "output_name", "input_channels", "classes")}
        | {"output_kind": "softmax"},
        "m",
    )
    assert (c.dtype, c.layout, c.tile_multiple, c.mask_channel) == ("float32", "NCHW", 16, False)
    assert dict(c.decoding) == {}
    sig = Contract("i", "o", 1, "sigmoid", ("background", "x"))
    assert sig.decoding["threshold"] == 0.5


def test_legacy_top_level_threshold_still_parses() -> None:
    """Contracts installed before `decoding` existed carry `threshold` at the top level."""
    legacy = {k: v for k, v in RAW.items() if k != "decoding"} | {"threshold": 0.7}
    assert Contract.parse(legacy, "old").decoding["threshold"] == 0.7
    softmax = legacy | {"output_kind": "softmax"}
    assert dict(Contract.parse(softmax, "old").decoding) == {}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"input_channels": 2}, "input_channels"),
        ({"input_channels": True}, "input_channels"),
        ({"classes": ["background", "a", "b"]}, "classes"),  # sigmoid needs exactly 2
        ({"classes": ["background", 3]}, "classes[1]"),
        ({"classes": ["background", "background"]}, "classes"),
        ({"normalisation": {"method": "zscore"}}, "normalisation.method"),
        ({"normalisation": {"low": 50, "high": 10}}, "normalisation"),
        ({"normalisation": {"scale": 2}}, "normalisation.scale"),
        ({"output_kind": "linear"}, "output_kind"),
        ({"decoding": {"threshold": 1.5}}, "decoding.threshold"),
        ({"decoding": {"threshold": "high"}}, "decoding.threshold"),
        ({"decoding": {"min_size": 3}}, "decoding.min_size"),
        ({"dtype": "int8"}, "dtype"),
        ({"tile_multiple": 0}, "tile_multiple"),
        ({"output_name": "image"}, "output_name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_contracts_give_one_line_naming_source_and_field(change: dict, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        Contract.parse(RAW | change, "bundle.zip")
    text = str(caught.value)
    assert caught.value.field == field, text
    assert text.startswith(f"bundle.zip: model contract field {field!r}: ") and "\n" not in text


def test_missing_field_and_non_object() -> None:
    raw = dict(RAW)
    del raw["output_name"]
    with pytest.raises(ContractError, match="'output_name': is missing"):
        Contract.parse(raw, "m")
    with pytest.raises(ContractError, match="must be a JSON object"):
        Contract.parse("[1, 2]", "m")
    with pytest.raises(ContractError, match="is not JSON"):
        Contract.parse("{", "m")


def test_role_rules() -> None:
    c = Contract.parse(RAW, "m")
    c.validate(role="prelabel")
    with pytest.raises(ContractError, match="needs the coarse mask channel"):
        c.validate(role="upgrade")
    Contract.parse(RAW | {"mask_channel": True}, "m").validate(role="upgrade")
    with pytest.raises(ContractError, match="not role 'generator'"):
        c.validate(role="generator")


def test_graph_validation_names_ranks_channels_and_sizes() -> None:
    c = Contract.parse(RAW | {"input_channels": 3}, "m")
    good_in, good_out = Port("image", ["n", 3, "h", "w"]), Port("logits", [1, 1, "h", "w"])
    c.validate(inputs=[good_in], outputs=[good_out])
    cases = [
        ([Port("pixels", [1, 3, "h", "w"])], [good_out], "input_name", "no input 'image'"),
        ([good_in, Port("extra", [1])], [good_out], "input_name", "does not declare: extra"),
        ([good_in], [Port("out", [1, 1, "h", "w"])], "output_name", "no output 'logits'"),
        ([Port("image", [1, 3, "h", "w"], "tensor(float16)")], [good_out], "dtype", "float16"),
        ([Port("image", [3, "h", "w"])], [good_out], "input_channels", "rank 3"),
        ([Port("image", [1, 1, "h", "w"])], [good_out], "input_channels", "has 1 channels"),
        ([good_in], [Port("logits", [1, 2, "h", "w"])], "output_kind", "has 2 channels"),
        ([Port("image", [1, 3, 64, 64])], [good_out], "fixed_size", "fixed size 64x64"),
        ([Port("image", [4, 3, "h", "w"])], [good_out], "input_channels", "fixed batch of 4"),
        ([good_in], [Port("logits", [1, 1, "h", "w"], "tensor(int64)")], "output_name", "int64"),
    ]
    for inputs, outputs, field, words in cases:
        with pytest.raises(ContractError) as caught:
            c.validate(inputs=inputs, outputs=outputs)
        assert caught.value.field == field and words in caught.value.problem, caught.value
