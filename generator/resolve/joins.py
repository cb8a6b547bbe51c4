"""Joins: a join component's ports, interval and time, and its two keyed inputs.

A join takes ``inputs: {left: A, right: B}`` and declares ``output: C`` (what its
``match`` returns, on port ``out``); ``unmatched: true`` adds ``unmatched_left``
(A) and ``unmatched_right`` (B), ``errors: true`` an ``errors`` port. The rules
refuse what the runtime's ``Join`` would refuse when the service starts
(runtime/joins.py), each at its line, so that ``validate`` finds it first: an
input without a key, keys of different types, an event-time field that is not a
required datetime, a grace on processing time. Over redis (docs/redis.md, "A join's
state"): both inputs keyed Redis connections, one each, with the same partitions, on
event time, and every output connection over redis too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..blueprint import (
    ERROR_SCHEMA,
    ERRORS_PORT,
    Component,
    Connection,
    JoinConf,
    Port,
    Schema,
    SchemaField,
)
from ..durations import parse_duration
from ..join_plan import has_shared_key
from ..model import JoinSpec, JoinTimeSpec
from ..yaml_source import Loc
from .checks import Checks
from .windows import _field_at

SIDES = ("left", "right")


def _times(spec: JoinSpec) -> tuple[str | None, str | None]:
    """The event-time field of each side: one for both, or one each."""
    if isinstance(spec.time, JoinTimeSpec):
        return spec.time.left, spec.time.right
    return spec.time, spec.time


class JoinRules(Checks):
    """A join's ports and interval, then its fields and inputs, each at its line."""

    def join(
        self,
        name: str,
        spec: JoinSpec,
        inputs: tuple[Port, ...],
        outputs: tuple[Port, ...],
    ) -> tuple[tuple[Port, ...], dict[str, Any]]:
        """The join's outputs (``out`` and the made ones) and its ``join`` settings."""
        at: Loc = ("components", name)
        names = sorted(p.name for p in inputs)
        if inputs and names != list(SIDES):
            self.error(
                (*at, "inputs") if spec.inputs is not None else (*at, "input"),
                f"join {name!r} takes two inputs named left and right "
                f"('inputs: {{left: Schema, right: Schema}}'), not {', '.join(names)}",
            )
        if spec.outputs is not None:
            self.error(
                (*at, "outputs"),
                f"join {name!r} declares 'output: Schema' (what match returns, on its "
                "port out); its unmatched and errors ports are made from "
                "'unmatched: true' and 'errors: true'",
            )
        made = list(outputs)
        if spec.unmatched:
            made += [
                Port(name, f"unmatched_{p.name}", p.schema, "out")
                for p in sorted(inputs, key=lambda p: p.name)
                if p.name in SIDES
            ]
        if spec.errors:
            made.append(Port(name, ERRORS_PORT, ERROR_SCHEMA, "out"))
        left, right = _times(spec)
        grace = 0.0 if spec.grace is None else parse_duration(spec.grace).seconds
        if grace and left is None:
            self.error(
                (*at, "grace"),
                f"join {name!r}: 'grace' is for event time (set 'time'); items on "
                "processing time are never out of order",
            )
        conf = JoinConf(
            within=parse_duration(spec.within).seconds,
            time_left=left,
            time_right=right,
            grace=grace,
            key_left="",  # known once the connections are
            key_right="",
            max_buffered=spec.max_buffered,
        )
        return tuple(made), {"join": conf}

    def joins(
        self,
        components: dict[str, Component],
        connections: tuple[Connection, ...],
        schemas: tuple[Schema, ...],
    ) -> dict[str, Component]:
        """Check each join's time fields and inputs; give it its keys."""
        by_name = {s.name: s for s in schemas}
        out = dict(components)
        for name, component in components.items():
            conf = component.join
            if conf is None:
                continue
            keys: dict[str, str] = {}
            for port in component.inputs:
                if port.name not in SIDES:
                    continue
                time = conf.time_left if port.name == "left" else conf.time_right
                if time is not None and port.schema in by_name:
                    self._time_field(name, port, time, by_name)
                keys[port.name] = self._join_input(name, port, connections)
            self._key_types(name, component, keys, by_name)
            self._over_redis(name, component, connections)
            out[name] = dataclasses.replace(
                component,
                join=dataclasses.replace(
                    conf,
                    key_left=keys.get("left", ""),
                    key_right=keys.get("right", ""),
                ),
            )
        return out

    def _time_field(
        self, name: str, port: Port, time: str, schemas: dict[str, Schema]
    ) -> None:
        at: Loc = ("components", name, "time")
        if isinstance(self.spec.components[name], JoinSpec):
            spec = self.spec.components[name]
            assert isinstance(spec, JoinSpec)
            if isinstance(spec.time, JoinTimeSpec):
                at = (*at, port.name)
        found = _field_at(schemas, port.schema, time)
        what = f"join {name!r}: time {time!r} of its {port.name} input"
        if isinstance(found, str):
            self.error(at, f"{what}: {found}")
        elif found.type.kind != "scalar" or found.type.name != "datetime":
            self.error(
                at,
                f"{what}: field {found.name!r} is {found.type}; event time is a "
                "datetime field (required, never null)",
            )
        elif found.type.optional or not found.required:
            self.error(
                at,
                f"{what}: field {found.name!r} may be left out or null; event time "
                "is a required datetime field",
            )

    def _join_input(
        self, name: str, port: Port, connections: tuple[Connection, ...]
    ) -> str:
        """The key of one input's connections: each must have one, the same."""
        keys: set[str] = set()
        for conn in connections:
            if conn.target.component != name or conn.target.name != port.name:
                continue
            index = self.spec_index(conn)
            ends = f"{conn.source.ref} -> {conn.target.ref}"
            if conn.key is None:
                self.error(
                    ("connections", index),
                    f"join {name!r} takes keyed inputs (it pairs items of one key); "
                    f"connection {ends} has none: add 'key: <field>' to it, or a "
                    f"'key' to schema {port.schema!r}",
                )
            else:
                keys.add(conn.key)
        if len(keys) > 1:
            self.error(
                ("components", name, "inputs", port.name),
                f"join {name!r}: the connections into its {port.name} input have "
                f"different keys ({', '.join(sorted(keys))}); give them one",
            )
        return min(keys, default="")

    def _over_redis(
        self, name: str, component: Component, connections: tuple[Connection, ...]
    ) -> None:
        """Over redis the state is kept per partition in Redis, by one script that
        acknowledges both inputs and writes the outputs: refuse what it cannot keep
        exact (the runtime's ``JoinStore.check``)."""
        into = [c for c in connections if c.target.component == name]
        if all(c.transport == "memory" for c in into):
            return
        at: Loc = ("components", name)
        for conn in into:
            index = self.spec_index(conn)
            ends = f"{conn.source.ref} -> {conn.target.ref}"
            loc = self.conn_loc(index, self.spec.connections[index], "transport")
            if conn.transport != "redis":
                self.error(
                    loc,
                    f"join {name!r}: an input over redis keeps its state in Redis, so "
                    f"both do; connection {ends} is carried by {conn.transport}: "
                    "carry both inputs over redis, or both in memory",
                )
        for side in SIDES:
            found = [c for c in into if c.target.name == side]
            if len(found) > 1:
                self.error(
                    ("components", name, "inputs", side),
                    f"join {name!r}: over redis each input takes one connection; "
                    f"its {side} input has {len(found)}",
                )
        counts = {c.target.name: c.partitions for c in into}
        if counts.get("left") != counts.get("right"):
            conn = next(c for c in into if c.target.name == "right")
            index = self.spec_index(conn)
            self.error(
                self.conn_loc(index, self.spec.connections[index], "partitions"),
                f"join {name!r}: over redis its inputs need the same number of "
                f"partitions (left {counts.get('left')}, right {counts.get('right')}): "
                "partition p of each holds the same keys, joined by one replica",
            )
        conf = component.join
        if conf is not None and conf.time_left is None:
            self.error(
                at,
                f"join {name!r}: over redis it joins on event time only (set "
                "'time'): its state moves between replicas, a processing-time "
                "expiry needs one clock",
            )
        for conn in connections:
            if conn.source.component != name or conn.source.name == ERRORS_PORT:
                continue
            if conn.transport != "redis":
                index = self.spec_index(conn)
                self.error(
                    self.conn_loc(index, self.spec.connections[index], "transport"),
                    f"join {name!r}: over redis what it makes is written by the "
                    "script that acknowledges its inputs, so connection "
                    f"{conn.source.ref} -> {conn.target.ref} must be over redis too",
                )

    def _key_types(
        self,
        name: str,
        component: Component,
        keys: dict[str, str],
        schemas: dict[str, Schema],
    ) -> None:
        """The two sides' keys must be of one type: an int key never equals a str."""
        types: dict[str, str] = {}
        fields: dict[str, SchemaField] = {}
        for port in component.inputs:
            key = keys.get(port.name)
            if not key or port.schema not in schemas:
                continue
            found = _field_at(schemas, port.schema, key)
            if not isinstance(found, str):
                types[port.name] = str(found.type).removesuffix(" | None")
                fields[port.name] = found
        if len(types) == 2 and types["left"] != types["right"]:
            self.error(
                ("components", name, "inputs"),
                f"join {name!r}: its left key {keys['left']!r} is {types['left']} "
                f"and its right key {keys['right']!r} is {types['right']}; items pair "
                "on equal keys, so they must be of one type",
            )
        elif len(fields) == 2 and not has_shared_key(fields["left"], fields["right"]):
            self.error(
                ("components", name, "inputs"),
                f"join {name!r}: no value is allowed by both its left key "
                f"{keys['left']!r} and its right key {keys['right']!r} (their "
                "constraints exclude each other), so no pair could ever match; "
                "loosen one",
            )
