"""The model I/O contracts, one typed schema per kind of model, read and written by both sides.

`model` holds the image-to-label `Contract` of pre-label and upgrade models (output kinds,
decoding parameters, graph checks), `generator` the `GeneratorContract` of generator models,
`common` what both share (the one-line `ContractError`, strict JSON field types, refusal of
unknown fields) and `roles` which contract a model role carries. The names below are the ones
the rest of the code imports from `appliance.contract`.
"""

from appliance.contract.common import ContractError, Value
from appliance.contract.generator import (
    GENERATOR_INPUTS,
    GENERATOR_OUTPUTS,
    GeneratorContract,
    Schedule,
)
from appliance.contract.model import (
    CENTRE_SIZE_CHANNELS,
    DTYPES,
    INPUT_CHANNELS,
    INSTANCE_HEAD,
    OUTPUT_KINDS,
    Contract,
    Normalisation,
)
from appliance.contract.roles import ROLES, parse_contract

__all__ = [
    "CENTRE_SIZE_CHANNELS",
    "DTYPES",
    "GENERATOR_INPUTS",
    "GENERATOR_OUTPUTS",
    "INPUT_CHANNELS",
    "INSTANCE_HEAD",
    "OUTPUT_KINDS",
    "ROLES",
    "Contract",
    "ContractError",
    "GeneratorContract",
    "Normalisation",
    "Schedule",
    "Value",
    "parse_contract",
]
