"""Keys: the field whose values keep their order on a connection, checked and resolved.

A key is a field of the schema a connection's target port takes (``a.b``: field ``b``
of the schema of field ``a``), named by the connection or by that schema (or one it
extends). Every field on the way must be required and never null, and the last one a
hashable scalar: an item without a value for its key could not be ordered with the
others of that value.
"""

from __future__ import annotations

import dataclasses
import typing

from ..blueprint import Connection, Schema
from ..scalars import SCALARS
from ..yaml_source import Loc
from .checks import Checks, did_you_mean


def _hashable(scalar: str) -> bool:
    known = SCALARS.get(scalar)
    if known is None:
        return False
    python = typing.get_origin(known.python) or known.python
    return getattr(python, "__hash__", None) is not None


class KeyRules(Checks):
    """Check each key against its schema and give each connection its key."""

    def schema_keys(self, schemas: tuple[Schema, ...]) -> None:
        """Report every schema whose own ``key`` is not a usable field."""
        by_name = {s.name: s for s in schemas}
        for name, spec in self.spec.schemas.items():
            if spec.key is not None and name in by_name:
                problem = key_problem(by_name, name, spec.key)
                if problem is not None:
                    self.error(("schemas", name, "key"), problem)

    def keyed(
        self, connections: tuple[Connection, ...], schemas: tuple[Schema, ...]
    ) -> tuple[Connection, ...]:
        """The connections, each with its key (its own, else its target schema's)."""
        by_name = {s.name: s for s in schemas}
        out: list[Connection] = []
        for conn in connections:
            index = self.spec_index(conn)
            spec = self.spec.connections[index]
            target = by_name.get(conn.target.schema)
            key = spec.key
            loc: Loc = self.conn_loc(index, spec, "key")
            if key is not None:
                problem = (
                    key_problem(by_name, conn.target.schema, key)
                    if target is not None
                    else f"key {key!r}: {conn.target.ref} takes the built-in "
                    f"{conn.target.schema}, which has no key field"
                )
                if problem is not None:
                    self.error(loc, problem)
                    key = None
            elif target is not None:
                key = target.key
                loc = ("schemas", target.name, "key")
                if key is not None and not self._own_key(target.name):
                    loc = ("connections", index)
            partitions = self._partitions(conn, index, key)
            out.append(dataclasses.replace(conn, key=key, partitions=partitions))
        return tuple(out)

    def _partitions(self, conn: Connection, index: int, key: str | None) -> int | None:
        """A keyed connection's partitions: its own, else the defaults'."""
        spec = self.spec.connections[index]
        if spec.partitions is None:
            return None if key is None else self.spec.defaults.partitions
        loc = self.conn_loc(index, spec, "partitions")
        ends = f"{conn.source.ref} -> {conn.target.ref}"
        if key is None:
            self.error(
                loc,
                f"partitions split a keyed connection by its key; connection {ends} "
                "has none: add 'key: <field>' (or a key on its schema), or leave "
                "partitions out",
            )
            return None
        if conn.transport != "redis":
            self.error(
                loc,
                f"partitions split a keyed Redis connection into streams; connection "
                f"{ends} is carried in memory, where each key keeps its order "
                "already: leave partitions out, or 'transport: redis'",
            )
            return None
        return spec.partitions

    def _own_key(self, schema: str) -> bool:
        spec = self.spec.schemas.get(schema)
        return spec is not None and spec.key is not None


def key_problem(schemas: dict[str, Schema], schema: str, path: str) -> str | None:
    """Why ``path`` cannot key items of ``schema``, or None."""
    parts = path.split(".")
    current = schemas[schema]
    for depth, part in enumerate(parts):
        field = next((f for f in current.fields if f.name == part), None)
        where = f"key {path!r}: field {current.name}.{part}"
        if field is None:
            names = [f.name for f in current.fields]
            return (
                f"key {path!r}: schema {current.name!r} has no field {part!r}"
                f"{did_you_mean(part, names)}"
            )
        if not field.required:
            return f"{where} has a default, so an item may leave it out; a key must be required"
        if field.type.optional:
            return f"{where} may be null; a key must always have a value"
        if depth < len(parts) - 1:
            nested = schemas.get(field.type.name)
            if field.type.kind != "schema" or nested is None:
                return (
                    f"{where} is {field.type}, not a schema, so it has no field "
                    f"{parts[depth + 1]!r}"
                )
            current = nested
        elif field.type.kind != "scalar" or not _hashable(field.type.name):
            return f"{where} is {field.type}; a key must be a scalar such as str, int or uuid"
    return None
