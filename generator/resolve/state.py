"""Keyed state: ``state: true`` on a transformer, filter, router or sink.

The rules refuse, each at its line, what the runtime's ``keyedstate.Stateful``
would refuse when the service starts (an unkeyed input, an input over Redis
beside other input connections, a batch, several input connections with
``concurrency`` or ``blocking``) and what it could not make: a ``state_schema``
with a field that has no
default (a new key's state is the schema made from its defaults), ``state_schema``
or ``max_keys`` without ``state: true``.
"""

from __future__ import annotations

from typing import Any

from ..blueprint import Component, Connection, Schema, StateConf
from ..model import _Batches, _KeepsState
from ..yaml_source import Loc
from .checks import Checks


class StateRules(Checks):
    """A stateful component's settings, then its input connections."""

    def keyed_state(self, name: str, spec: _KeepsState) -> dict[str, Any]:
        """The component's ``state`` (a StateConf), or nothing when it keeps none."""
        at: Loc = ("components", name)
        if not spec.state:
            for key in ("state_schema", "max_keys"):
                if getattr(spec, key) is not None:
                    self.error(
                        (*at, key),
                        f"component {name!r}: {key!r} is for keyed state; add "
                        "'state: true', or drop it",
                    )
            return {}
        if isinstance(spec, _Batches) and spec.batch is not None:
            self.error(
                (*at, "state"),
                f"component {name!r}: state is kept per item, and a batch holds "
                "items of several keys; drop 'batch' (or 'state')",
            )
        if spec.state_schema is not None:
            self.schema_ref(
                (*at, "state_schema"), spec.state_schema, f"component {name!r}"
            )
        return {"state": StateConf(spec.state_schema, spec.max_keys)}

    def stateful(
        self,
        components: dict[str, Component],
        connections: tuple[Connection, ...],
        schemas: tuple[Schema, ...],
    ) -> None:
        """Each stateful component's state schema and input connections."""
        by_name = {s.name: s for s in schemas}
        for component in components.values():
            if component.state is None:
                continue
            schema = by_name.get(component.state.schema or "")
            if schema is not None:
                self._made_from_defaults(component.name, schema)
            into = [c for c in connections if c.target.component == component.name]
            for conn in into:
                self._state_input(component.name, conn, len(into))
            if len(into) > 1 and (component.concurrency > 1 or component.blocking):
                self.error(
                    ("components", component.name, "state"),
                    f"component {component.name!r} keeps state per key and has "
                    f"{len(into)} input connections, each read by a loop of its own: "
                    "one key could be in its method from two at once; drop "
                    "'concurrency' and 'blocking' (or feed it from one connection)",
                )

    def _made_from_defaults(self, name: str, schema: Schema) -> None:
        required = [f.name for f in schema.fields if f.required]
        if required:
            self.error(
                ("components", name, "state_schema"),
                f"component {name!r}: state_schema {schema.name!r} has fields "
                f"without a default ({', '.join(required)}); a new key's state is "
                "made from the defaults: give each one",
            )

    def _state_input(self, name: str, conn: Connection, inputs: int) -> None:
        index = self.spec_index(conn)
        ends = f"{conn.source.ref} -> {conn.target.ref}"
        if conn.key is None:
            self.error(
                ("connections", index),
                f"component {name!r} keeps state per key (state: true); connection "
                f"{ends} has none: add 'key: <field>' to it, or a 'key' to schema "
                f"{conn.target.schema!r}",
            )
        if conn.transport != "memory" and inputs > 1:
            # over Redis the key states live per partition of that one connection
            self.error(
                self.conn_loc(index, self.spec.connections[index], "transport"),
                f"component {name!r} keeps state per key in Redis, per partition of "
                f"its input connection: it takes one input connection over Redis, "
                f"and has {inputs}; carry connection {ends} in memory "
                "('transport: memory'), or feed it from one connection",
            )
