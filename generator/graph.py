"""The blueprint rules that need the whole file, and the resolution that follows them.

``resolve`` takes a shape-checked ``BlueprintSpec`` and the ``SourceDoc`` it came from,
checks every cross-reference (schemas, ports, connections, routes, cycles), and returns
the resolved ``Blueprint``; every problem found is reported at once, each with its line.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import re
import warnings
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import SchemaError

from .blueprint import (
    ERROR_SCHEMA,
    ERRORS_PORT,
    Blueprint,
    Component,
    Connection,
    Port,
    RateLimit,
    Schema,
    SchemaField,
    TypeRef,
)
from .errors import BlueprintError, Problem
from .examples import ExampleError, example_value, schema_example
from .field_types import TypeSyntaxError, allowed_constraints, parse_type
from .model import (
    ENDPOINT,
    LOGIC_KINDS,
    BlueprintSpec,
    ComponentSpec,
    ConnectionSpec,
    RateLimitSpec,
    SchemaSpec,
)
from .names import component_classes
from .yaml_source import Loc, SourceDoc

CONSTRAINTS = ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern")
# Defaults are checked the way the emitted models check them: Python's re for patterns.
_DEFAULT_CHECK = ConfigDict(regex_engine="python-re")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a candidate is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve(spec: BlueprintSpec, doc: SourceDoc) -> Blueprint:
    """Check the graph rules and resolve ``spec``; raise BlueprintError listing all problems."""
    return _Resolver(spec, doc).run()


class _Resolver:
    def __init__(self, spec: BlueprintSpec, doc: SourceDoc) -> None:
        self.spec = spec
        self.doc = doc
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.known_schemas = set(spec.schemas) | {ERROR_SCHEMA}
        self.examples: dict[str, dict[str, Any]] = {}  # each schema's, once derived

    def error(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(self.doc.problem(loc, message))

    def run(self) -> Blueprint:
        schemas = self.schemas()
        components = self.components()
        connections = self.connections(components)
        self.unconnected_inputs(components)
        self.cycles(connections)
        self.redis(connections)
        self.unused(schemas, components, connections)
        if self.problems:
            raise BlueprintError(self.problems)
        pii = {name.lower() for name in self.spec.defaults.pii_fields}
        pii |= {f.name.lower() for s in schemas for f in s.fields if f.pii}
        return Blueprint(
            name=self.spec.name,
            description=self.spec.description,
            version=self.spec.version,
            schemas=schemas,
            components=tuple(components.values()),
            connections=connections,
            pii_fields=tuple(sorted(pii)),
            warnings=tuple(sorted(self.warnings)),
            forbidden_imports=tuple(self.spec.forbidden_imports),
            trusted_proxies=tuple(dict.fromkeys(self.spec.defaults.trusted_proxies)),
            transport=self.spec.transport,
            redis_url=self.spec.defaults.redis_url,
            max_retries=self.spec.defaults.max_retries,
            claim_idle_ms=self.spec.defaults.claim_idle_ms,
            ci_portwright=self.spec.ci.portwright,
            ci_index_url=self.spec.ci.index_url,
        )

    # -- schemas ---------------------------------------------------------------------

    def schema_ref(self, loc: Loc, name: str, what: str) -> bool:
        if name in self.known_schemas:
            return True
        self.error(
            loc,
            f"unknown schema {name!r} in {what}{did_you_mean(name, self.known_schemas)}",
        )
        return False

    def schemas(self) -> tuple[Schema, ...]:
        specs = self.spec.schemas
        types: dict[str, dict[str, TypeRef]] = {}
        for name, schema in specs.items():
            if schema.extends is not None:
                loc = ("schemas", name, "extends")
                if schema.extends == ERROR_SCHEMA:
                    self.error(loc, "a schema cannot extend the built-in ErrorRecord")
                else:
                    self.schema_ref(
                        loc, schema.extends, f"'extends' of schema {name!r}"
                    )
            types[name] = {}
            for field_name, field in schema.fields.items():
                ref = self.field_type(name, field_name, field.type)
                if ref is not None:
                    types[name][field_name] = ref
        order = self.schema_order(types)
        resolved: dict[str, Schema] = {}
        for name in order:
            resolved[name] = self.schema(name, specs[name], types[name], resolved)
        return tuple(resolved[name] for name in order)

    def field_type(self, schema: str, field: str, text: str) -> TypeRef | None:
        loc = ("schemas", schema, "fields", field, "type")
        try:
            ref = parse_type(text)
        except TypeSyntaxError as exc:
            self.error(loc, str(exc))
            return None
        for name in ref.schemas():
            if name == ERROR_SCHEMA:
                self.error(
                    loc, "ErrorRecord can be the schema of a port, not of a field"
                )
                return None
            if not self.schema_ref(loc, name, f"field {schema}.{field}"):
                return None
        return ref

    def schema_order(self, types: dict[str, dict[str, TypeRef]]) -> list[str]:
        """Schemas in blueprint order, each after the schemas it extends or refers to."""
        deps: dict[str, list[str]] = {}
        for name, schema in self.spec.schemas.items():
            refs = [schema.extends] if schema.extends in types else []
            refs += [
                s for ref in types[name].values() for s in ref.schemas() if s in types
            ]
            deps[name] = refs
        order: list[str] = []
        state: dict[str, int] = {}  # 1: visiting, 2: done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join([*path[path.index(name) :], name])
                self.error(
                    ("schemas", name),
                    f"schemas refer to themselves: {cycle}; version 1 has no recursive schemas",
                )
                return
            state[name] = 1
            for dep in deps[name]:
                visit(dep, [*path, name])
            state[name] = 2
            order.append(name)

        for name in self.spec.schemas:
            visit(name, [])
        return order

    def schema(
        self,
        name: str,
        spec: SchemaSpec,
        types: dict[str, TypeRef],
        done: dict[str, Schema],
    ) -> Schema:
        inherited: tuple[SchemaField, ...] = ()
        if spec.extends is not None and spec.extends in done:
            inherited = done[spec.extends].fields
        taken = {f.name: f.declared_in for f in inherited}
        fields = list(inherited)
        for field_name, field in spec.fields.items():
            loc: Loc = ("schemas", name, "fields", field_name)
            if field_name in taken:
                self.error(
                    loc,
                    f"field {field_name!r} is already defined by schema {taken[field_name]!r}",
                )
                continue
            ref = types.get(field_name)
            if ref is None:
                continue
            constraints = tuple(
                (key, getattr(field, key))
                for key in CONSTRAINTS
                if getattr(field, key) is not None
            )
            before = len(self.problems)
            self.check_constraints(loc, ref, dict(constraints))
            if field.has_default:
                self.check_default(loc, ref, field.default, dict(constraints))
            if len(self.problems) == before:
                self.check_example(loc, ref, dict(constraints))
            fields.append(
                SchemaField(
                    name=field_name,
                    type=ref,
                    required=not field.has_default,
                    default=field.default,
                    description=field.description,
                    pii=field.pii,
                    constraints=constraints,
                    declared_in=name,
                )
            )
        example: dict[str, Any] = {}
        if all(s in self.examples for f in fields for s in f.type.schemas()):
            try:
                example = schema_example(fields, self.examples)
            except ExampleError:  # reported on the field by check_example
                pass
            else:
                self.examples[name] = example
        return Schema(
            name,
            spec.description,
            spec.extends,
            tuple(fields),
            tuple(spec.fields),
            json.dumps(example),
        )

    def check_example(
        self, loc: Loc, ref: TypeRef, constraints: dict[str, Any]
    ) -> None:
        """Report a field whose constraints defeat the example every emitted test needs."""
        if ref.schemas():  # an example of each schema is checked with that schema
            return
        where: Loc = (*loc, "pattern") if "pattern" in constraints else loc
        try:
            value = example_value(ref, constraints, self.examples)
        except ExampleError as exc:
            self.error(
                where,
                f"{exc}; the emitted tests need a valid example of every schema: "
                "simplify the constraint",
            )
            return
        key = tuple((k, type(bound), bound) for k, bound in sorted(constraints.items()))
        adapter = default_checker(ref, key)
        if adapter is None:
            return
        try:
            adapter.validate_json(json.dumps(value), strict=True)
        except ValidationError as exc:
            self.error(
                where,
                f"portwright cannot derive a valid example for type '{ref}' under these "
                f"constraints (its try, {value!r}: {exc.errors()[0]['msg']}); the emitted "
                "tests need one: loosen the constraints",
            )

    def check_constraints(
        self, loc: Loc, ref: TypeRef, constraints: dict[str, Any]
    ) -> None:
        allowed = allowed_constraints(ref)
        for key in constraints:
            if key not in allowed:
                fits = ", ".join(sorted(allowed)) or "none"
                self.error(
                    (*loc, key),
                    f"constraint '{key}' does not apply to type '{ref}' (it takes: {fits})",
                )
        bounds: dict[str, float] = {}
        for key in ("gt", "ge", "lt", "le"):
            value = constraints.get(key)
            if isinstance(value, float) and not math.isfinite(value):
                self.error((*loc, key), f"{key} must be a finite number, got {value}")
            elif value is not None:
                bounds[key] = value
        for low_key, high_key in itertools.product(("gt", "ge"), ("lt", "le")):
            low, high = bounds.get(low_key), bounds.get(high_key)
            if low is None or high is None:
                continue
            strict = low_key == "gt" or high_key == "lt"
            if low > high or (low == high and strict):
                self.error(
                    loc,
                    f"no value satisfies both {low_key} {low} and {high_key} {high}",
                )
                break
        low, high = constraints.get("min_length"), constraints.get("max_length")
        if low is not None and high is not None and low > high:
            self.error(
                (*loc, "min_length"),
                f"min_length {low} is greater than max_length {high}",
            )
        pattern = constraints.get("pattern")
        if pattern is not None:
            try:
                with warnings.catch_warnings():  # "possible set difference" and such
                    warnings.simplefilter("ignore")
                    re.compile(pattern)
            except re.error as exc:
                self.error(
                    (*loc, "pattern"),
                    f"pattern {pattern!r} is not a valid regular expression: {exc}",
                )

    def check_default(
        self, loc: Loc, ref: TypeRef, value: Any, constraints: dict[str, Any]
    ) -> None:
        if value is None:
            if not ref.optional:
                self.error(
                    (*loc, "default"),
                    f"default is null but type '{ref}' is not optional (write '{ref} | None')",
                )
            return
        if ref.schemas():
            self.error(
                (*loc, "default"), f"a field of type '{ref}' may only default to null"
            )
            return
        try:
            # The emitted model holds the default as a Python literal, so it must be
            # of the field's type already (no coercion): checked strictly, as JSON.
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            self.error(
                (*loc, "default"),
                f"default {value!r} is not a plain value (a string, a finite number, "
                "true/false, null, a list or a mapping)",
            )
            return
        allowed = allowed_constraints(ref)
        usable = {
            key: bound for key, bound in constraints.items() if key in allowed
        }  # the others are reported by check_constraints
        # typed: gt=1 and gt=1.0 are equal keys but word their errors differently
        key = tuple(
            (name, type(bound), bound) for name, bound in sorted(usable.items())
        )
        adapter = default_checker(ref, key)
        if adapter is None:  # an invalid pattern, reported by check_constraints
            return
        try:
            adapter.validate_json(text, strict=True)
        except ValidationError as exc:
            error = exc.errors()[0]
            reason = error["msg"]
            if error["type"] == "string_pattern_mismatch":  # quote it: one line
                reason = f"String should match pattern {usable['pattern']!r}"
            self.error(
                (*loc, "default"), f"default {value!r} is not a valid '{ref}': {reason}"
            )

    # -- components ------------------------------------------------------------------

    def components(self) -> dict[str, Component]:
        out: dict[str, Component] = {}
        routes: dict[tuple[str, str], str] = {}
        defaults = self.spec.defaults
        for name, spec in self.spec.components.items():
            inputs = self.ports(name, spec, "in")
            outputs = self.ports(name, spec, "out")
            self.check_port_counts(name, spec, inputs, outputs)
            extra: dict[str, Any] = {}
            if spec.kind == "api_endpoint":
                method, path = spec.route.split(" ", 1)
                key = (method, path.rstrip("/") or "/")
                if key in routes:
                    self.error(
                        ("components", name, "route"),
                        f"route {spec.route!r} is already used by component {routes[key]!r}",
                    )
                routes.setdefault(key, name)
                extra = {
                    "method": method,
                    "path": path,
                    "timeout_ms": spec.timeout_ms or defaults.timeout_ms,
                    "max_payload_kb": spec.max_payload_kb or defaults.max_payload_kb,
                    "auth": spec.auth,
                    "rate_limit": self.rate_limit(name, spec.auth, spec.rate_limit),
                }
            burst = getattr(spec, "burst_limit", None) or defaults.burst_limit
            out[name] = Component(
                name=name,
                kind=spec.kind,
                description=spec.description,
                inputs=inputs,
                outputs=outputs,
                burst_limit=burst,
                renamed_from=spec.renamed_from,
                **extra,
            )
        self.check_renames()
        self.check_class_names()
        return out

    def check_class_names(self) -> None:
        """Each class the emitted code makes from a name is made once.

        Schemas are classes, and a component with user code makes ``Name``,
        ``NameBase`` and ``NamePort``; the modules import them side by side, so one
        name made twice would shadow the other (``score`` and schema ``Score``,
        ``a_b`` and ``a__b``, ``score`` and ``score_base``).
        """
        owners = {name: f"schema {name!r}" for name in self.spec.schemas}
        for name, spec in self.spec.components.items():
            if spec.kind not in LOGIC_KINDS:
                continue
            for made in component_classes(name):
                if made in owners:
                    self.error(
                        ("components", name),
                        f"component {name!r} makes the class {made!r}, which "
                        f"{owners[made]} makes too; rename one of them",
                    )
                    break
            else:
                for made in component_classes(name):
                    owners[made] = f"component {name!r}"

    def rate_limit(
        self, name: str, auth: str | None, spec: RateLimitSpec | None
    ) -> RateLimit | None:
        """The endpoint's limit; counting per API key needs API keys to count."""
        if spec is None:
            return None
        if spec.key == "api_key" and auth != "api_key":
            self.error(
                ("components", name, "rate_limit", "key"),
                f"rate_limit key 'api_key' counts per API key, but component {name!r} "
                f"{'has no auth' if auth is None else f'uses auth {auth!r}'}; add "
                "'auth: api_key' or use key 'client'",
            )
        return RateLimit(spec.requests, spec.per_seconds, spec.key)

    def check_renames(self) -> None:
        """A former name must be free and claimed by one component only."""
        claimed: dict[str, str] = {}
        for name, spec in self.spec.components.items():
            old = spec.renamed_from
            if old is None:
                continue
            loc: Loc = ("components", name, "renamed_from")
            if old == name:
                self.error(loc, f"component {name!r} cannot be renamed from itself")
            elif old in self.spec.components:
                self.error(
                    loc,
                    f"{old!r} is still a component; a renamed component's old name must be gone",
                )
            elif old in claimed:
                self.error(
                    loc, f"{old!r} is already claimed by component {claimed[old]!r}"
                )
            claimed.setdefault(old, name)

    def port_loc(
        self, component: str, spec: ComponentSpec, direction: str, port: str
    ) -> Loc:
        single, many = (
            ("input", "inputs") if direction == "in" else ("output", "outputs")
        )
        if getattr(spec, single, None) is not None:
            return ("components", component, single)
        return ("components", component, many, port)

    def ports(self, name: str, spec: ComponentSpec, direction: str) -> tuple[Port, ...]:
        single_key, many_key = (
            ("input", "inputs") if direction == "in" else ("output", "outputs")
        )
        single: str | None = getattr(spec, single_key, None)
        many: dict[str, str] | None = getattr(spec, many_key, None)
        if single is not None and many is not None:
            self.error(
                ("components", name, many_key),
                f"give either '{single_key}' or '{many_key}', not both",
            )
        declared: dict[str, str] = {}
        if single is not None:
            declared = {
                direction: single
            }  # the shorthands name their port 'in' / 'out'
        elif many is not None:
            declared = dict(many)
        ports = []
        for port, schema in declared.items():
            loc = self.port_loc(name, spec, direction, port)
            self.schema_ref(
                loc, schema, f"port {name}.{port}"
            )  # kept either way: no cascade
            if direction == "out" and port == ERRORS_PORT and schema != ERROR_SCHEMA:
                self.error(
                    loc,
                    f"the 'errors' output carries the built-in ErrorRecord, not {schema!r}",
                )
                continue
            ports.append(Port(name, port, schema, direction))
        return tuple(ports)

    def check_port_counts(
        self,
        name: str,
        spec: ComponentSpec,
        inputs: tuple[Port, ...],
        outputs: tuple[Port, ...],
    ) -> None:
        kind = getattr(spec, "kind", "")
        data_out = [p for p in outputs if p.name != ERRORS_PORT]
        if kind == "sink" and not inputs:
            self.error(
                ("components", name),
                "a sink needs at least one input ('input' or 'inputs')",
            )
        if kind == "merger" and not inputs:
            self.error(
                ("components", name), "a merger needs at least one input ('inputs')"
            )
        if (
            kind in ("transformer", "filter", "router")
            and len(inputs) != 1
            and not self._port_errors(name)
        ):
            self.error(
                ("components", name),
                f"a {kind} has exactly one input ('input: Schema')",
            )
        if (
            kind in ("source", "router")
            and not data_out
            and not self._port_errors(name)
        ):
            self.error(
                ("components", name), f"a {kind} needs at least one output ('outputs')"
            )
        if (
            kind in ("api_endpoint", "transformer", "filter", "merger")
            and len(data_out) != 1
            and not self._port_errors(name)
        ):
            self.error(
                ("components", name),
                f"{'an' if kind == 'api_endpoint' else 'a'} {kind} has exactly one output "
                "besides 'errors' ('output: Schema')",
            )
        if kind == "api_endpoint" and any(p.name == ERRORS_PORT for p in outputs):
            self.error(
                ("components", name),
                "an api_endpoint answers bad requests itself; it has no 'errors' output",
            )
        if (
            kind == "filter"
            and inputs
            and data_out
            and not self.is_subschema(inputs[0].schema, data_out[0].schema)
        ):
            self.error(
                self.port_loc(name, spec, "out", data_out[0].name),
                f"a filter passes items through unchanged: its output schema {data_out[0].schema!r} "
                f"must be its input schema {inputs[0].schema!r} or one it extends",
            )
        if kind == "merger" and data_out:
            for port in inputs:
                if not self.is_subschema(port.schema, data_out[0].schema):
                    self.error(
                        self.port_loc(name, spec, "in", port.name),
                        f"merger input {port.name!r} carries {port.schema!r}, which is not the "
                        f"output schema {data_out[0].schema!r} nor extends it",
                    )

    def _port_errors(self, name: str) -> bool:
        """Whether a port of ``name`` was already reported (its counts would mislead)."""
        prefix = f"components.{name}."
        return any(p.key.startswith(prefix) for p in self.problems)

    def is_subschema(self, child: str, parent: str) -> bool:
        """Whether ``child`` is ``parent`` or extends it, directly or not."""
        seen: set[str] = set()
        current: str | None = child
        while current is not None and current not in seen:
            if current == parent:
                return True
            seen.add(current)
            spec = self.spec.schemas.get(current)
            current = spec.extends if spec is not None else None
        return False

    # -- connections -----------------------------------------------------------------

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
        self.fed: set[str] = (
            set()
        )  # inputs some connection names, valid or not: no cascade
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
                    transport=conn.transport or self.spec.transport,
                )
            )
        return tuple(out)

    def conn_loc(self, index: int, conn: ConnectionSpec, key: str) -> Loc:
        """Where a connection's end is written: its own key in the mapping form."""
        loc: Loc = ("connections", index, key)
        return loc if loc in self.doc.lines else ("connections", index)

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

    def spec_index(self, conn: Connection) -> int:
        for index, spec in enumerate(self.spec.connections):
            ends = (spec.from_.strip(), spec.to.strip())
            if ends == (conn.source.ref, conn.target.ref):
                return index
        return 0

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

    # -- warnings --------------------------------------------------------------------

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


@functools.lru_cache(maxsize=256)
def default_checker(
    ref: TypeRef, constraints: tuple[tuple[str, type, Any], ...]
) -> TypeAdapter[Any] | None:
    """The validator of defaults of ``ref`` under ``constraints``; None if it cannot be built.

    Building one costs ~1 ms and a blueprint repeats the same few field types, so
    they are kept: a large blueprint would otherwise spend most of its load here.
    """
    bounds = {name: bound for name, _type, bound in constraints}
    annotation: Any = Annotated[python_type(ref), Field(**bounds)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return TypeAdapter(annotation, config=_DEFAULT_CHECK)
    except SchemaError:
        return None


def python_type(ref: TypeRef) -> Any:
    """The Python type of a non-schema TypeRef (used to check defaults)."""
    import datetime
    import uuid

    scalars: dict[str, Any] = {
        "str": str, "int": int, "float": float, "bool": bool, "datetime": datetime.datetime,
        "date": datetime.date, "uuid": uuid.UUID, "dict": dict[str, Any],
    }  # fmt: skip
    if ref.item is not None:
        item: Any = python_type(ref.item)
        core: Any = list[item]
    else:
        core = scalars[ref.name]
    return core | None if ref.optional else core
