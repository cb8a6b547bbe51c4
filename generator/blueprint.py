"""The resolved blueprint: what the planner reads once the loader has checked a file.

Everything here is explicit: every port knows its schema, every connection its
effective buffer size and overflow policy, every ingress its timeout and payload cap,
every schema its full list of fields (inherited ones first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .errors import Problem
from .ops.slo import Guardrails, Objective

ERROR_SCHEMA = "ErrorRecord"
ERRORS_PORT = "errors"


@dataclass(frozen=True)
class TypeRef:
    """A field type: a scalar, a list, a dict, or another schema; possibly optional."""

    kind: str  # "scalar" | "list" | "schema"
    name: (
        str  # scalar name ("str", "uuid", "dict", ...) or schema name; "list" for lists
    )
    item: TypeRef | None = None
    optional: bool = False

    def schemas(self) -> tuple[str, ...]:
        """The schema names this type refers to."""
        if self.kind == "schema":
            return (self.name,)
        return self.item.schemas() if self.item is not None else ()

    def __str__(self) -> str:
        core = f"list[{self.item}]" if self.kind == "list" else self.name
        return f"{core} | None" if self.optional else core


@dataclass(frozen=True)
class SchemaField:
    """One field of a resolved schema."""

    name: str
    type: TypeRef
    required: bool
    default: Any
    description: str | None
    pii: bool
    constraints: tuple[tuple[str, Any], ...]  # (name, value) in a fixed order
    declared_in: str  # the schema that declared it (differs for inherited fields)


@dataclass(frozen=True)
class Schema:
    """A message schema with all of its fields, inherited ones first."""

    name: str
    description: str | None
    extends: str | None
    fields: tuple[SchemaField, ...]
    own_fields: tuple[str, ...]
    # A valid item with every field filled, as JSON text: derived when the blueprint
    # is resolved, so that a schema without one is refused by ``validate``.
    example_json: str = "{}"
    #: the field (``a.b``: nested) whose values keep their order on a connection
    key: str | None = None

    def example(self) -> dict[str, Any]:
        """A fresh copy of the schema's example item (tests post it, defaults fill it)."""
        value: dict[str, Any] = json.loads(self.example_json)
        return value


@dataclass(frozen=True)
class Port:
    """A component's named input or output and the schema of what crosses it."""

    component: str
    name: str
    schema: str
    direction: str  # "in" | "out"

    @property
    def ref(self) -> str:
        """``component.port``, as connections write it."""
        return f"{self.component}.{self.name}"


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` per ``per_seconds``, counted per client or per API key."""

    requests: int
    per_seconds: int
    key: str  # "client" | "api_key"


@dataclass(frozen=True)
class Live:
    """A live (WebSocket) component's route and limits (websocket_in, websocket_out)."""

    route: str
    max_connections: int
    heartbeat_ms: int
    slow_client: str = "disconnect"  # websocket_out: "disconnect" or "drop_oldest"
    send_queue: int = 1024  # websocket_out: frames waiting for one client
    subscribe_by: tuple[str, ...] = ()  # websocket_out: fields clients filter by
    page: bool = True  # websocket_out: a GET of the route serves a page
    max_frame_bytes: int = 65536  # websocket_in: the largest frame taken


@dataclass(frozen=True)
class WindowConf:
    """A window component's windows and aggregate, resolved (seconds)."""

    type: str  # "tumbling" | "hopping" | "sliding"
    size: float | None  # None: count windows
    hop: float | None  # hopping only
    count: int | None  # count windows only
    time: str | None  # the event-time field (``a.b``: nested); None: processing time
    grace: float  # event time only; else 0
    aggregate: str  # count, sum, mean, min, max, last, collect; custom: user code
    field: str | None  # the aggregated field; None: count, or the item itself
    emit: str  # "final" | "every"
    key: str  # the key field of its input's connections
    max_open: int | None = None
    value: str | None = None  # custom: the type its result() returns, as written


@dataclass(frozen=True)
class JoinConf:
    """A join component's interval and time, resolved (seconds)."""

    within: float
    time_left: str | None  # the left input's event-time field; None: processing time
    time_right: str | None
    grace: float  # event time only; else 0
    key_left: str  # the key field of each input's connections
    key_right: str
    max_buffered: int | None = None


@dataclass(frozen=True)
class StateConf:
    """A component's keyed state (``state: true``): ``self.state`` per input key."""

    schema: str | None  # the state_schema; None: a dict of JSON values
    max_keys: int | None = None  # None: the runtime's default


@dataclass(frozen=True)
class Component:
    """A resolved component with its ports and effective settings."""

    name: str
    kind: str
    description: str | None
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    method: str | None = None  # api_endpoint only
    path: str | None = None  # api_endpoint only
    timeout_ms: int | None = None  # api_endpoint only
    max_payload_kb: int | None = None  # api_endpoint only
    auth: str | None = None  # api_endpoint only: None, "api_key" or "basic"
    rate_limit: RateLimit | None = None  # api_endpoint only
    burst_limit: int | None = None  # every component: its checkpoint cadence
    concurrency: int = 1  # kinds with inputs and user code: items in the method at once
    ordering: str = "input"  # "input" or "none": the order results leave in
    blocking: bool = False  # the user method runs in worker threads
    batch_max_items: int | None = None  # sink, transformer: the method takes lists
    batch_max_wait_ms: int = 0  # with batch: how long a batch waits to fill
    every_ms: int | None = None  # source: a timer ticking this often
    schedule: str | None = None  # source: a timer ticking on these cron fields
    renamed_from: str | None = None  # its name before a rename, for regenerate
    objectives: tuple[Objective, ...] = ()  # api_endpoint, sink: its SLOs
    guardrails: Guardrails = field(default_factory=Guardrails)  # docs/operations.md
    live: Live | None = None  # websocket_in, websocket_out: route and limits
    window: WindowConf | None = None  # window: its windows and aggregate
    join: JoinConf | None = None  # join: its interval, time and keys
    state: StateConf | None = None  # transformer, filter, router, sink: keyed state

    def output(self, name: str) -> Port | None:
        """The output port called ``name``, if there is one."""
        return next((port for port in self.outputs if port.name == name), None)

    def input(self, name: str) -> Port | None:
        """The input port called ``name``, if there is one."""
        return next((port for port in self.inputs if port.name == name), None)

    @property
    def data_outputs(self) -> tuple[Port, ...]:
        """Outputs other than the ``errors`` port."""
        return tuple(port for port in self.outputs if port.name != ERRORS_PORT)

    @property
    def custom_aggregate(self) -> str | None:
        """A window whose aggregate is user code: the type its value has, else None
        (the kinds table's ``Variant`` for such a window reads it)."""
        window = self.window
        if window is None or window.aggregate != "custom":
            return None
        return window.value


@dataclass(frozen=True)
class Connection:
    """An edge from an output port to an input port, with its effective settings."""

    source: Port
    target: Port
    buffer_size: int
    overflow: str
    feedback: bool
    description: str | None
    transport: str = "memory"  # "memory" or "redis"
    #: keyed: items of one value of this field (``a.b``: nested) keep their order and
    #: are never in the receiver's method together; None: not keyed
    key: str | None = None
    #: redis: the most entries the target's group may hold unread or pending
    #: before senders wait; None: unbounded
    max_lag: int | None = None
    #: keyed: the partitions (streams) it is split into when carried by redis;
    #: None: not keyed
    partitions: int | None = None


@dataclass(frozen=True)
class Blueprint:
    """A checked, fully resolved blueprint."""

    name: str
    description: str | None
    version: str
    schemas: tuple[Schema, ...]  # in dependency order: a schema after all it refers to
    components: tuple[Component, ...]  # in blueprint order
    connections: tuple[Connection, ...]  # in blueprint order
    pii_fields: tuple[str, ...]  # sorted, lower case
    warnings: tuple[Problem, ...] = ()
    forbidden_imports: tuple[str, ...] = ()  # beyond the default list
    trusted_proxies: tuple[str, ...] = ()  # normalised CIDRs, blueprint order
    transport: str = "memory"  # the connections' default
    redis_url: str = "redis://127.0.0.1:6379/0"
    max_retries: int = 3  # redis deliveries before the dead-letter stream
    claim_idle_ms: int = 30_000  # unacknowledged this long: another replica takes it
    ci_portwright: str | None = (
        None  # what CI installs portwright as; None: this version
    )
    ci_index_url: str | None = None  # the index CI installs from; None: pip's default

    @property
    def uses_redis(self) -> bool:
        """Whether any connection is carried by Redis."""
        return any(c.transport == "redis" for c in self.connections)

    def component(self, name: str) -> Component:
        """The component called ``name``."""
        return self._components_by_name[name]

    def schema(self, name: str) -> Schema:
        """The schema called ``name``."""
        return self._schemas_by_name[name]

    def connections_from(self, ref: str) -> tuple[Connection, ...]:
        """The connections leaving the output port ``ref`` (``component.port``), in order."""
        return self._connections_by_source.get(ref, ())

    # Indexes built on first use: the planner asks these for every port of every
    # component, and a scan each time made planning quadratic in the components.
    @cached_property
    def _components_by_name(self) -> dict[str, Component]:
        return {c.name: c for c in self.components}

    @cached_property
    def _schemas_by_name(self) -> dict[str, Schema]:
        return {s.name: s for s in self.schemas}

    @cached_property
    def _connections_by_source(self) -> dict[str, tuple[Connection, ...]]:
        found: dict[str, list[Connection]] = {}
        for connection in self.connections:
            found.setdefault(connection.source.ref, []).append(connection)
        return {ref: tuple(conns) for ref, conns in found.items()}
