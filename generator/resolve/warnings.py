"""What a blueprint may do but probably did not mean: reported, never refused."""

from __future__ import annotations

from ..blueprint import Component, Connection, Schema
from ..yaml_source import Loc
from .checks import Checks


class WarningRules(Checks):
    """Warn of settings that do not apply, and of parts nothing uses."""

    def redis(self, connections: tuple[Connection, ...]) -> None:
        """Warn where the blueprint asks Redis for what only memory does."""
        for conn in connections:
            if conn.transport == "redis" and conn.overflow != "block":
                index = self.spec_index(conn)
                loc: Loc = ("defaults", "overflow")  # where the policy came from
                if self.spec.connections[index].overflow is not None:
                    loc = self.conn_loc(index, self.spec.connections[index], "overflow")
                elif self.spec.components[conn.target.component].overflow is not None:
                    loc = ("components", conn.target.component, "overflow")
                self.warn(
                    loc,
                    f"connection {conn.source.ref} -> {conn.target.ref} is carried by "
                    f"redis, where overflow {conn.overflow!r} does not apply: the stream "
                    "keeps every item until it is acknowledged",
                )
        url = self.spec.defaults.redis_url
        if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
            self.warn(
                ("defaults", "redis_url"),
                "redis_url holds credentials, which would be written into the emitted "
                f"code; give them at run time in {self.spec.name.upper()}_REDIS_URL instead",
            )

    def unused(
        self,
        schemas: tuple[Schema, ...],
        components: dict[str, Component],
        connections: tuple[Connection, ...],
    ) -> None:
        used: set[str] = set()
        pending = [
            p.schema for c in components.values() for p in (*c.inputs, *c.outputs)
        ]
        pending += [
            c.state.schema for c in components.values() if c.state and c.state.schema
        ]
        by_name = {s.name: s for s in schemas}
        while pending:
            name = pending.pop()
            if name in used or name not in by_name:
                used.add(name)
                continue
            used.add(name)
            schema = by_name[name]
            pending.extend([schema.extends] if schema.extends else [])
            pending.extend(s for f in schema.fields for s in f.type.schemas())
        for schema in schemas:
            if schema.name not in used:
                self.warn(
                    ("schemas", schema.name),
                    f"schema {schema.name!r} is not used by any port",
                )
        fed = {c.source.ref for c in connections}
        for component in components.values():
            spec = self.spec.components[component.name]
            for port in component.outputs:
                if port.ref not in fed:
                    self.warn(
                        self.port_loc(component.name, spec, "out", port.name),
                        f"output port {port.ref} is not connected; what it emits is discarded",
                    )
