"""What a window makes of the items it takes, as the emitted tests expect it.

The planner asks how many windows one item opens (``windows_per_item``: the
pipeline test counts what reaches each sink) and what the emitted window tests
feed and expect (``window_cases``). Plain arithmetic on the blueprint's numbers,
independent of the runtime's code, so that the emitted tests check the runtime.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from .blueprint import Blueprint, SchemaField, WindowConf

#: microseconds per second: times and spans are counted in whole microseconds
_US = 1_000_000


def _micro(seconds: float) -> int:
    return round(seconds * _US)


def item_time(item: dict[str, Any], path: str) -> datetime | None:
    """The datetime at ``path`` (``a.b``) of an item as JSON, or None."""
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def windows_per_item(conf: WindowConf, item: dict[str, Any] | None) -> int | None:
    """How many windows one item of a quiet key is sent in, once the input ends
    (``final``) or as it comes (``every``); None when the blueprint cannot say (a
    hopping window whose size is not a multiple of its hop, on processing time)."""
    if conf.type != "hopping" or conf.size is None or conf.hop is None:
        return 1  # tumbling, sliding (its own window) and count windows
    size, hop = _micro(conf.size), _micro(conf.hop)
    if size % hop == 0:
        return size // hop
    when = None
    if conf.time is not None and item is not None:
        when = item_time(item, conf.time)
    if when is None:
        return None
    t = _micro(when.timestamp())
    # the windows [k * hop, k * hop + size) that hold t
    return math.floor(t / hop) - math.floor((t - size) / hop)


def _field(blueprint: Blueprint, schema: str, path: str) -> SchemaField | None:
    found: SchemaField | None = None
    for part in path.split("."):
        if found is not None:
            schema = found.type.name
        found = next(
            (f for f in blueprint.schema(schema).fields if f.name == part), None
        )
        if found is None:
            return None
    return found


def _varied(blueprint: Blueprint, schema: str, path: str | None) -> bool:
    """Whether a test may give field ``path`` values of its own: a number field
    without constraints (the others keep the example's value)."""
    if path is None:
        return False
    field = _field(blueprint, schema, path)
    return _free_number(field)


def _free_number(field: SchemaField | None) -> bool:
    return (
        field is not None
        and field.type.kind == "scalar"
        and field.type.name in ("int", "float")
        and not field.constraints
    )


def _vary(blueprint: Blueprint, schema: str, conf: WindowConf) -> list[str]:
    """The fields a test gives values of its own: a built-in's field when it may;
    for user code every top-level number field without constraints but the key
    (what the user's aggregate reads is not known: varied, it gives a test that
    can tell one item from another)."""
    if conf.aggregate != "custom":
        field = conf.field
        return [field] if field and _varied(blueprint, schema, field) else []
    return [
        f.name
        for f in blueprint.schema(schema).fields
        if _free_number(f) and f.name != conf.key.split(".")[0]
    ]


def window_cases(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each window component as its emitted tests need it (times in microseconds)."""
    cases = []
    for component in blueprint.components:
        conf = component.window
        if conf is None:
            continue
        schema = component.inputs[0].schema
        cases.append(
            {
                "name": component.name,
                "port": component.inputs[0].name,
                "schema": schema,
                "key": conf.key,
                "time": conf.time,
                "type": conf.type,
                "size": None if conf.size is None else _micro(conf.size),
                "hop": None if conf.hop is None else _micro(conf.hop),
                "count": conf.count,
                "grace": _micro(conf.grace),
                "aggregate": conf.aggregate,
                "field": conf.field,
                "emit": conf.emit,
                "late": component.output("late") is not None,
                "example": blueprint.schema(schema).example(),
                "vary": _vary(blueprint, schema, conf),
            }
        )
    return cases
