"""For each schema: a valid example, and values each constraint must reject.

The emitted ``tests/test_schemas.py`` checks both, so a schema's constraints are
proven in the emitted project itself, not only here.
"""

from __future__ import annotations

import re
from typing import Any

from .blueprint import Blueprint, SchemaField
from .examples import example_item, example_value

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
    c = dict(field.constraints)
    out: list[tuple[str, Any]] = []
    if ref.kind == "scalar" and ref.name in ("int", "float"):
        out.append(("type", "not a number"))
        if "gt" in c:
            out.append(("gt", c["gt"]))
        if "ge" in c:
            out.append(("ge", c["ge"] - 1))
        if "lt" in c:
            out.append(("lt", c["lt"]))
        if "le" in c:
            out.append(("le", c["le"] + 1))
    elif ref.kind == "scalar" and ref.name == "str":
        out.append(("type", {"not": "a string"}))
        if c.get("min_length", 0) > 0:
            out.append(("min_length", "x" * (c["min_length"] - 1)))
        if "max_length" in c:
            out.append(("max_length", "x" * (c["max_length"] + 1)))
        if "pattern" in c:
            miss = next(
                (s for s in _NON_MATCHING if re.search(c["pattern"], s) is None), None
            )
            if miss is not None:
                out.append(("pattern", miss))
    elif ref.kind == "list":
        assert ref.item is not None
        out.append(("type", "not a list"))
        item = example_value(ref.item, {}, _examples(blueprint))
        if c.get("min_length", 0) > 0:
            out.append(("min_length", [item] * (c["min_length"] - 1)))
        if "max_length" in c:
            out.append(("max_length", [item] * (c["max_length"] + 1)))
    elif ref.kind == "schema":
        out.append(("type", "not an object"))
    elif ref.name in ("datetime", "date", "uuid"):
        out.append(("type", "not-a-" + ref.name))
    return out
