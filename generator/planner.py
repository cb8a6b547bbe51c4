"""What files a project gets, from which template, with which context: a pure function.

``plan`` takes a resolved blueprint, the blueprint's text and the names of the
templates available, and returns the planned files sorted by path. It does no I/O.
The template tree mirrors the emitted tree: ``package/`` becomes the service's package,
a ``.jinja`` suffix is rendered and dropped, anything else is copied as it is, and
``package/components/component.py.jinja`` is rendered once per component with logic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from string import Template
from typing import Any, Literal

from . import __version__
from .asyncapi import asyncapi_document, asyncapi_json, asyncapi_yaml
from .blueprint import ERROR_SCHEMA, ERRORS_PORT, Blueprint, Component, Port
from .custom_window import PLACEHOLDER_ACC, custom_values, value_imports
from .drawing import mermaid, status_svg
from .examples import example_item
from .filters import pyrepr
from .imports import Imports
from .join_plan import Arrival, join_cases, join_leaves, next_join
from .kinds import COMPONENT_KINDS, ComponentKind, Method
from .kinds import LOGIC_KINDS as LOGIC_KINDS  # re-exported: regenerate reads it
from .layout import BLUEPRINT_COPY as BLUEPRINT_COPY  # re-exported: the gate reads it
from .layout import MANIFEST as MANIFEST  # re-exported: the gate reads it
from .names import class_name
from .ops.dashboard import dashboard_json, dashboard_path
from .ops.rules import RULE_TESTS, RULES, rule_tests_yaml, rules_yaml
from .ops.runbook import RUNBOOK, runbook_markdown
from .pytypes import field_code, schema_imports, uses_field
from .schema_cases import schema_cases
from .state_plan import state_cases
from .window_plan import window_cases, windows_per_item

Owner = Literal["generator", "user"]

PACKAGE_DIR = "package/"
# The AsyncAPI document: at the project's root, and in the package that serves it
ASYNCAPI_YAML = "asyncapi.yaml"
ASYNCAPI_JSON = "asyncapi.json"
PER_COMPONENT = "package/components/component.py.jinja"
# Templates planned only when the context says the project needs them
WORK_TESTS = "tests/test_work.py.jinja"
BATCH_TESTS = "tests/test_batches.py.jinja"
TIMER_TESTS = "tests/test_timers.py.jinja"
# What an emitted project depends on: the same ranges portwright's own install brings,
# so that the gate can run an emitted project's tests in portwright's interpreter.
EMITTED_DEPENDENCIES = (
    "anyio>=4.4,<5",
    "bcrypt>=4.1,<6",
    "fastapi>=0.111,<1",
    # uvicorn's fast HTTP parser and event loop: the ingest path reaches its speed
    # goals on them (docs/benchmarks.md); uvicorn picks them up when installed
    "httptools>=0.6,<1",
    "limits>=4.2,<6",
    # tracing (runtime/tracing.py): off unless OTEL_TRACES_EXPORTER names one
    "opentelemetry-api>=1.25,<2",
    "opentelemetry-exporter-otlp-proto-http>=1.25,<2",
    "opentelemetry-sdk>=1.25,<2",
    "orjson>=3.9,<4",
    "prometheus-client>=0.20,<1",
    "pydantic>=2.7,<3",
    "redis[hiredis]>=5,<9",
    "starlette>=0.37,<2",
    "structlog>=24.1",
    "uvicorn>=0.30,<1",
    "uvloop>=0.19,<1; sys_platform != 'win32'",
)
EMITTED_TEST_DEPENDENCIES = (
    "black>=24.4",
    "httpx>=0.27,<1",
    # the type check of portwright's gate and of the emitted CI (docs/design.md)
    "pyrefly>=1.5,<1.6",
    "pytest>=8.2",
    "pytest-cov>=5",
    "pytest-timeout>=2.3",
    "ruff>=0.6",
)
DEFAULT_FORBIDDEN_IMPORTS = ("observability",)
#: what uvicorn serves WebSocket routes with: a project with live components needs it
LIVE_DEPENDENCY = "websockets>=13,<18"
# Templates planned only for a project with live (WebSocket) components
LIVE_TESTS = "tests/test_websockets.py.jinja"
# Planned only for a project with window components
WINDOW_TESTS = "tests/test_windows.py.jinja"
# Planned only for a project with join components
JOIN_TESTS = "tests/test_joins.py.jinja"
# Planned only for a project with components that keep keyed state
STATE_TESTS = "tests/test_state.py.jinja"


@dataclass(frozen=True)
class PlannedFile:
    """One file of the emitted project: where it goes and how it is made."""

    path: str  # relative, POSIX
    owner: Owner
    template: str | None = None  # a template name, rendered (.jinja) or copied
    content: str | None = None  # literal content, for files that are data
    context: Mapping[str, Any] = field(
        default_factory=dict
    )  # merged over the project's

    @property
    def rendered(self) -> bool:
        """Whether the file is rendered from a Jinja template (not copied, not data)."""
        return self.template is not None and self.template.endswith(".jinja")


@dataclass(frozen=True)
class Plan:
    """The files of a project and the context every template sees."""

    files: tuple[PlannedFile, ...]
    context: Mapping[str, Any]

    @property
    def package(self) -> str:
        """The emitted package's name."""
        return str(self.context["package"])


def plan(blueprint: Blueprint, blueprint_text: str, templates: Iterable[str]) -> Plan:
    """Plan the project for ``blueprint``; ``templates`` are names under the template root."""
    context = project_context(blueprint)
    document = asyncapi_document(blueprint)
    files: list[PlannedFile] = [
        PlannedFile(BLUEPRINT_COPY, "generator", content=blueprint_text),
        PlannedFile(ASYNCAPI_YAML, "generator", content=asyncapi_yaml(document)),
        PlannedFile(
            f"{blueprint.name}/{ASYNCAPI_JSON}",
            "generator",
            content=asyncapi_json(document),
        ),
        # what a team operates the service with (docs/operations.md)
        PlannedFile(RULES, "generator", content=rules_yaml(blueprint)),
        PlannedFile(RULE_TESTS, "generator", content=rule_tests_yaml(blueprint)),
        PlannedFile(RUNBOOK, "generator", content=runbook_markdown(blueprint)),
        PlannedFile(
            dashboard_path(blueprint), "generator", content=dashboard_json(blueprint)
        ),
        # the drawing the status page shows (runtime/status.py reads it)
        PlannedFile(
            f"{blueprint.name}/status.svg", "generator", content=status_svg(blueprint)
        ),
    ]
    by_name = {c["name"]: c for c in context["components"]}
    for name in sorted(set(templates)):
        if name == PER_COMPONENT:
            for component in blueprint.components:
                if kind_of(component).user_owned:  # a custom window's too
                    path = f"{blueprint.name}/components/{component.name}.py"
                    files.append(
                        PlannedFile(
                            path,
                            "user",
                            name,
                            context={"component": by_name[component.name]},
                        )
                    )
            continue
        if name == WORK_TESTS and not context["work"]:
            continue
        if name == BATCH_TESTS and not context["batches"]:
            continue
        if name == TIMER_TESTS and not context["timers"]:
            continue
        if name == LIVE_TESTS and not context["lives"]:
            continue
        if name == WINDOW_TESTS and not context["windows"]:
            continue
        if name == JOIN_TESTS and not context["joins"]:
            continue
        if name == STATE_TESTS and not context["stateful"]:
            continue
        files.append(PlannedFile(output_path(name, blueprint.name), "generator", name))
    files.sort(key=lambda f: f.path)
    paths = Counter(f.path for f in files)
    duplicates = sorted(p for p, count in paths.items() if count > 1)
    if duplicates:  # a template and a component file landing on one path is a bug
        raise ValueError(f"two planned files share a path: {duplicates}")
    return Plan(tuple(files), context)


def output_path(template: str, package: str) -> str:
    """``package/schemas.py.jinja`` -> ``order_pipeline/schemas.py``."""
    path = template.removesuffix(".jinja")
    if path.startswith(PACKAGE_DIR):
        path = package + "/" + path[len(PACKAGE_DIR) :]
    return path


# -- context: each function contributes one part -------------------------------------


def project_context(blueprint: Blueprint) -> dict[str, Any]:
    """Everything the templates see, as plain data."""
    return {
        "package": blueprint.name,
        "service": blueprint.name,
        "env_prefix": blueprint.name.upper(),
        "description": blueprint.description or f"The {blueprint.name} service.",
        "version": blueprint.version,
        "generator_version": __version__,
        "portwright_requirement": blueprint.ci_portwright
        or f"portwright=={__version__}",
        "pip_index_url": blueprint.ci_index_url,
        "dependencies": sorted(
            [*EMITTED_DEPENDENCIES, LIVE_DEPENDENCY]
            if any(c.live for c in blueprint.components)
            else EMITTED_DEPENDENCIES
        ),
        "test_dependencies": list(EMITTED_TEST_DEPENDENCIES),
        "forbidden_imports": sorted(
            set(DEFAULT_FORBIDDEN_IMPORTS) | set(blueprint.forbidden_imports)
        ),
        "pii_fields": list(blueprint.pii_fields),
        "transport": blueprint.transport,
        "uses_redis": blueprint.uses_redis,
        "redis_url": blueprint.redis_url,
        "max_retries": blueprint.max_retries,
        "claim_idle_ms": blueprint.claim_idle_ms,
        "trusted_proxies": list(blueprint.trusted_proxies),
        "uses_rate_limit": any(c.rate_limit for c in blueprint.components),
        "uses_auth": sorted({c.auth for c in blueprint.components if c.auth}),
        "schemas": schemas_context(blueprint),
        "schema_imports": schema_imports(blueprint.schemas),
        "uses_field": uses_field(blueprint.schemas),
        "components": [component_context(blueprint, c) for c in blueprint.components],
        "connections": connections_context(blueprint),
        "graph_mermaid": mermaid(blueprint),  # the README's diagram (portwright graph)
        "endpoints": endpoints_context(blueprint),
        "entries": entries_context(blueprint),
        "work": work_context(blueprint),
        "batches": batches_context(blueprint),
        "timers": timers_context(blueprint),
        "lives": lives_context(blueprint),
        "windows": window_cases(blueprint),
        "joins": join_cases(blueprint),
        "stateful": state_cases(blueprint),
        "roles": roles_context(blueprint),
        "schema_cases": schema_cases(blueprint),
        **imports_context(blueprint),
    }


def kind_of(component: Component) -> ComponentKind:
    """The kinds row as ``component`` runs it (a batch, a timer: see ``Variant``)."""
    return COMPONENT_KINDS[component.kind].shaped(partial(getattr, component))


def imports_context(blueprint: Blueprint) -> dict[str, Any]:
    """The import lines of the modules that hold every component: bases and wiring."""
    logic = [c for c in blueprint.components if kind_of(c).user_owned]
    other = [c for c in blueprint.components if not kind_of(c).user_owned]
    bases = Imports()
    for component in logic:
        kind = kind_of(component)
        assert kind.method is not None  # what user_owned means
        for method in (kind.method, *kind.method.then):
            bases.add_all(method.imports)
            bases.add_all(method.admits_imports)
        bases.add_all(kind.call_imports)
        bases.add(".runtime", *kind.mixins)
        scalars, named = value_imports(component)  # a custom window's value
        bases.add_all(sorted(scalars))
        bases.add(".schemas", *named)
        if not (kind.method.is_async or kind.method.plain or component.blocking):
            bases.add("collections.abc", "Awaitable")  # base_returns
        if kind.port_alias:
            bases.add("typing", "Literal")
        if component.state is not None:  # self.state: the state_schema, or a dict
            bases.add(".runtime", "Stateful")
            if component.state.schema is None:
                bases.add("typing", "Any")
            else:
                bases.add(".schemas", component.state.schema)
        if kind.carry_over and carried_fields(blueprint, component)["error_record"]:
            bases.add("datetime", "UTC", "datetime")  # the ErrorRecord's time
    bases.add(".runtime", *(kind_of(c).runtime_class for c in logic))
    if logic:
        bases.add(".schemas", *_schemas_of(logic))
    wiring = Imports().add("collections.abc", "Mapping")
    if logic:
        wiring.add(".", "bases")
    for component in logic:
        wiring.add(f".components.{component.name}", class_name(component.name))
    wiring.add(".runtime", "Component", "Overflow", "Service", "ServiceSettings")
    wiring.add(".runtime", "Transport")
    wiring.add(".runtime", *(COMPONENT_KINDS[c.kind].runtime_class for c in other))
    for component in other:  # a window's aggregate, say
        wiring.add_all(kind_of(component).call_imports)
    if any(c.rate_limit for c in blueprint.components):
        wiring.add(".runtime", "RateLimit")
    if other:
        wiring.add(".schemas", *_schemas_of(other))
    wiring.add(".settings", "SERVICE", "load_settings")
    return {"bases_imports": bases.sections(), "wiring_imports": wiring.sections()}


def _schemas_of(components: list[Component]) -> set[str]:
    # a window's call names its input and out schemas only (late is its input's)
    return {
        p.schema
        for c in components
        for p in (*c.inputs, *(c.outputs if c.window is None else c.outputs[:1]))
    }


def roles_context(blueprint: Blueprint) -> dict[str, list[str]]:
    """The components by the part they play, as the README groups them into replicas."""
    kinds = {c.name: COMPONENT_KINDS[c.kind] for c in blueprint.components}
    return {
        "endpoints": [c.name for c in blueprint.components if c.path is not None],
        "workers": [
            name
            for name, kind in kinds.items()
            if kind.inputs is not None and kind.outputs is not None
        ],
        "sinks": [name for name, kind in kinds.items() if kind.outputs is None],
    }


def schemas_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each schema as the class ``schemas.py`` declares."""
    return [
        {
            "name": schema.name,
            "description": schema.description or f"The {schema.name} message.",
            "base": schema.extends or "BaseModel",
            "fields": [
                field_code(f) for f in schema.fields if f.declared_in == schema.name
            ],
            "pii": [f.name for f in schema.fields if f.pii],
        }
        for schema in blueprint.schemas
    ]


def _ports(ports: tuple[Port, ...]) -> list[dict[str, str]]:
    return [{"name": p.name, "schema": p.schema} for p in ports]


def _ports_code(ports: tuple[Port, ...]) -> str:
    """``{"in": Order}``: the port mapping a runtime component takes, as code."""
    return "{" + ", ".join(f"{pyrepr(p.name)}: {p.schema}" for p in ports) + "}"


def _rate_limit(component: Component) -> dict[str, Any] | None:
    """An endpoint's rate limit as the templates read it, or None."""
    limit = component.rate_limit
    if limit is None:
        return None
    return {
        "requests": limit.requests,
        "per_seconds": limit.per_seconds,
        "key": limit.key,
    }


def component_context(blueprint: Blueprint, component: Component) -> dict[str, Any]:
    """One component: its ports, settings and the defaults its user file starts with."""
    data_out = component.data_outputs
    kind = kind_of(component)
    context: dict[str, Any] = {
        "name": component.name,
        "kind": component.kind,
        "class_name": class_name(component.name),
        # the classes its base subclasses (a custom window's: Window, Aggregate;
        # keyed state: Stateful[its type] first)
        "runtime_class": ", ".join(
            (*_stateful(component), kind.runtime_class, *kind.mixins)
        ),
        "state": component.state,
        "description": component.description,
        "user_owned": kind.user_owned,
        "arguments": _arguments(component, kind.arguments),
        "inputs": _ports(component.inputs),
        "outputs": _ports(component.outputs),
        "data_outputs": [p.name for p in data_out],
        "has_errors_port": component.output(ERRORS_PORT) is not None,
        "burst_limit": component.burst_limit,
        "batch": (
            None
            if component.batch_max_items is None
            else {
                "max_items": component.batch_max_items,
                "max_wait_ms": component.batch_max_wait_ms,
            }
        ),
        "every_ms": component.every_ms,
        "schedule": component.schedule,
        "method": component.method,
        "path": component.path,
        "timeout_ms": component.timeout_ms,
        "max_payload_kb": component.max_payload_kb,
        "auth": component.auth,
        "rate_limit": _rate_limit(component),
        "port_alias": (
            "Literal[" + ", ".join(pyrepr(p.name) for p in data_out) + "]"
            if kind.port_alias
            else None
        ),
        "carry": carried_fields(blueprint, component) if kind.carry_over else None,
        "in_schema": component.inputs[0].schema if component.inputs else None,
        "item_alias": (
            (item_alias(component), " | ".join(input_schemas(component)))
            if kind.method is not None
            and "$inputs" in kind.method.params
            and item_alias(component)
            else None
        ),
        "out_schema": data_out[0].schema if data_out else None,
        "user_method": (
            None
            if kind.method is None
            else methods_code(blueprint, component, kind.method)
        ),
    }
    return context


def _stateful(component: Component) -> tuple[str, ...]:
    """The mixin a component with keyed state subclasses first, typed by its state."""
    state = component.state
    if state is None:
        return ()
    return (f"Stateful[{state.schema or 'dict[str, Any]'}]",)


def _arguments(component: Component, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(keyword, code)`` of the runtime call that makes ``component``, in ``names``."""
    limit = component.rate_limit
    data_out = component.data_outputs
    live = component.live
    code: dict[str, str | None] = {
        "inputs": _ports_code(component.inputs) if component.inputs else None,
        "outputs": _ports_code(component.outputs) if component.outputs else None,
        "burst_limit": str(component.burst_limit),
        "concurrency": (
            str(component.concurrency) if component.concurrency > 1 else None
        ),
        "ordering": (
            pyrepr(component.ordering) if component.ordering != "input" else None
        ),
        "blocking": "True" if component.blocking else None,
        "route": pyrepr(component.path if live is None else live.route),
        "method": pyrepr(component.method),
        "schema": data_out[0].schema if data_out else None,
        "timeout_ms": str(component.timeout_ms),
        "max_payload_kb": str(component.max_payload_kb),
        "auth": pyrepr(component.auth) if component.auth else None,
        "batch": (
            f"Batch({component.batch_max_items}, {component.batch_max_wait_ms / 1000!r})"
            if component.batch_max_items is not None
            else None
        ),
        "every": (
            repr(component.every_ms / 1000) if component.every_ms is not None else None
        ),
        "schedule": pyrepr(component.schedule) if component.schedule else None,
        "rate_limit": (
            f"RateLimit({limit.requests}, {limit.per_seconds}, {pyrepr(limit.key)})"
            if limit is not None
            else None
        ),
        **_live_arguments(component),
        **_window_arguments(component),
        **_join_arguments(component),
    }
    return [(name, value) for name in names if (value := code[name]) is not None]


def _join_arguments(component: Component) -> dict[str, str | None]:
    """The runtime call's keywords only a join has (seconds as floats)."""
    join = component.join
    if join is None:
        return {}
    time = None
    if join.time_left is not None and join.time_left == join.time_right:
        time = pyrepr(join.time_left)
    elif join.time_left is not None and join.time_right is not None:
        time = (
            f"{{'left': {pyrepr(join.time_left)}, 'right': {pyrepr(join.time_right)}}}"
        )
    return {
        "within": repr(join.within),
        "time": time,
        "grace": repr(join.grace) if join.grace else None,
        "unmatched": "True" if component.output("unmatched_left") else None,
        "errors": "True" if component.output(ERRORS_PORT) else None,
        "max_buffered": (None if join.max_buffered is None else str(join.max_buffered)),
    }


def _window_arguments(component: Component) -> dict[str, str | None]:
    """The runtime call's keywords only a window has (seconds as floats)."""
    window = component.window
    if window is None:
        return {}
    field = "" if window.field is None else f", {pyrepr(window.field)}"
    # a custom window is its own aggregate (its base subclasses Aggregate)
    aggregate = "self" if window.aggregate == "custom" else None
    return {
        "type": pyrepr(window.type) if window.type != "tumbling" else None,
        "size": None if window.size is None else repr(window.size),
        "hop": None if window.hop is None else repr(window.hop),
        "count": None if window.count is None else str(window.count),
        "time": None if window.time is None else pyrepr(window.time),
        "grace": repr(window.grace) if window.grace else None,
        "aggregate": aggregate or f"builtin({pyrepr(window.aggregate)}{field})",
        "emit": pyrepr(window.emit) if window.emit != "final" else None,
        "late": "True" if component.output("late") else None,
        "errors": "True" if component.output(ERRORS_PORT) else None,
        "max_open": None if window.max_open is None else str(window.max_open),
    }


def _live_arguments(component: Component) -> dict[str, str | None]:
    """The runtime call's keywords only a live (WebSocket) component has."""
    live = component.live
    if live is None:
        return {
            key: None
            for key in (
                "max_connections",
                "heartbeat_s",
                "queue_size",
                "slow_client",
                "subscribe_by",
                "page",
                "max_frame_bytes",
            )
        }
    names = [pyrepr(f) for f in live.subscribe_by]
    fields = ", ".join(names) + ("," if len(names) == 1 else "")
    return {
        "max_connections": str(live.max_connections),
        "heartbeat_s": repr(live.heartbeat_ms / 1000),
        "queue_size": str(live.send_queue),
        "slow_client": pyrepr(live.slow_client),
        "subscribe_by": f"({fields})" if names else None,
        "page": None if live.page else "False",
        "max_frame_bytes": str(live.max_frame_bytes),
    }


def base_returns(method: Method, returns: str, *, blocking: bool = False) -> str:
    """What the base's method returns: a user's method may be ``async def``, so an
    awaitable of the same is accepted too (an async generator is its own kind), except
    where it runs in worker threads (``blocking``): there it must stay a plain ``def``,
    and the type check says so when it is not."""
    if method.is_async or method.plain or blocking:
        return returns
    return f"{returns} | Awaitable[{returns}]"


def user_is_async(component: Component, method: Method) -> bool:
    """Whether the user file's method starts as ``async def``: always for an async
    kind, and where several items are in it at once without threads (concurrency
    only pays for code that awaits)."""
    return method.is_async or (component.concurrency > 1 and not component.blocking)


def input_schemas(component: Component) -> list[str]:
    """The schemas of ``component``'s inputs, each once, in the order declared."""
    return list(dict.fromkeys(p.schema for p in component.inputs))


def item_alias(component: Component) -> str | None:
    """The name of the union of ``component``'s input schemas, when it has several.

    ``bases.py`` binds it once (``StoreItem = Order | Refund``) and the methods name
    it: an annotation too long for one line is parenthesized by black but not by
    ruff format, which generation runs; an assignment both wrap alike.
    """
    return (
        class_name(component.name) + "Item"
        if len(input_schemas(component)) > 1
        else None
    )


def method_code(component: Component, method: Method) -> dict[str, Any]:
    """The user method of ``component``: signatures, docstrings, default body, imports.

    The base class and the user file print the same method; the user file imports
    what its signature names.
    """
    data_out = component.data_outputs
    inputs = input_schemas(component)
    alias = class_name(component.name) + "Port"
    values = {
        "inputs": item_alias(component) or " | ".join(inputs),
        "output": data_out[0].schema if data_out else "",
        "port": alias,
        "first": pyrepr(data_out[0].name) if data_out else "",
        # a join's two inputs
        **{p.name: p.schema for p in component.inputs if p.name in ("left", "right")},
    }

    def fill(text: str) -> str:
        return Template(text).substitute(values)

    head = f"{'async ' if method.is_async else ''}def {method.name}"
    user_head = (
        f"{'async ' if user_is_async(component, method) else ''}def {method.name}"
    )
    params = fill(f"self, {method.params}" if method.params else "self")
    returns = fill(method.returns)
    admitted = fill(f"{method.returns} | {method.admits}") if method.admits else returns
    takes_inputs = "$inputs" in method.params
    uses = [
        *(inputs if takes_inputs and not item_alias(component) else []),
        *([values["output"]] if "$output" in method.params + method.returns else []),
        *(values[side] for side in ("left", "right") if f"${side}" in method.params),
    ]
    user = Imports().add_all(method.imports)
    user.add("..bases", class_name(component.name) + "Base")
    if "$port" in method.returns:
        user.add("..bases", alias)
    if takes_inputs and item_alias(component):
        user.add("..bases", values["inputs"])
    user.add("..schemas", *uses)
    base_return = base_returns(method, admitted, blocking=component.blocking)
    body = [fill(line) for line in method.body]
    return {
        "signature": f"{user_head}({params}) -> {returns}:",
        "base_signature": f"{head}({params}) -> {base_return}:",
        "base_doc": fill(method.base_doc),
        "user_doc": fill(method.user_doc),
        "body": body,
        # A body that falls off its end returns None, which a checker accepts only
        # where None is all the method may return (mypy: "Missing return statement").
        "base_body": (
            [*body, "return None"] if returns == "None" != base_return else body
        ),
        "imports": user.sections(),
    }


def methods_code(
    blueprint: Blueprint, component: Component, method: Method
) -> dict[str, Any]:
    """``method_code`` of the user's method, with ``then``: the methods after it
    (a custom window's ``add`` and ``result`` after ``initial``), ``plain`` (never
    ``async def``) and, for several methods, the imports of them all."""
    if not method.then:
        return {
            **method_code(component, method),
            "then": [],
            "plain": method.plain,
            "about": list(method.about),
        }
    custom = custom_values(blueprint, component)
    user_values = {**custom, "acc": PLACEHOLDER_ACC}
    base_values = {**custom, "acc": "Any"}  # the user's class types it
    codes = []
    for one in (method, *method.then):
        user = method_code(component, _filled(one, user_values))
        base = method_code(component, _filled(one, base_values))
        base_code = {k: base[k] for k in ("base_signature", "base_body")}
        codes.append({**user, **base_code})
    imports = Imports().add("..bases", class_name(component.name) + "Base")
    scalars, named = value_imports(component)
    imports.add_all(sorted(scalars))
    imports.add("..schemas", *named, *(p.schema for p in component.inputs))
    for one in (method, *method.then):
        imports.add_all(one.imports)
    return {
        **codes[0],
        "then": codes[1:],
        "plain": method.plain,
        "about": list(method.about),
        "imports": imports.sections(),
    }


def _filled(method: Method, values: Mapping[str, str]) -> Method:
    """``method`` with ``values`` put in, the per-component ones left for later
    (a ``$`` of a value doubled: ``method_code`` substitutes once more)."""
    escaped = {key: value.replace("$", "$$") for key, value in values.items()}

    def fill(text: str) -> str:
        return Template(text).safe_substitute(escaped)

    return replace(
        method,
        params=fill(method.params),
        returns=fill(method.returns),
        body=tuple(fill(line) for line in method.body),
    )


def carried_fields(blueprint: Blueprint, component: Component) -> dict[str, Any]:
    """How the default transform builds its output: fields carried over, fields filled."""
    source = (
        blueprint.schema(component.inputs[0].schema)
        if component.inputs[0].schema != "ErrorRecord"
        else None
    )
    target_name = component.data_outputs[0].schema
    if target_name == "ErrorRecord":
        identity = component.inputs[0].schema == "ErrorRecord"
        return {
            "identity": identity,
            "carried": [],
            "filled": {},
            "error_record": not identity,
        }
    target = blueprint.schema(target_name)
    source_types = {f.name: str(f.type) for f in source.fields} if source else {}
    carried = [f.name for f in target.fields if source_types.get(f.name) == str(f.type)]
    full = example_item(blueprint, target.name)
    filled = {
        f.name: full[f.name]
        for f in target.fields
        if f.required and f.name not in carried
    }
    identity = source is not None and source.name == target.name
    return {
        "identity": identity,
        "carried": carried,
        "filled": filled,
        "error_record": False,
    }


def connections_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each connection with its effective settings."""
    return [
        {
            "source": c.source.ref,
            "target": c.target.ref,
            "buffer_size": c.buffer_size,
            "overflow": c.overflow,
            "feedback": c.feedback,
            "description": c.description,
            "transport": c.transport,
            "key": c.key,
            "max_lag": c.max_lag,
            "partitions": c.partitions,
        }
        for c in blueprint.connections
    ]


def endpoints_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each HTTP endpoint with a valid body and the limits its tests check."""
    out = []
    for c in blueprint.components:
        if c.path is None:  # not served over HTTP
            continue
        schema = c.data_outputs[0].schema
        out.append(
            {
                "name": c.name,
                "description": c.description,
                "method": c.method,
                "path": c.path,
                "schema": schema,
                "timeout_ms": c.timeout_ms,
                "max_payload_kb": c.max_payload_kb,
                "auth": c.auth,
                "rate_limit": _rate_limit(c),
                "example": (
                    example_item(blueprint, schema) if schema != "ErrorRecord" else None
                ),
            }
        )
    return out


def entries_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Every entry point (endpoints and sources) and the sinks its item reaches by default."""
    entries: list[dict[str, Any]] = []
    for component in blueprint.components:
        if COMPONENT_KINDS[component.kind].inputs is not None:  # items enter elsewhere
            continue
        if component.live is not None:  # test_websockets.py sends its items
            continue
        for port in component.data_outputs:
            if port.schema == "ErrorRecord":
                continue
            entries.append(
                {
                    "component": component.name,
                    "kind": component.kind,
                    "port": port.name,
                    "schema": port.schema,
                    "example": example_item(blueprint, port.schema),
                    "reaches": reached_counts(
                        blueprint, port, example_item(blueprint, port.schema)
                    ),
                }
            )
            # over Redis a window keeps what is open for its partitions' next owner
            reached, on_redis = entries[-1]["reaches"], reached_counts(
                blueprint, port, example_item(blueprint, port.schema), on_redis=True
            )
            entries[-1]["reaches_on_redis"] = None if on_redis == reached else on_redis
    return entries


def batches_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each component that takes batches, with what its emitted tests need."""
    rows = []
    for component in blueprint.components:
        if component.batch_max_items is None:
            continue
        method = kind_of(component).method
        assert method is not None  # only kinds with user code take batches
        port = component.inputs[0]
        rows.append(
            {
                "name": component.name,
                "method": method.name,
                "max_items": component.batch_max_items,
                "max_wait_ms": component.batch_max_wait_ms,
                "input": port.name,
                "schema": port.schema,
                # an ErrorRecord input: the emitted test makes one itself
                "example": (
                    None
                    if port.schema == ERROR_SCHEMA
                    else example_item(blueprint, port.schema)
                ),
            }
        )
    return rows


def timers_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each timer source: its period in seconds or its cron schedule."""
    return [
        {
            "name": c.name,
            "every": None if c.every_ms is None else c.every_ms / 1000,
            "schedule": c.schedule,
        }
        for c in blueprint.components
        if c.every_ms is not None or c.schedule is not None
    ]


def lives_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each live (WebSocket) component, with what its emitted tests need: its route,
    limits, credentials, an item it carries and what a client may filter by."""
    rows = []
    for component in blueprint.components:
        live = component.live
        if live is None:
            continue
        ports = component.inputs or component.data_outputs
        port = next((p for p in ports if p.schema != ERROR_SCHEMA), None)
        key = next(
            (
                c.key
                for c in blueprint.connections
                if c.target.component == component.name and c.key is not None
            ),
            None,
        )
        rows.append(
            {
                "name": component.name,
                "kind": component.kind,
                "description": component.description,
                "route": live.route,
                "auth": component.auth,
                "max_connections": live.max_connections,
                "max_frame_bytes": live.max_frame_bytes,
                "rate_limit": _rate_limit(component),
                "port": None if port is None else port.name,
                "schema": None if port is None else port.schema,
                "example": (
                    None if port is None else example_item(blueprint, port.schema)
                ),
                # what a client may filter by: subscribe_by fields, and the key
                "filters": [
                    *live.subscribe_by,
                    *([] if key is None else ["key"]),
                ],
                "key": key,
                "page": live.page,
            }
        )
    return rows


def work_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each component that holds several items at once or runs in worker threads,
    with what its emitted tests need: its base class, method, settings and an item."""
    rows = []
    for component in blueprint.components:
        method = COMPONENT_KINDS[component.kind].method
        if method is None or not (component.concurrency > 1 or component.blocking):
            continue
        data_out = component.data_outputs
        port = component.inputs[0]
        rows.append(
            {
                "name": component.name,
                "base": class_name(component.name) + "Base",
                "method": method.name,
                "concurrency": component.concurrency,
                "ordering": component.ordering,
                "blocking": component.blocking,
                "input": port.name,
                "output": data_out[0].name if data_out else None,
                "schema": port.schema,
                "example": example_item(blueprint, port.schema),
            }
        )
    return rows


def reached_counts(
    blueprint: Blueprint, start: Port, item: dict[str, Any], on_redis: bool = False
) -> dict[str, int | None]:
    """How many items each sink port reached gets from one ``item`` sent on
    ``start``, every component keeping its default: one, but behind a window as
    many as the windows it is in (None: the blueprint cannot say, at least one).
    ``on_redis``: by the drain of a run over Redis, where a window or a join fed
    over Redis releases nothing (its state stays in Redis): nothing behind it
    (but the pairs a join makes as the items come)."""
    counts: dict[str, int | None] = {}
    pending: list[tuple[Port, int | None, dict[str, Any] | None]] = [(start, 1, item)]
    seen: set[str] = set()
    # a join is decided once the walk found every side the item reaches
    arrived: dict[str, dict[str, Arrival]] = {}
    decided: set[str] = set()
    while True:
        if not pending:
            ready = next_join(blueprint, arrived, decided)
            if ready is None:
                break
            decided.add(ready)
            # over Redis a join fed over Redis keeps what it holds at the drain
            kept = on_redis and any(
                c.target.component == ready and c.transport == "redis"
                for c in blueprint.connections
            )
            pending.extend(
                join_leaves(blueprint.component(ready), arrived[ready], kept)
            )
            continue
        port, times, carried = pending.pop()
        if port.ref in seen:
            continue
        seen.add(port.ref)
        for conn in blueprint.connections_from(port.ref):
            target = blueprint.component(conn.target.component)
            if COMPONENT_KINDS[target.kind].outputs is None:  # a path ends there
                counts[conn.target.ref] = times
            elif target.window is not None:
                if on_redis and conn.transport == "redis":
                    continue
                made = windows_per_item(target.window, carried)
                more = made if times == 1 else None  # windows of windows: unknown
                pending.append((target.data_outputs[0], more, None))
            elif target.join is not None:
                if target.name not in decided:
                    sides = arrived.setdefault(target.name, {})
                    sides[conn.target.name] = (times, carried)
            elif target.data_outputs:
                pending.append((target.data_outputs[0], times, carried))
    return dict(sorted(counts.items()))
