"""Example values that satisfy a field type and its constraints.

Emitted tests post them to endpoints, and default transformers fill new required
fields with them. They are deterministic: the same schema always gives the same value.
Each scalar's value comes from its row of the scalar table; this walks the type
expressions around them (lists, optional types, other schemas).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from .blueprint import Blueprint, SchemaField, TypeRef
from .scalars import SCALARS
from .values import ExampleError as ExampleError  # re-exported: generation reads it


def example_item(blueprint: Blueprint, schema: str) -> dict[str, Any]:
    """A valid JSON object for ``schema``: every field, required or not, filled.

    Derived when the blueprint is resolved (so ``validate`` refuses a schema without
    one); this hands out a fresh copy.
    """
    return blueprint.schema(schema).example()


def schema_example(
    fields: Iterable[SchemaField], examples: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """An example for a schema with ``fields``; ``examples`` holds the schemas it uses.

    Raises ExampleError naming the field whose constraints defeat the derivation.
    """
    return {
        f.name: example_value(f.type, dict(f.constraints), examples) for f in fields
    }


def example_value(
    ref: TypeRef,
    constraints: Mapping[str, Any],
    examples: Mapping[str, Mapping[str, Any]],
) -> Any:
    """An example for one type; ``constraints`` apply at the top level only."""
    if ref.kind == "schema":
        return copy.deepcopy(dict(examples[ref.name]))
    if ref.kind == "list":
        assert ref.item is not None
        count = max(constraints.get("min_length", 0), 1)
        count = min(count, constraints.get("max_length", count))
        return [example_value(ref.item, {}, examples) for _ in range(count)]
    return SCALARS[ref.name].example(constraints)
