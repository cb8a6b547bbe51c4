"""What the emitted join tests feed each join component, from the blueprint.

Plain data on the blueprint's numbers (times in whole microseconds), so that the
emitted tests check the runtime's ``Join`` against the blueprint, not against
itself: which items pair, which time out, which are late.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .blueprint import Blueprint, Component, JoinConf, Port, SchemaField
from .examples import ExampleError, example_item, example_value

SIDES = ("left", "right")
#: microseconds per second: times and spans are counted in whole microseconds
_US = 1_000_000


def join_cases(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each join component as its emitted tests need it."""
    cases = []
    for component in blueprint.components:
        conf = component.join
        if conf is None:
            continue
        left = component.input("left")
        right = component.input("right")
        assert left is not None and right is not None  # the resolver checked
        # every item of the tests has one key: a value both key fields allow
        left_example = example_item(blueprint, left.schema)
        right_example = example_item(blueprint, right.schema)
        key = shared_key(
            field_at(blueprint, left.schema, conf.key_left),
            field_at(blueprint, right.schema, conf.key_right),
            (
                value_at(left_example, conf.key_left),
                value_at(right_example, conf.key_right),
            ),
        )
        assert key is not _MISSING  # the resolver refused keys with no such value
        _put(left_example, conf.key_left, key)
        _put(right_example, conf.key_right, key)
        cases.append(
            {
                "name": component.name,
                "left": left.schema,
                "right": right.schema,
                "key_left": conf.key_left,
                "key_right": conf.key_right,
                "time_left": conf.time_left,
                "time_right": conf.time_right,
                "within": round(conf.within * _US),
                "grace": round(conf.grace * _US),
                "unmatched": component.output("unmatched_left") is not None,
                "left_example": left_example,
                "right_example": right_example,
            }
        )
    return cases


#: what reached one side of a join: how many items (None: unknown) and the item
#: that set off the walk (None: unknown behind a window)
Arrival = tuple[int | None, dict[str, Any] | None]
_MISSING = object()


def value_at(item: dict[str, Any] | None, path: str) -> Any:
    """Field ``path`` (``a.b``) of ``item`` as JSON, or _MISSING."""
    current: Any = item
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _same(
    left: dict[str, Any] | None, right: dict[str, Any] | None, paths: tuple[str, str]
) -> bool:
    """Whether one item seen on both sides has one value at the two paths: by the
    item when it is known and has them, else only when the paths are the same."""
    values = value_at(left, paths[0]), value_at(right, paths[1])
    if _MISSING in values:
        return paths[0] == paths[1]
    return bool(values[0] == values[1])


def _pairs(
    conf: JoinConf, left: dict[str, Any] | None, right: dict[str, Any] | None
) -> bool:
    """Whether the item that reached both sides pairs with itself: one key, and on
    event time one time (on processing time both arrive in one drain, moments
    apart, far less than any ``within`` a blueprint writes)."""
    if not _same(left, right, (conf.key_left, conf.key_right)):
        return False
    if conf.time_left is None or conf.time_right is None:
        return True
    return _same(left, right, (conf.time_left, conf.time_right))


def join_leaves(
    join: Component, sides: dict[str, Arrival], kept: bool = False
) -> list[tuple[Port, int | None, dict[str, Any] | None]]:
    """Where what reached ``join``'s sides goes by the drain, the join keeping its
    default ``match`` (combine: an item): one item seen once on each side and
    pairing with itself leaves once on ``out``; an item alone on a side pairs with
    nothing and leaves on that side's unmatched port, if there is one. ``kept``:
    the join's state is kept in Redis (a run over Redis, its inputs there), where a
    drain releases nothing (the partitions' next holders go on): an item alone
    stays held."""
    conf = join.join
    assert conf is not None
    once = set(sides) == set(SIDES) and sides["left"][0] == sides["right"][0] == 1
    if once and _pairs(conf, sides["left"][1], sides["right"][1]):
        return [(join.data_outputs[0], 1, None)]
    leaves: list[tuple[Port, int | None, dict[str, Any] | None]] = []
    if kept:
        return leaves
    for side, (times, carried) in sorted(sides.items()):
        lost = join.output(f"unmatched_{side}")
        if lost is not None:
            leaves.append((lost, times, carried))
    return leaves


def next_join(
    blueprint: Blueprint, arrived: dict[str, dict[str, Arrival]], decided: set[str]
) -> str | None:
    """The join to decide next: one reached and not yet decided that no other such
    join leads to (what that one sends on may still reach it)."""
    waiting = [name for name in arrived if name not in decided]
    for name in waiting:
        if not any(name in _downstream(blueprint, o) for o in waiting if o != name):
            return name
    return None


def _downstream(blueprint: Blueprint, name: str) -> set[str]:
    """The components an item leaving ``name`` may reach."""
    found: set[str] = set()
    todo = [name]
    while todo:
        for port in blueprint.component(todo.pop()).outputs:
            for conn in blueprint.connections_from(port.ref):
                if conn.target.component not in found:
                    found.add(conn.target.component)
                    todo.append(conn.target.component)
    return found


def field_at(blueprint: Blueprint, schema: str, path: str) -> SchemaField:
    """Field ``path`` (``a.b``) of ``schema`` (the resolver checked it is there)."""
    *parents, last = path.split(".")
    for part in parents:
        schema = next(
            f for f in blueprint.schema(schema).fields if f.name == part
        ).type.name
    return next(f for f in blueprint.schema(schema).fields if f.name == last)


def _put(item: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        item = item[part]
    item[last] = value


def allows(value: Any, constraints: Mapping[str, Any]) -> bool:
    """Whether ``value`` keeps a scalar field's constraints (bounds, lengths and
    pattern, as the generated schema checks them)."""
    return all(_keeps(value, name, limit) for name, limit in constraints.items())


def _keeps(value: Any, name: str, limit: Any) -> bool:
    if name in ("gt", "ge", "lt", "le"):
        ok = {"gt": value > limit, "ge": value >= limit}
        ok.update(lt=value < limit, le=value <= limit)
        return bool(ok[name])
    if name == "min_length":
        return bool(len(value) >= limit)
    if name == "max_length":
        return bool(len(value) <= limit)
    if name == "pattern":
        return re.search(limit, value) is not None
    return True


def shared_key(left: SchemaField, right: SchemaField, examples: tuple[Any, Any]) -> Any:
    """A key value both key fields allow: one side's example, else one derived
    from one field's constraints, or from both fields' bounds and lengths with
    either's pattern; _MISSING when none is."""
    mine, theirs = dict(left.constraints), dict(right.constraints)
    candidates = list(examples)
    tries: list[dict[str, Any]] = [mine, theirs]
    for pattern in (mine.get("pattern"), theirs.get("pattern")):
        merged = _merged(mine, theirs)
        if pattern is not None:
            merged["pattern"] = pattern
        tries.append(merged)
    for merged in tries:
        try:
            candidates.append(example_value(left.type, merged, {}))
        except ExampleError:
            continue
    for value in candidates:
        if value is not _MISSING and allows(value, mine) and allows(value, theirs):
            return value
    return _MISSING


def _merged(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The tighter of each bound and length of the two (patterns left out)."""
    merged: dict[str, Any] = {}
    for name in ("gt", "ge", "min_length"):
        found = [c[name] for c in (mine, theirs) if name in c]
        if found:
            merged[name] = max(found)
    for name in ("lt", "le", "max_length"):
        found = [c[name] for c in (mine, theirs) if name in c]
        if found:
            merged[name] = min(found)
    return merged


def has_shared_key(left: SchemaField, right: SchemaField) -> bool:
    """Whether some key value is allowed by both key fields (the resolver asks)."""
    return shared_key(left, right, (_MISSING, _MISSING)) is not _MISSING
