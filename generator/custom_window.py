"""A window whose aggregate is user code, as the planner prints it.

The blueprint types the window's value (``aggregate: {custom: <type>}``); the user
file starts with a working aggregate, a count, whose result is made of that count
as the value's type allows (the count itself for an ``int``, ``float(acc)`` for a
``float``, an empty list, ...; a schema's example values for a schema), so that a
project passes its gate as generated. The user picks the accumulator's type.
"""

from __future__ import annotations

from .blueprint import Blueprint, Component, TypeRef
from .examples import example_item
from .field_types import parse_type
from .filters import pyrepr
from .pytypes import annotation, imports_for

#: the placeholder's accumulator: a count
PLACEHOLDER_ACC = "int"

#: the placeholder's value from the count ``acc``, per scalar type
_FROM_COUNT = {
    "int": "acc",
    "float": "float(acc)",
    "str": "str(acc)",
    "bool": "acc > 0",
    "datetime": "datetime.fromordinal(acc + 1)",
    "date": "date.fromordinal(acc + 1)",
    "uuid": "UUID(int=acc)",
    "dict": '{"count": acc}',
}


def value_ref(component: Component) -> TypeRef | None:
    """The type of a custom window's value, or None: not a custom window."""
    written = component.custom_aggregate
    return None if written is None else parse_type(written)


def placeholder_result(blueprint: Blueprint, ref: TypeRef) -> str:
    """The placeholder ``result``'s expression: a value of ``ref`` from ``acc``."""
    if ref.optional:
        return "None"
    if ref.kind == "list":
        return "[]"
    if ref.kind == "schema":
        return f"{ref.name}.model_validate({pyrepr(example_item(blueprint, ref.name))})"
    return _FROM_COUNT[ref.name]


def custom_values(blueprint: Blueprint, component: Component) -> dict[str, str]:
    """``$value`` and ``$result`` of the kinds table's custom window methods (empty
    for any other component)."""
    ref = value_ref(component)
    if ref is None:
        return {}
    return {
        "value": annotation(ref),
        "result": placeholder_result(blueprint, ref),
    }


def value_imports(component: Component) -> tuple[set[tuple[str, str]], list[str]]:
    """What a custom window's value annotation needs: ``(module, name)`` pairs of
    its scalars, and the schemas it names (both empty for any other component)."""
    ref = value_ref(component)
    if ref is None:
        return set(), []
    return imports_for(ref), list(ref.schemas())
