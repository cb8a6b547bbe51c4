"""Connections: their ends, schemas that fit, inputs left unfed, and cycles."""

from __future__ import annotations

from ..blueprint import Component, Connection, Port
from ..model import ENDPOINT
from ..yaml_source import Loc
from .checks import Checks, did_you_mean


class ConnectionRules(Checks):
    """Resolve each connection to the ports it joins, with its effective settings."""

    def endpoint(
        self, loc: Loc, text: str, components: dict[str, Component], direction: str
    ) -> Port | None:
        match = ENDPOINT.match(text)
        if match is None:
            self.error(loc, f"{text!r} is not 'component.port'")
            return None
        comp_name, port_name = match.groups()
        component = components.get(comp_name)
        if component is None:
            if comp_name not in self.spec.components:
                self.error(
                    loc,
                    f"unknown component {comp_name!r}{did_you_mean(comp_name, self.spec.components)}",
                )
            return None
        ports = component.outputs if direction == "out" else component.inputs
        port = next((p for p in ports if p.name == port_name), None)
        if port is not None:
            return port
        other = component.inputs if direction == "out" else component.outputs
        side, wants = (
            ("an input", "from an output")
            if direction == "out"
            else ("an output", "to an input")
        )
        if any(p.name == port_name for p in other):
            self.error(
                loc, f"'{text.strip()}' is {side} port; a connection goes {wants}"
            )
        else:
            names = [p.name for p in ports]
            have = ", ".join(names) if names else "none"
            kind = "output" if direction == "out" else "input"
            self.error(
                loc,
                f"component {comp_name!r} has no {kind} port {port_name!r}"
                f"{did_you_mean(port_name, names)}; its {kind}s: {have}",
            )
        return None

    def connections(self, components: dict[str, Component]) -> tuple[Connection, ...]:
        out: list[Connection] = []
        self.fed = set()  # inputs some connection names, valid or not: no cascade
        seen: dict[tuple[str, str], int] = {}
        defaults = self.spec.defaults
        for index, conn in enumerate(self.spec.connections):
            loc: Loc = ("connections", index)
            source = self.endpoint(
                self.conn_loc(index, conn, "from"), conn.from_, components, "out"
            )
            target = self.endpoint(
                self.conn_loc(index, conn, "to"), conn.to, components, "in"
            )
            if target is not None:
                self.fed.add(target.ref)
            if source is None or target is None:
                continue
            key = (source.ref, target.ref)
            if key in seen:
                self.error(
                    loc,
                    f"connection {source.ref} -> {target.ref} is already declared at connections[{seen[key]}]",
                )
                continue
            seen[key] = index
            known = {source.schema, target.schema} <= self.known_schemas
            if known and not self.is_subschema(source.schema, target.schema):
                self.error(
                    loc,
                    f"{source.ref} carries {source.schema!r} but {target.ref} takes {target.schema!r}; "
                    f"the output's schema must be the input's or extend it",
                )
                continue
            owner = self.spec.components[target.component]
            transport = conn.transport or self.spec.transport
            if conn.max_lag is not None and transport != "redis":
                self.error(
                    self.conn_loc(index, conn, "max_lag"),
                    f"max_lag bounds what a Redis consumer group holds; connection "
                    f"{source.ref} -> {target.ref} is carried in memory, where "
                    "buffer_size is the bound: use buffer_size, or 'transport: redis'",
                )
            out.append(
                Connection(
                    source=source,
                    target=target,
                    buffer_size=conn.buffer_size
                    or owner.buffer_size
                    or defaults.buffer_size,
                    overflow=conn.overflow or owner.overflow or defaults.overflow,
                    feedback=conn.feedback,
                    description=conn.description,
                    transport=transport,
                    max_lag=conn.max_lag,
                )
            )
        return tuple(out)

    def unconnected_inputs(self, components: dict[str, Component]) -> None:
        for component in components.values():
            spec = self.spec.components[component.name]
            for port in component.inputs:
                if port.ref not in self.fed:
                    self.error(
                        self.port_loc(component.name, spec, "in", port.name),
                        f"input port {port.ref} has no connection; add one such as "
                        f"'- <component>.<port> -> {port.ref}'",
                    )

    def cycles(self, connections: tuple[Connection, ...]) -> None:
        """Report each cycle of components not broken by a ``feedback: true`` connection."""
        edges: dict[str, list[tuple[str, int]]] = {}
        for index, conn in enumerate(connections):
            if not conn.feedback:
                edges.setdefault(conn.source.component, []).append(
                    (conn.target.component, index)
                )
        state: dict[str, int] = {}
        reported: set[frozenset[str]] = set()

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for nxt, index in edges.get(node, []):
                if state.get(nxt) == 1:
                    cycle = (
                        [*path[path.index(nxt) :], node, nxt]
                        if nxt in path
                        else [node, nxt]
                    )
                    members = frozenset(cycle)
                    if members not in reported:
                        reported.add(members)
                        self.error(
                            ("connections", self.spec_index(connections[index])),
                            f"connections form a cycle: {' -> '.join(cycle)}; if the loop is "
                            f"deliberate, write this connection as a mapping with 'feedback: true'",
                        )
                elif state.get(nxt) is None:
                    visit(nxt, [*path, node])
            state[node] = 2

        for node in [c.source.component for c in connections]:
            if state.get(node) is None:
                visit(node, [])
        for conn in connections:
            if conn.feedback and not self.reaches(
                edges, conn.target.component, conn.source.component
            ):
                self.warn(
                    ("connections", self.spec_index(conn), "feedback"),
                    f"connection {conn.source.ref} -> {conn.target.ref} is marked feedback but closes no cycle",
                )

    @staticmethod
    def reaches(edges: dict[str, list[tuple[str, int]]], start: str, goal: str) -> bool:
        stack, seen = [start], {start}
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            for nxt, _ in edges.get(node, []):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False
