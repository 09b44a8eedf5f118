"""The generator contract is as strict as the image-to-label one: typed fields, nothing unknown.

Before the contract package split, `GeneratorContract.parse` ran `int()`/`float()`/`str()` over
every field (so "3" became 3, 3.7 became 3, true became 1) and ignored fields it did not know
(so a misspelt `guidanse` silently meant the default guidance). Each case below was accepted then.
"""

from __future__ import annotations

import json

import pytest

from appliance.contract import ContractError, GeneratorContract, parse_contract

RAW = {
    "kind": "diffusion",
    "inputs": ["x", "t", "class", "mask"],
    "output_name": "eps",
    "channels": 1,
    "size": 16,
    "size_multiple": 4,
    "classes": ["cell"],
    "output_range": [-1, 1],
    "guidance": 2,
    "normalisation": {"low": 1.0, "high": 99.8},
    "schedule": {
        "kind": "cosine-ddim",
        "train_steps": 10,
        "timesteps": [9, 5, 0],
        "alphas_cumprod": [0.1, 0.5, 0.9],
        "eta": 0.0,
    },
}


def test_a_valid_contract_parses_and_round_trips() -> None:
    c = GeneratorContract.parse(json.dumps(RAW), "gen.zip")
    assert c.guidance == 2.0 and c.output_range == (-1.0, 1.0) and c.schedule is not None
    assert GeneratorContract.parse(c.to_json(), "again") == c
    assert parse_contract(RAW, "generator", "gen.zip") == c


def _with(path: tuple[str, ...], value: object) -> dict:
    raw = json.loads(json.dumps(RAW))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("channels",), "1", "channels"),  # a string is not a number
        (("size",), 16.5, "size"),  # nor is a fraction an integer
        (("size",), True, "size"),  # nor is true an integer
        (("kind",), 3, "kind"),
        (("inputs",), "x,t,class,mask", "inputs"),
        (("classes",), ["cell", 2], "classes[1]"),
        (("guidance",), "2", "guidance"),
        (("output_range",), [-1, 1, 5], "output_range"),
        (("output_range",), [-1, "1"], "output_range[1]"),
        (("normalisation", "low"), "1", "normalisation.low"),
        (("schedule", "timesteps"), [9, 5.5, 0], "schedule.timesteps[1]"),
        (("schedule", "train_steps"), "10", "schedule.train_steps"),
    ],
)
def test_values_are_never_coerced(path: tuple[str, ...], value: object, field: str) -> None:
    with pytest.raises(ContractError) as err:
        GeneratorContract.parse(_with(path, value), "gen.zip")
    assert err.value.field == field and str(err.value).startswith("gen.zip: ")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("guidanse",), "guidanse"),
        (("normalisation", "method"), "normalisation.method"),
        (("schedule", "steps"), "schedule.steps"),
    ],
)
def test_unknown_fields_are_refused(path: tuple[str, ...], field: str) -> None:
    with pytest.raises(ContractError, match="is not a contract field") as err:
        GeneratorContract.parse(_with(path, 1), "gen.zip")
    assert err.value.field == field


def test_missing_fields_and_bad_documents_name_the_field() -> None:
    raw = {k: v for k, v in RAW.items() if k != "size"}
    with pytest.raises(ContractError, match="'size': is missing"):
        GeneratorContract.parse(raw, "gen.zip")
    schedule = {k: v for k, v in RAW["schedule"].items() if k != "timesteps"}
    with pytest.raises(ContractError, match=r"schedule\.timesteps"):
        GeneratorContract.parse({**RAW, "schedule": schedule}, "gen.zip")
    with pytest.raises(ContractError, match="not JSON"):
        GeneratorContract.parse("{", "gen.zip")
    with pytest.raises(ContractError, match="JSON object"):
        GeneratorContract.parse("[]", "gen.zip")
