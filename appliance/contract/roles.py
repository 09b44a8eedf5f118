"""Which contract a model of each role carries: generators their own, the rest `Contract`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.contract.common import ContractError
from appliance.contract.generator import GeneratorContract
from appliance.contract.model import Contract

__all__ = ["ROLES", "parse_contract"]

ROLES = ("prelabel", "upgrade", "detector", "generator")


def parse_contract(
    data: str | bytes | Mapping[str, Any], role: str, source: str
) -> Contract | GeneratorContract:
    """The contract of a model of `role`: generators have their own, every other role the
    image-to-label `Contract`, checked against the role."""
    if role == "generator":
        return GeneratorContract.parse(data, source)
    contract = Contract.parse(data, source)
    try:
        contract.validate(role=role)
    except ContractError as exc:
        raise exc.at(source) from exc
    return contract
