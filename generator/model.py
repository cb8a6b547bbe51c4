"""The blueprint format as users write it (version 1), as frozen pydantic models.

These models check the shape of a blueprint: keys, types, ranges and names. The rules
that need the whole graph (ports, connections, schemas that refer to each other) live
in the ``resolve`` package, which turns a checked blueprint into the fully resolved
form the planner reads; what each kind of component and each scalar type means is in
the tables of ``kinds.py`` and ``scalars.py``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import names
from .durations import DurationError, parse_duration
from .ops.spec import EndpointSloSpec, GuardrailsSpec, SinkSloSpec
from .schedules import schedule_problem

Overflow = Literal["block", "drop_newest", "drop_oldest"]
Transport = Literal["memory", "redis"]
Kind = Literal[
    "source",
    "api_endpoint",
    "transformer",
    "filter",
    "router",
    "merger",
    "sink",
    "websocket_out",
    "websocket_in",
    "window",
    "join",
]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

DEFAULT_PII_FIELDS = (
    "email", "password", "ssn", "phone", "token", "api_key", "secret", "credit_card",
)  # fmt: skip


def _name(check: Callable[[str], str | None]) -> AfterValidator:
    def validate(value: str) -> str:
        problem = check(value)
        if problem is not None:
            raise PydanticCustomError("portwright_name", problem)
        return value

    return AfterValidator(validate)


ServiceName = Annotated[str, Field(strict=True), _name(names.service_name_problem)]
ComponentName = Annotated[str, Field(strict=True), _name(names.component_name_problem)]
PortName = Annotated[str, Field(strict=True), _name(names.port_name_problem)]
FieldName = Annotated[str, Field(strict=True), _name(names.field_name_problem)]
SchemaName = Annotated[str, Field(strict=True), _name(names.schema_name_problem)]
# A port's schema may also be the built-in ErrorRecord.
PortSchema = Annotated[
    str, Field(strict=True, pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=64)
]
Text = Annotated[str, Field(strict=True, max_length=10_000)]

BufferSize = Annotated[int, Field(strict=True, gt=0, le=10_000_000)]
TimeoutMs = Annotated[int, Field(strict=True, gt=0, le=3_600_000)]
PayloadKb = Annotated[int, Field(strict=True, gt=0, le=1_048_576)]
BurstLimit = Annotated[int, Field(strict=True, gt=0, le=1_000_000)]
#: the most items one component may hold in its user method at once (the runtime's
#: ``concurrency.MAX_CONCURRENCY``)
MAX_CONCURRENCY = 1024
Concurrency = Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)]
Ordering = Literal["input", "none"]
Number = Annotated[int, Field(strict=True)] | Annotated[float, Field(strict=True)]
#: the most entries a Redis consumer group may hold unread or pending
MaxLag = Annotated[int, Field(strict=True, ge=1, le=1_000_000_000)]
#: the streams a keyed Redis connection is split into, each owned by one replica
Partitions = Annotated[int, Field(strict=True, ge=1, le=1024)]
#: what a keyed connection is split into when neither it nor ``defaults`` says
DEFAULT_PARTITIONS = 8
#: the field that orders a keyed connection's items: a field of the schema, or a
#: field of a nested schema's field written ``a.b``
KeyPath = Annotated[
    str,
    Field(
        strict=True,
        max_length=200,
        pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$",
    ),
]

# A segment may not be "." or "..": clients resolve those away (RFC 3986, 5.2.4), and
# the request would reach another path than the endpoint's.
ROUTE = re.compile(r"^(POST|PUT|PATCH) (/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+/?$")
RESERVED_PATHS = frozenset(
    {
        "/health",
        "/ready",
        "/metrics",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/asyncapi.json",
        "/status",
        "/status.json",
    }
)


def _route(value: str) -> str:
    path = value.split(" ", 1)[-1]
    if any(segment in (".", "..") for segment in path.split("/")):
        raise PydanticCustomError(
            "portwright_route",
            "route {route} has a '.' or '..' segment, which clients resolve away; "
            "write the path it stands for",
            {"route": repr(value)},
        )
    if not ROUTE.fullmatch(value):
        raise PydanticCustomError(
            "portwright_route",
            "route {route} is not 'METHOD /path' with METHOD one of POST, PUT, PATCH "
            "and a path of letters, digits and ._~- (e.g. 'POST /orders')",
            {"route": repr(value)},
        )
    if path.rstrip("/") in RESERVED_PATHS:
        raise PydanticCustomError(
            "portwright_route",
            "route {route} uses a path every service already serves; choose another",
            {"route": repr(value)},
        )
    return value


Route = Annotated[str, Field(strict=True), AfterValidator(_route)]

#: a live (WebSocket) route: a path alone, no method (the handshake is always a GET)
LIVE_ROUTE = re.compile(r"^(/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+/?$")


def _live_route(value: str) -> str:
    if not LIVE_ROUTE.fullmatch(value):
        raise PydanticCustomError(
            "portwright_route",
            "route {route} is not a path of letters, digits and ._~- without '.' or "
            "'..' segments (e.g. '/live/prices'); a WebSocket route has no method",
            {"route": repr(value)},
        )
    if value.rstrip("/") in RESERVED_PATHS:
        raise PydanticCustomError(
            "portwright_route",
            "route {route} uses a path every service already serves; choose another",
            {"route": repr(value)},
        )
    return value


LiveRoute = Annotated[
    str, Field(strict=True, max_length=1000), AfterValidator(_live_route)
]

REDIS_URL = re.compile(r"^(redis|rediss|unix)://[^\s]+$")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_url(value: str) -> str:
    if not REDIS_URL.fullmatch(value):
        raise PydanticCustomError(
            "portwright_redis_url",
            "redis_url {url} is not a redis://, rediss:// or unix:// URL without "
            "spaces (e.g. 'redis://127.0.0.1:6379/0')",
            {"url": repr(value.split("@")[-1])},  # never echo a password
        )
    return value


RedisUrl = Annotated[
    str, Field(strict=True, max_length=1000), AfterValidator(_redis_url)
]
MaxRetries = Annotated[int, Field(strict=True, gt=0, le=1000)]
ClaimIdleMs = Annotated[int, Field(strict=True, ge=10, le=3_600_000)]

Auth = Literal["api_key", "basic"]
RateLimitKey = Literal["client", "api_key"]


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        host_bits = "has host bits set" in str(exc)
        fix = (
            f"; write {str(ipaddress.ip_network(value, strict=False))!r}"
            if host_bits
            else " (e.g. '10.0.0.0/8', '192.0.2.7' or '2001:db8::/32')"
        )
        raise PydanticCustomError(
            "portwright_network",
            "{value} is not an IP network{fix}",
            {"value": repr(value), "fix": fix},
        ) from None


#: A trusted proxy: an IPv4 or IPv6 network in CIDR notation (a bare address is a /32
#: or /128), normalised (``10.0.0.0/8``).
Network = Annotated[
    str, Field(strict=True, min_length=1, max_length=64), AfterValidator(_network)
]


class Spec(BaseModel):
    """Base of every blueprint model: unknown keys are errors and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Defaults(Spec):
    """Service-wide defaults; components and connections may override them."""

    buffer_size: BufferSize = 1024
    overflow: Overflow = "block"
    timeout_ms: TimeoutMs = 2000
    max_payload_kb: PayloadKb = 64
    burst_limit: BurstLimit = 256
    pii_fields: Annotated[
        tuple[Annotated[str, Field(strict=True, min_length=1, max_length=64)], ...],
        Field(strict=False),  # YAML gives a list; the model keeps it as a tuple
    ] = DEFAULT_PII_FIELDS
    #: proxies whose X-Forwarded-For is believed; nobody else's is
    trusted_proxies: Annotated[
        tuple[Network, ...], Field(strict=False, max_length=1000)
    ] = ()
    #: the Redis of the connections carried by redis (the service's
    #: <SERVICE>_REDIS_URL replaces it at run time)
    redis_url: RedisUrl = DEFAULT_REDIS_URL
    #: deliveries of an item over redis before it goes to the dead-letter stream
    max_retries: MaxRetries = 3
    #: how long an item may stay unacknowledged before another replica takes it
    claim_idle_ms: ClaimIdleMs = 30_000
    #: the partitions of every keyed Redis connection that does not say; fixed for
    #: the life of its streams (regenerate refuses a change: docs/blueprint.md)
    partitions: Partitions = DEFAULT_PARTITIONS
    #: alert thresholds for every component (docs/operations.md)
    guardrails: GuardrailsSpec = Field(default_factory=GuardrailsSpec)


# What the emitted CI installs portwright from: a pip requirement that names portwright
# (versions from an index, or 'portwright @ <url>'). It is written in double quotes on
# a shell line of YAML, so quotes, '$', '`', '\\' and spaces (but the one around '@')
# are refused.
_URL = r"[A-Za-z0-9._~:/?#\[\]@&()*+,;=%-]+"
_VERSION = r"(==|>=|<=|~=|!=|<|>)[0-9A-Za-z.*+-]+"
PORTWRIGHT_REQUIREMENT = re.compile(
    rf"^portwright(\[[a-z0-9_,-]+\])?({_VERSION}(,{_VERSION})*"
    rf"| @ (git\+)?(https|http|ssh|file)://{_URL})?$"
)
INDEX_URL = re.compile(rf"^https?://{_URL}$")


def _requirement(value: str) -> str:
    if not PORTWRIGHT_REQUIREMENT.fullmatch(value):
        raise PydanticCustomError(
            "portwright_requirement",
            "{value} is not a pip requirement of portwright without spaces or quotes: "
            "write 'portwright==0.1.0' (from the index) or "
            "'portwright @ git+https://host/portwright@v0.1.0' (from a URL)",
            {"value": repr(value)},
        )
    return value


def _index_url(value: str) -> str:
    if not INDEX_URL.fullmatch(value):
        raise PydanticCustomError(
            "portwright_index_url",
            "{value} is not an http(s) URL without spaces or quotes "
            "(e.g. 'https://pypi.example.com/simple/')",
            {"value": repr(value)},
        )
    return value


Requirement = Annotated[
    str, Field(strict=True, max_length=1000), AfterValidator(_requirement)
]
IndexUrl = Annotated[
    str, Field(strict=True, max_length=1000), AfterValidator(_index_url)
]


class CiSpec(Spec):
    """Where the emitted project's CI installs portwright from (its drift check runs it)."""

    #: a pip requirement naming portwright; 'portwright==<this version>' when absent
    portwright: Requirement | None = None
    #: the package index pip installs the project from in CI, instead of PyPI
    index_url: IndexUrl | None = None


class FieldSpec(Spec):
    """One field of a schema; a bare string is shorthand for ``{type: ...}``."""

    type: Annotated[str, Field(strict=True, min_length=1, max_length=200)]
    description: Text | None = None
    default: Any = None
    pii: bool = False
    gt: Number | None = None
    ge: Number | None = None
    lt: Number | None = None
    le: Number | None = None
    min_length: Annotated[int, Field(strict=True, ge=0)] | None = None
    max_length: Annotated[int, Field(strict=True, ge=0)] | None = None
    pattern: Annotated[str, Field(strict=True, max_length=1000)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @property
    def has_default(self) -> bool:
        """Whether the blueprint gave a default (``default: null`` counts)."""
        return "default" in self.model_fields_set


class SchemaSpec(Spec):
    """A message schema: its own fields, after those of the schema it extends."""

    description: Text | None = None
    extends: PortSchema | None = None
    fields: dict[FieldName, FieldSpec] = Field(default_factory=dict)
    #: every connection into a port of this schema keeps each value's order
    key: KeyPath | None = None


class ComponentSpec(Spec):
    """What every component kind may say."""

    description: Text | None = None
    buffer_size: BufferSize | None = None
    overflow: Overflow | None = None
    #: the component's former name: regenerate moves its user file to the new name
    renamed_from: ComponentName | None = None
    #: this component's alert thresholds, over those of 'defaults'
    guardrails: GuardrailsSpec | None = None


class _RunsWork(Spec):
    """How a component that takes items runs its user method (``concurrency.Work``)."""

    #: up to this many items in the user method at once (1: one at a time)
    concurrency: Concurrency | None = None
    #: with concurrency above 1: results leave in input order, or as they finish
    ordering: Ordering | None = None
    #: the user method is a plain ``def`` that blocks: run it in worker threads
    blocking: Annotated[bool, Field(strict=True)] | None = None


#: the most keys a stateful component keeps (``runtime/keyedstate.py``)
MaxKeys = Annotated[int, Field(strict=True, ge=1, le=100_000_000)]


class _KeepsState(Spec):
    """Keyed state for the user method: ``self.state`` is the current item's key's
    (``runtime/keyedstate.py``); the input must be keyed."""

    #: give the user method ``self.state``, one per key of its input
    state: Annotated[bool, Field(strict=True)] | None = None
    #: the schema of a key's state, made from its defaults for a new key; absent: a
    #: dict of JSON values
    state_schema: PortSchema | None = None
    #: the most keys kept; past it a new key drops the key used least recently
    max_keys: MaxKeys | None = None


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except DurationError as exc:
        raise PydanticCustomError("portwright_duration", str(exc)) from None
    return value


def _schedule(value: str) -> str:
    problem = schedule_problem(value)
    if problem is not None:
        raise PydanticCustomError("portwright_schedule", problem)
    return value


#: a span of time: a whole number and a unit, ``500ms``, ``30s``, ``5m``, ``1h``
DurationText = Annotated[
    str, Field(strict=True, max_length=20), AfterValidator(_duration)
]
#: five cron fields, UTC: ``minute hour day-of-month month day-of-week``
Schedule = Annotated[str, Field(strict=True, max_length=200), AfterValidator(_schedule)]
#: the most items one batch may hold
MAX_BATCH_ITEMS = 100_000


class BatchSpec(Spec):
    """The user method takes up to ``max_items`` items at once, waiting at most
    ``max_wait_ms`` after the first for the rest (0: what is already buffered)."""

    max_items: Annotated[int, Field(strict=True, ge=1, le=MAX_BATCH_ITEMS)]
    max_wait_ms: Annotated[int, Field(strict=True, ge=0, le=3_600_000)] = 0


class _Batches(Spec):
    #: the user method takes (and a transformer's returns) a list of items
    batch: BatchSpec | None = None


class _Ticks(Spec):
    #: tick every so often (the first tick at start)
    every: DurationText | None = None
    #: or tick on a cron schedule (five fields, UTC)
    schedule: Schedule | None = None


class _HasInputs(Spec):
    input: PortSchema | None = None
    inputs: dict[PortName, PortSchema] | None = None


class _HasOutputs(Spec):
    output: PortSchema | None = None
    outputs: dict[PortName, PortSchema] | None = None


class SourceSpec(ComponentSpec, _Ticks, _HasOutputs):
    """Produces items from user code: an async generator, or ``tick()`` on a timer."""

    kind: Literal["source"]


class RateLimitSpec(Spec):
    """At most ``requests`` per ``per_seconds`` from one client (or one API key)."""

    requests: Annotated[int, Field(strict=True, gt=0, le=10_000_000)]
    per_seconds: Annotated[int, Field(strict=True, gt=0, le=86_400)]
    key: RateLimitKey = "client"


class ApiEndpointSpec(ComponentSpec, _HasOutputs):
    """HTTP ingress: validates a JSON body and offers it to its output port."""

    kind: Literal["api_endpoint"]
    route: Route
    timeout_ms: TimeoutMs | None = None
    max_payload_kb: PayloadKb | None = None
    #: who may send: anyone (absent), holders of an API key, or users with a password
    auth: Auth | None = None
    rate_limit: RateLimitSpec | None = None
    #: service level objectives: availability, latency (docs/operations.md)
    slo: EndpointSloSpec | None = None


MaxConnections = Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
SlowClient = Literal["drop_oldest", "disconnect"]


class _Live(Spec):
    """What both live (WebSocket) kinds say: the route, who and how many may connect,
    and how often a client must show it is alive."""

    route: LiveRoute
    #: clients at once; a handshake past it is closed with 1013 (default 1000)
    max_connections: MaxConnections | None = None
    #: ping a client heard from in no such interval; close it (1008) when it stays
    #: silent through the next one (default 30s)
    heartbeat: DurationText | None = None
    #: the API keys of api_endpoint, as a header or a first frame
    auth: Literal["api_key"] | None = None


class WebSocketOutSpec(ComponentSpec, _Live, _HasInputs):
    """Pushes every item of its inputs to every connected client, in order."""

    kind: Literal["websocket_out"]
    #: what a client whose send queue is full gets: its oldest frame dropped, or
    #: closed with 1008 (default disconnect)
    slow_client: SlowClient | None = None
    #: frames waiting for one client before ``slow_client`` applies (default 1024)
    send_queue: Annotated[int, Field(strict=True, ge=1, le=1_000_000)] | None = None
    #: fields of the input schema a client may filter by, as query parameters
    subscribe_by: Annotated[
        tuple[FieldName, ...], Field(strict=False, max_length=16)
    ] = ()
    #: a browser's GET of the route gets a page that shows the items (default
    #: true); false: the route is a WebSocket only, and a GET of it is a 404
    page: bool | None = None
    burst_limit: BurstLimit | None = None


class WebSocketInSpec(ComponentSpec, _Live, _HasOutputs):
    """Takes items from clients, one JSON text frame each, validated as a body."""

    kind: Literal["websocket_in"]
    rate_limit: RateLimitSpec | None = None
    #: the largest frame taken; a larger one is answered with a problem (default
    #: the defaults' max_payload_kb)
    max_frame_bytes: (
        Annotated[int, Field(strict=True, gt=0, le=1_073_741_824)] | None
    ) = None


WindowType = Literal["tumbling", "hopping", "sliding"]
#: the built-in aggregates that take no field (``last`` and ``collect``: the item)
AggregateName = Literal["count", "last", "collect"]
#: the built-in aggregates of one field, written ``{sum: price}``
FieldAggregate = Literal["sum", "mean", "min", "max", "last", "collect"]


#: an aggregate written by the user, typed by what its ``result`` returns
CUSTOM_AGGREGATE = "custom"


def _aggregate_form(value: Any) -> Any:
    """One error for an aggregate of no form (a union would report two)."""
    names: tuple[str, ...] = AggregateName.__args__  # type: ignore[attr-defined]
    fields: tuple[str, ...] = FieldAggregate.__args__  # type: ignore[attr-defined]
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, dict) and CUSTOM_AGGREGATE in value:
        if len(value) == 1 and isinstance(value[CUSTOM_AGGREGATE], str):
            return value
        raise PydanticCustomError(
            "portwright_aggregate",
            "aggregate {value}: a custom aggregate is written {form} alone, the "
            "type of the value its result() returns (e.g. {example}); it takes no "
            "field (your add() reads the item)",
            {
                "value": repr(value),
                "form": "{custom: <type>}",
                "example": "{custom: Stats}, {custom: list[float]}",
            },
        )
    if isinstance(value, dict) and len(value) == 1:
        ((name, field),) = value.items()
        if name in fields and isinstance(field, str):
            return value
    raise PydanticCustomError(
        "portwright_aggregate",
        "aggregate {value} is not one of {names}, nor a mapping {form} "
        "(e.g. {example}), nor {custom}",
        {
            "value": repr(value),
            "names": ", ".join(names),
            "form": "{" + "|".join(fields) + ": <field>}",
            "example": "{mean: temperature}",
            "custom": "{custom: <type>} (your code)",
        },
    )


class CustomAggregateSpec(Spec):
    """An aggregate written by the user: ``initial()``, ``add(acc, item)`` and
    ``result(acc)`` in ``components/<name>.py`` (docs/blueprint.md, Windows)."""

    #: the type of the window's ``value`` (what ``result`` returns), written as a
    #: field's type: a scalar type, a schema, ``list[T]``, ``T | None``
    custom: Annotated[str, Field(strict=True, min_length=1, max_length=200)]


class WindowShapeSpec(Spec):
    """How a window component lays out its windows (docs/blueprint.md, Windows)."""

    type: WindowType = "tumbling"
    #: a time window's span; or ``count``
    size: DurationText | None = None
    #: hopping: a new window every so often (more than 0, at most ``size``)
    hop: DurationText | None = None
    #: count windows: this many items of a key make a window (instead of ``size``)
    count: Annotated[int, Field(strict=True, ge=1, le=10_000_000)] | None = None
    #: event time: a datetime field of the input schema; processing time when absent
    time: KeyPath | None = None
    #: event time: how long after its end a window still takes items
    grace: DurationText | None = None


class WindowSpec(ComponentSpec, _HasInputs):
    """One keyed input; per key and window, an aggregate of the items, on ``out``."""

    kind: Literal["window"]
    window: WindowShapeSpec
    #: ``count``, ``last``, ``collect`` (the items) or one field's:
    #: ``{sum: f}``, ``{mean: f}``, ``{min: f}``, ``{max: f}``, ``{last: f}``,
    #: ``{collect: f}``; or user code, ``{custom: <type of the value>}``
    aggregate: Annotated[
        AggregateName
        | Annotated[dict[FieldAggregate, KeyPath], Field(min_length=1, max_length=1)]
        | CustomAggregateSpec,
        BeforeValidator(_aggregate_form),
    ] = "count"
    #: ``final``: each window once, when it closes; ``every``: its value at each item
    emit: Literal["final", "every"] = "final"
    #: an output ``late`` for the items past the grace (the input's schema)
    late: Annotated[bool, Field(strict=True)] = False
    #: an ``errors`` output for items without a key or time, or that the aggregate
    #: refused
    errors: Annotated[bool, Field(strict=True)] = False
    #: the most windows open at once (past it the oldest closes early)
    max_open: Annotated[int, Field(strict=True, ge=1, le=100_000_000)] | None = None
    burst_limit: BurstLimit | None = None


class TransformerSpec(
    ComponentSpec, _RunsWork, _KeepsState, _Batches, _HasInputs, _HasOutputs
):
    """One input, one output: user code returns the new item or None to drop it."""

    kind: Literal["transformer"]


class FilterSpec(ComponentSpec, _RunsWork, _KeepsState, _HasInputs, _HasOutputs):
    """One input, one output: user code keeps an item or not."""

    kind: Literal["filter"]


class RouterSpec(ComponentSpec, _RunsWork, _KeepsState, _HasInputs, _HasOutputs):
    """One input, named outputs: user code names the output port(s) of each item."""

    kind: Literal["router"]


class MergerSpec(ComponentSpec, _HasInputs, _HasOutputs):
    """Named inputs, one output, fair fan-in."""

    kind: Literal["merger"]
    burst_limit: BurstLimit | None = None


class SinkSpec(ComponentSpec, _RunsWork, _KeepsState, _Batches, _HasInputs):
    """Named inputs, drained concurrently by user code."""

    kind: Literal["sink"]
    #: service level objective: freshness of what reaches it (docs/operations.md)
    slo: SinkSloSpec | None = None


class JoinTimeSpec(Spec):
    """Event time per side of a join: a required datetime field of each input."""

    left: KeyPath
    right: KeyPath


class JoinSpec(ComponentSpec, _HasInputs, _HasOutputs):
    """Two keyed inputs, ``left`` and ``right``; user code ``match(left, right)``
    makes the item of each pair of the same key near in time (docs/blueprint.md,
    Joins)."""

    kind: Literal["join"]
    #: the most time between the two items of a pair, before or after
    within: DurationText
    #: event time: one datetime field both inputs have, or ``{left: f, right: g}``;
    #: processing time when absent
    time: KeyPath | JoinTimeSpec | None = None
    #: event time: how far behind the watermark an item may come and still pair
    grace: DurationText | None = None
    #: outputs ``unmatched_left`` and ``unmatched_right``: the items that never
    #: paired in time (each typed as its input)
    unmatched: Annotated[bool, Field(strict=True)] = False
    #: an ``errors`` output for items without a key or time, or that match refused
    errors: Annotated[bool, Field(strict=True)] = False
    #: the most items held at once, both sides (past it the oldest is dropped)
    max_buffered: Annotated[int, Field(strict=True, ge=1, le=100_000_000)] | None = None
    burst_limit: BurstLimit | None = None


AnyComponent = Annotated[
    SourceSpec
    | ApiEndpointSpec
    | TransformerSpec
    | FilterSpec
    | RouterSpec
    | MergerSpec
    | SinkSpec
    | WebSocketOutSpec
    | WebSocketInSpec
    | WindowSpec
    | JoinSpec,
    Field(discriminator="kind"),
]
COMPONENT_MODELS: dict[str, type[Spec]] = {
    "source": SourceSpec,
    "api_endpoint": ApiEndpointSpec,
    "transformer": TransformerSpec,
    "filter": FilterSpec,
    "router": RouterSpec,
    "merger": MergerSpec,
    "sink": SinkSpec,
    "websocket_out": WebSocketOutSpec,
    "websocket_in": WebSocketInSpec,
    "window": WindowSpec,
    "join": JoinSpec,
}

ENDPOINT = re.compile(r"^\s*([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\s*$")


class ConnectionSpec(Spec):
    """An edge from an output port to an input port; ``a.out -> b.in`` is shorthand."""

    model_config = ConfigDict(populate_by_name=False)

    from_: Annotated[str, Field(strict=True, max_length=200)] = Field(alias="from")
    to: Annotated[str, Field(strict=True, max_length=200)]
    buffer_size: BufferSize | None = None
    overflow: Overflow | None = None
    #: memory or redis; the blueprint's top-level 'transport' when absent
    transport: Transport | None = None
    #: items with the same value of this field keep their order and are never in
    #: the receiver's method together (the target schema's 'key' when absent)
    key: KeyPath | None = None
    #: redis: the most entries the target's group may hold unread or pending before
    #: senders wait (HTTP ingress: 503); unbounded when absent
    max_lag: MaxLag | None = None
    #: redis, keyed: the streams the connection is split into (``defaults`` when
    #: absent); each is read by one replica at a time
    partitions: Partitions | None = None
    feedback: bool = False
    description: Text | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = value.split("->")
            if len(parts) != 2:
                raise PydanticCustomError(
                    "portwright_connection",
                    "connection {text} is not 'component.port -> component.port'",
                    {"text": repr(value)},
                )
            return {"from": parts[0].strip(), "to": parts[1].strip()}
        return value


def _exact_int(value: Any) -> Any:
    # Literal[1] matches by equality, so YAML's 'true' and '1.0' would pass as version 1.
    if type(value) is not int:
        raise PydanticCustomError("literal_error", "format version must be 1")
    return value


FormatVersion = Annotated[Literal[1], BeforeValidator(_exact_int)]


class BlueprintSpec(Spec):
    """A whole blueprint file, format version 1."""

    portwright: FormatVersion
    name: ServiceName
    description: Text | None = None
    version: Annotated[str, Field(strict=True, pattern=r"^[0-9A-Za-z.+!-]{1,40}$")] = (
        "0.1.0"
    )
    #: how connections are carried unless they say otherwise: in the process's
    #: memory, or by Redis Streams (between processes, at-least-once)
    transport: Transport = "memory"
    defaults: Defaults = Field(default_factory=Defaults)
    schemas: dict[SchemaName, SchemaSpec] = Field(default_factory=dict)
    components: dict[ComponentName, AnyComponent]
    connections: list[ConnectionSpec] = Field(default_factory=list)
    #: where the emitted CI installs portwright from
    ci: CiSpec = Field(default_factory=CiSpec)
    #: modules the emitted code may not import (added to the default 'observability')
    forbidden_imports: list[
        Annotated[
            str,
            Field(
                strict=True,
                pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
            ),
        ]
    ] = Field(default_factory=list)
