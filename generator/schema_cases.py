"""For each schema: a valid example, and values each constraint must reject.

The emitted ``tests/test_schemas.py`` checks both, so a schema's constraints are
proven in the emitted project itself, not only here.
"""

from __future__ import annotations

import re
from typing import Any

from .blueprint import Blueprint, SchemaField
from .examples import example_item, example_value
from .scalars import SCALARS

_NON_MATCHING = ("", "!", " ", "0", "example text", "\u00e9", "A" * 300)


def schema_cases(blueprint: Blueprint) -> list[dict[str, Any]]:
    """``[{schema, valid, invalid: [{field, value, why}]}]`` for every schema."""
    cases = []
    for schema in blueprint.schemas:
        valid = example_item(blueprint, schema.name)
        invalid: list[dict[str, Any]] = []
        for field in schema.fields:
            if field.required:
                invalid.append(
                    {"field": field.name, "value": None, "why": "missing", "drop": True}
                )
            invalid.extend(
                {"field": field.name, "value": value, "why": why, "drop": False}
                for why, value in rejected_values(blueprint, field)
            )
        cases.append({"schema": schema.name, "valid": valid, "invalid": invalid})
    return cases


def _examples(blueprint: Blueprint) -> dict[str, dict[str, Any]]:
    return {schema.name: schema.example() for schema in blueprint.schemas}


def rejected_values(blueprint: Blueprint, field: SchemaField) -> list[tuple[str, Any]]:
    """``(why, value)`` pairs that the field's type or constraints must reject."""
    ref = field.type
    if ref.kind == "schema":
        return [("type", "not an object")]
    if ref.kind == "list":
        assert ref.item is not None
        item = example_value(ref.item, {}, _examples(blueprint))
        wrong: tuple[Any, ...] = ("not a list",)
        unit: Any = [item]
    else:
        scalar = SCALARS[ref.name]
        wrong, unit = scalar.rejected, scalar.unit
    out = [("type", value) for value in wrong]
    return out + _beyond(dict(field.constraints), unit)


def _beyond(c: dict[str, Any], unit: Any) -> list[tuple[str, Any]]:
    """Values just outside each constraint; ``unit`` repeated breaks the lengths."""
    out: list[tuple[str, Any]] = []
    if "gt" in c:
        out.append(("gt", c["gt"]))
    if "ge" in c:
        out.append(("ge", c["ge"] - 1))
    if "lt" in c:
        out.append(("lt", c["lt"]))
    if "le" in c:
        out.append(("le", c["le"] + 1))
    if unit is not None and c.get("min_length", 0) > 0:
        out.append(("min_length", unit * (c["min_length"] - 1)))
    if unit is not None and "max_length" in c:
        out.append(("max_length", unit * (c["max_length"] + 1)))
    if "pattern" in c:
        miss = next(
            (s for s in _NON_MATCHING if re.search(c["pattern"], s) is None), None
        )
        if miss is not None:
            out.append(("pattern", miss))
    return out
