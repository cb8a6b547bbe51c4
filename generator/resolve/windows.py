"""Windows: a window component's generated output schema, its ports and its rules.

A window's ``out`` carries ``<Name>Window`` (``key``, ``start``, ``end``, ``value``),
a schema the blueprint does not declare: ``window_schemas`` adds it to the spec
before resolution, typed from the blueprint (the key field's type, the aggregate's
result), so that connections, models and the emitted schema tests treat it as any
other. The rules refuse what the runtime's ``Window`` would refuse when the service
starts (runtime/windows.py), each at its line, so that ``validate`` finds it first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..blueprint import (
    ERROR_SCHEMA,
    ERRORS_PORT,
    Component,
    Connection,
    Port,
    Schema,
    SchemaField,
    WindowConf,
)
from ..durations import parse_duration
from ..field_types import TypeSyntaxError, parse_type
from ..model import (
    CUSTOM_AGGREGATE,
    BlueprintSpec,
    CustomAggregateSpec,
    FieldSpec,
    SchemaSpec,
    WindowSpec,
)
from ..names import class_name
from ..yaml_source import Loc
from .checks import Checks

#: the aggregates of a number (sum, mean) and of anything ordered (min, max)
NUMERIC = ("int", "float")
ORDERED = (*NUMERIC, "str", "datetime", "date")


def window_schema_name(component: str) -> str:
    """The schema of a window's ``out``: ``counts`` -> ``CountsWindow``."""
    return f"{class_name(component)}Window"


def _aggregate(spec: WindowSpec) -> tuple[str, str | None]:
    """``(aggregate, field)``: ``{sum: price}`` -> ``("sum", "price")``;
    ``{custom: T}`` -> ``("custom", None)``."""
    if isinstance(spec.aggregate, str):
        return spec.aggregate, None
    if isinstance(spec.aggregate, CustomAggregateSpec):
        return CUSTOM_AGGREGATE, None
    ((name, field),) = spec.aggregate.items()
    return name, field


def _fields(spec: BlueprintSpec, schema: str) -> dict[str, FieldSpec]:
    """Every field of ``schema``, inherited ones first (as written)."""
    chain: list[SchemaSpec] = []
    current: str | None = schema
    while current in spec.schemas and len(chain) <= len(spec.schemas):
        chain.append(spec.schemas[current])
        current = spec.schemas[current].extends
    fields: dict[str, FieldSpec] = {}
    for step in reversed(chain):
        fields.update(step.fields)
    return fields


def _type_at(spec: BlueprintSpec, schema: str, path: str) -> str | None:
    """The type (as text) of field ``path`` (``a.b``) of ``schema``, or None."""
    current = schema
    text: str | None = None
    for part in path.split("."):
        field = _fields(spec, current).get(part)
        if field is None:
            return None
        try:
            ref = parse_type(field.type)
        except TypeSyntaxError:
            return None
        text, current = str(ref), ref.name
    return text


def _input_schema(spec: WindowSpec) -> str | None:
    if spec.input is not None:
        return spec.input
    if spec.inputs:
        return next(iter(spec.inputs.values()))
    return None


def _key_path(spec: BlueprintSpec, name: str, schema: str) -> str | None:
    """The key the window's input is connected with: a connection's, else the
    schema's (or that of one it extends)."""
    for conn in spec.connections:
        if conn.to.strip().split(".")[0] == name and conn.key is not None:
            return conn.key
    current: str | None = schema
    seen = 0
    while current in spec.schemas and seen <= len(spec.schemas):
        if spec.schemas[current].key is not None:
            return spec.schemas[current].key
        current, seen = spec.schemas[current].extends, seen + 1
    return None


def custom_value(window: WindowSpec) -> str | None:
    """A custom aggregate's value type, written as parsed (``list[ float ]`` ->
    ``list[float]``), or None: not custom, or not a type (refused by the rules)."""
    if not isinstance(window.aggregate, CustomAggregateSpec):
        return None
    try:
        return str(parse_type(window.aggregate.custom))
    except TypeSyntaxError:
        return None


def _value_type(spec: BlueprintSpec, window: WindowSpec, schema: str) -> str:
    """The type of the window's ``value``: what its aggregate returns."""
    if isinstance(window.aggregate, CustomAggregateSpec):
        return custom_value(window) or "str"  # not a type: refused by the rules
    aggregate, field = _aggregate(window)
    if aggregate == "count":
        return "int"
    item = schema if field is None else (_type_at(spec, schema, field) or "str")
    if aggregate == "mean":
        return "float"
    if aggregate == "collect":
        return f"list[{item}]"
    return item


def window_schemas(spec: BlueprintSpec) -> tuple[BlueprintSpec, frozenset[str]]:
    """``spec`` with each window's output schema added, and the names added (a
    name the blueprint declares itself is left to the rules to refuse)."""
    made: dict[str, SchemaSpec] = {}
    for name, component in spec.components.items():
        if not isinstance(component, WindowSpec):
            continue
        schema = _input_schema(component)
        made_name = window_schema_name(name)
        if schema is None or made_name in spec.schemas or made_name in made:
            continue
        key = _key_path(spec, name, schema)
        key_type = (None if key is None else _type_at(spec, schema, key)) or "str"
        made[made_name] = SchemaSpec(
            description=f"One window of component {name!r}: its key, its span "
            "[start, end) and the aggregate's value.",
            fields={
                "key": FieldSpec(type=key_type, description="The items' key."),
                "start": FieldSpec(type="datetime", description="The window's start."),
                "end": FieldSpec(
                    type="datetime", description="The window's end (not in it)."
                ),
                "value": FieldSpec(
                    type=_value_type(spec, component, schema),
                    description=(
                        "What the component's result() returns for its items."
                        if isinstance(component.aggregate, CustomAggregateSpec)
                        else f"The {_aggregate(component)[0]} of its items."
                    ),
                ),
            },
        )
    if not made:
        return spec, frozenset()
    schemas = {**spec.schemas, **made}
    return spec.model_copy(update={"schemas": schemas}), frozenset(made)


def _seconds(text: str | None) -> float | None:
    return None if text is None else parse_duration(text).seconds


def _field_at(schemas: dict[str, Schema], schema: str, path: str) -> SchemaField | str:
    """Field ``path`` (``a.b``) of ``schema``, or why there is none."""
    current = schemas.get(schema)
    found: SchemaField | None = None
    for part in path.split("."):
        if current is None:
            return f"{found.name if found else schema} is not a schema"
        found = next((f for f in current.fields if f.name == part), None)
        if found is None:
            return f"schema {current.name!r} has no field {part!r}"
        current = schemas.get(found.type.name) if found.type.kind == "schema" else None
    assert found is not None  # a path has at least one part
    return found


class WindowRules(Checks):
    """A window's ports and shape, then its fields and input, each at its line."""

    #: the schemas ``window_schemas`` added (the resolver sets it)
    made_schemas: frozenset[str] = frozenset()

    def window(
        self, name: str, spec: WindowSpec, inputs: tuple[Port, ...]
    ) -> tuple[tuple[Port, ...], dict[str, Any]]:
        """The window's outputs and its resolved ``window`` settings."""
        made = window_schema_name(name)
        if made in self.spec.schemas and made not in self.made_schemas:
            self.error(
                ("components", name),
                f"window {name!r} makes the schema {made!r} of its output, which the "
                "blueprint declares too; rename the schema or the component",
            )
        outputs = [Port(name, "out", made, "out")]
        if spec.late and inputs:
            outputs.append(Port(name, "late", inputs[0].schema, "out"))
        if spec.errors:
            outputs.append(Port(name, ERRORS_PORT, ERROR_SCHEMA, "out"))
        aggregate, field = _aggregate(spec)
        shape = spec.window
        conf = WindowConf(
            type=shape.type,
            size=_seconds(shape.size),
            hop=_seconds(shape.hop),
            count=shape.count,
            time=shape.time,
            grace=_seconds(shape.grace) or 0.0,
            aggregate=aggregate,
            field=field,
            emit=spec.emit,
            key="",  # known once the connections are
            max_open=spec.max_open,
            value=custom_value(spec),
        )
        self._window_shape(name, conf)
        if isinstance(spec.aggregate, CustomAggregateSpec):
            self._custom(name, spec.aggregate.custom)
        return tuple(outputs), {"window": conf}

    def _custom(self, name: str, written: str) -> None:
        """A custom aggregate's value type (the classes its user code makes are
        checked with every component's, ``check_class_names``)."""
        at: Loc = ("components", name, "aggregate", CUSTOM_AGGREGATE)
        try:
            ref = parse_type(written)
        except TypeSyntaxError as exc:
            self.error(at, f"custom aggregate of window {name!r}: {exc}")
            return
        for schema in ref.schemas():
            self.schema_ref(at, schema, f"the custom aggregate of window {name!r}")

    def _window_shape(self, name: str, conf: WindowConf) -> None:
        """What the runtime's ``Window`` refuses of a shape."""
        at: Loc = ("components", name, "window")
        if conf.count is not None:
            if conf.size is not None or conf.hop is not None or conf.type != "tumbling":
                self.error(
                    (*at, "count"),
                    f"window {name!r}: count windows are tumbling and take no size "
                    "or hop; give either 'count' or 'size'",
                )
        elif conf.size is None:
            self.error(at, f"window {name!r}: give 'size' (a duration) or 'count'")
        elif conf.type == "hopping":
            if conf.hop is None or conf.hop > conf.size:
                self.error(
                    (*at, "hop") if conf.hop is not None else at,
                    f"window {name!r}: a hopping window needs 'hop', at most its "
                    f"size ({conf.size:g}s)",
                )
        elif conf.hop is not None:
            self.error(
                (*at, "hop"),
                f"window {name!r}: a {conf.type} window has no 'hop' (only hopping "
                "windows do)",
            )
        if conf.grace and conf.time is None:
            self.error(
                (*at, "grace"),
                f"window {name!r}: 'grace' is for event time (set 'time'); items on "
                "processing time are never out of order",
            )

    def windows(
        self,
        components: dict[str, Component],
        connections: tuple[Connection, ...],
        schemas: tuple[Schema, ...],
    ) -> dict[str, Component]:
        """Check each window's fields and input connections; give it its key."""
        by_name = {s.name: s for s in schemas}
        out = dict(components)
        for name, component in components.items():
            conf = component.window
            if conf is None or not component.inputs:
                continue
            schema = component.inputs[0].schema
            if schema in by_name:
                self._window_fields(name, conf, by_name, schema)
            key = self._window_input(name, connections)
            out[name] = _replace(component, conf, key)
        return out

    def _window_fields(
        self, name: str, conf: WindowConf, schemas: dict[str, Schema], schema: str
    ) -> None:
        at: Loc = ("components", name)
        if conf.time is not None:
            found = _field_at(schemas, schema, conf.time)
            if isinstance(found, str):
                self.error((*at, "window", "time"), f"time {conf.time!r}: {found}")
            elif found.type.kind != "scalar" or found.type.name != "datetime":
                self.error(
                    (*at, "window", "time"),
                    f"time {conf.time!r}: field {found.name!r} is {found.type}; event "
                    "time is a datetime field (required, never null)",
                )
            elif found.type.optional or not found.required:
                self.error(
                    (*at, "window", "time"),
                    f"time {conf.time!r}: field {found.name!r} may be left out or "
                    "null; event time is a required datetime field",
                )
        if conf.field is None:
            return
        found = _field_at(schemas, schema, conf.field)
        what = f"{conf.aggregate} {conf.field!r}"
        if isinstance(found, str):
            self.error((*at, "aggregate", conf.aggregate), f"{what}: {found}")
            return
        needs = {"sum": NUMERIC, "mean": NUMERIC, "min": ORDERED, "max": ORDERED}
        allowed = needs.get(conf.aggregate)
        if allowed is None:
            return
        if (
            found.type.kind != "scalar"
            or found.type.name not in allowed
            or found.type.optional
        ):
            self.error(
                (*at, "aggregate", conf.aggregate),
                f"{what}: field {found.name!r} is {found.type}; {conf.aggregate} "
                f"takes a field of {', '.join(allowed)}, never null",
            )

    def _window_input(self, name: str, connections: tuple[Connection, ...]) -> str:
        """The key of the window's input connections; each must have one, the same,
        and be carried in memory, or be its only one, over redis, with its outputs
        over redis too (the Redis state store)."""
        keys: set[str] = set()
        inputs = [c for c in connections if c.target.component == name]
        for conn in connections:
            if conn.target.component != name:
                continue
            index = self.spec_index(conn)
            loc: Loc = ("connections", index)
            ends = f"{conn.source.ref} -> {conn.target.ref}"
            if conn.key is None:
                self.error(
                    loc,
                    f"window {name!r} takes a keyed input (its windows are per key); "
                    f"connection {ends} has none: add 'key: <field>' to it, or a "
                    f"'key' to schema {conn.target.schema!r}",
                )
            else:
                keys.add(conn.key)
            if conn.transport != "memory":
                at = self.conn_loc(index, self.spec.connections[index], "transport")
                if len(inputs) > 1:
                    self.error(
                        at,
                        f"window {name!r}: over {conn.transport} a window takes one "
                        f"input connection; carry connection {ends} in memory",
                    )
                self._window_outputs(name, connections, conn.transport)
        if len(keys) > 1:
            self.error(
                ("components", name),
                f"window {name!r}: its input connections have different keys "
                f"({', '.join(sorted(keys))}); one key makes one set of windows",
            )
        return min(keys, default="")

    def _window_outputs(
        self, name: str, connections: tuple[Connection, ...], transport: str
    ) -> None:
        """A window over redis writes its results in the script that acknowledges
        its input: its out and late connections must be carried by redis too."""
        for conn in connections:
            if conn.source.component != name or conn.transport == transport:
                continue
            if conn.source.name not in ("out", "late"):
                continue
            index = self.spec_index(conn)
            self.error(
                self.conn_loc(index, self.spec.connections[index], "transport"),
                f"window {name!r}: its input comes over {transport}, so its results "
                "are written in the script that acknowledges it; carry connection "
                f"{conn.source.ref} -> {conn.target.ref} over {transport} too",
            )


def _replace(component: Component, conf: WindowConf, key: str) -> Component:
    return dataclasses.replace(component, window=dataclasses.replace(conf, key=key))
