"""What the emitted keyed-state tests feed each stateful component, from the blueprint.

Plain data: the component's base, its method, the key of its input (``a.b``:
nested), an example item, two key values its key field allows (the example's and
another, or None when the field allows only one), and its state schema.
"""

from __future__ import annotations

from typing import Any

from .blueprint import Blueprint, Component, SchemaField
from .examples import example_item
from .join_plan import allows, field_at, value_at
from .kinds import COMPONENT_KINDS
from .names import class_name


def state_cases(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each component with ``state: true`` as its emitted tests need it."""
    cases = []
    for component in blueprint.components:
        if component.state is None:
            continue
        method = COMPONENT_KINDS[component.kind].method
        assert method is not None  # the kinds that keep state run user code
        port = component.inputs[0]
        key = _input_key(blueprint, component)
        example = example_item(blueprint, port.schema)
        first = value_at(example, key)
        cases.append(
            {
                "name": component.name,
                "base": class_name(component.name) + "Base",
                "method": method.name,
                "input": port.name,
                "schema": port.schema,
                "key": key,
                "example": example,
                "key_values": [
                    first,
                    _other(field_at(blueprint, port.schema, key), first),
                ],
                "state_schema": component.state.schema,
            }
        )
    return cases


def _input_key(blueprint: Blueprint, component: Component) -> str:
    """The key of the connections into the component (the resolver made sure
    each has one); the first input's."""
    port = component.inputs[0]
    return next(
        conn.key
        for conn in blueprint.connections
        if conn.target.ref == port.ref and conn.key is not None
    )


def _other(field: SchemaField, value: Any) -> Any:
    """A second key value ``field`` allows, or None when none is found."""
    constraints = dict(field.constraints)
    if isinstance(value, bool):
        candidates: list[Any] = [not value]
    elif isinstance(value, int):
        candidates = [value + 1, value - 1]
    elif isinstance(value, float):
        candidates = [value + 0.5, value - 0.5]
    elif isinstance(value, str):
        candidates = [value + value[-1:], value[:-1], value[::-1], value + "0"]
    else:
        return None
    return next((c for c in candidates if c != value and allows(c, constraints)), None)
