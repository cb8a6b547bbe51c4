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
from dataclasses import dataclass, field
from typing import Any, Literal

from . import __version__
from .blueprint import ERRORS_PORT, Blueprint, Component, Port
from .examples import example_item
from .filters import pyrepr
from .model import LOGIC_KINDS as LOGIC_KINDS  # re-exported: regenerate reads it
from .names import class_name
from .pytypes import field_code, schema_imports, uses_field
from .schema_cases import schema_cases

Owner = Literal["generator", "user"]

PACKAGE_DIR = "package/"
PER_COMPONENT = "package/components/component.py.jinja"
BLUEPRINT_COPY = ".portwright/blueprint.yaml"
MANIFEST = ".portwright/manifest.json"
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
    "pytest>=8.2",
    "pytest-timeout>=2.3",
    "ruff>=0.6",
)
DEFAULT_FORBIDDEN_IMPORTS = ("observability",)
BASE_CLASSES = {
    "source": "Source",
    "api_endpoint": "ApiEndpoint",
    "transformer": "Transformer",
    "filter": "Filter",
    "router": "Router",
    "merger": "Merger",
    "sink": "Sink",
}


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
    files: list[PlannedFile] = [
        PlannedFile(BLUEPRINT_COPY, "generator", content=blueprint_text)
    ]
    by_name = {c["name"]: c for c in context["components"]}
    for name in sorted(set(templates)):
        if name == PER_COMPONENT:
            for component in blueprint.components:
                if component.kind in LOGIC_KINDS:
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
        "dependencies": list(EMITTED_DEPENDENCIES),
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
        "endpoints": endpoints_context(blueprint),
        "entries": entries_context(blueprint),
        "schema_cases": schema_cases(blueprint),
        **imports_context(blueprint),
    }


def imports_context(blueprint: Blueprint) -> dict[str, Any]:
    """Which schemas and helpers the wiring and the base classes import."""
    logic = [c for c in blueprint.components if c.kind in LOGIC_KINDS]
    other = [c for c in blueprint.components if c.kind not in LOGIC_KINDS]

    def schemas_of(components: list[Component]) -> list[str]:
        return sorted({p.schema for c in components for p in (*c.inputs, *c.outputs)})

    return {
        "bases_schemas": schemas_of(logic),
        "wiring_schemas": schemas_of(other),
        "runtime_kinds_logic": sorted({BASE_CLASSES[c.kind] for c in logic}),
        "runtime_kinds_wiring": sorted({BASE_CLASSES[c.kind] for c in other}),
        "has_router": any(c.kind == "router" for c in logic),
        "has_source": any(c.kind == "source" for c in logic),
        "error_record_transform": any(
            c.kind == "transformer"
            and c.data_outputs[0].schema == "ErrorRecord"
            and c.inputs[0].schema != "ErrorRecord"
            for c in logic
        ),
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
    context: dict[str, Any] = {
        "name": component.name,
        "kind": component.kind,
        "class_name": class_name(component.name),
        "runtime_class": BASE_CLASSES[component.kind],
        "description": component.description,
        "user_owned": component.kind in LOGIC_KINDS,
        "inputs_code": _ports_code(component.inputs),
        "outputs_code": _ports_code(component.outputs),
        "inputs": _ports(component.inputs),
        "outputs": _ports(component.outputs),
        "data_outputs": [p.name for p in data_out],
        "has_errors_port": component.output(ERRORS_PORT) is not None,
        "burst_limit": component.burst_limit,
        "method": component.method,
        "path": component.path,
        "timeout_ms": component.timeout_ms,
        "max_payload_kb": component.max_payload_kb,
        "auth": component.auth,
        "rate_limit": _rate_limit(component),
        "in_schema": component.inputs[0].schema if component.inputs else None,
        "out_schema": data_out[0].schema if data_out else None,
    }
    if component.kind == "transformer":
        context["carry"] = carried_fields(blueprint, component)
    return context


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
        }
        for c in blueprint.connections
    ]


def endpoints_context(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each HTTP endpoint with a valid body and the limits its tests check."""
    out = []
    for c in blueprint.components:
        if c.kind != "api_endpoint":
            continue
        schema = c.data_outputs[0].schema
        out.append(
            {
                "name": c.name,
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
    entries = []
    for component in blueprint.components:
        if component.kind not in ("api_endpoint", "source"):
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
                    "reaches": sorted(reached_sinks(blueprint, port)),
                }
            )
    return entries


def reached_sinks(blueprint: Blueprint, start: Port) -> set[str]:
    """The sink ports an item from ``start`` reaches when every component keeps its default.

    Defaults: transformers and filters pass items on, routers choose their first
    output, mergers forward; an output feeds every connection it has.
    """
    reached: set[str] = set()
    seen: set[str] = set()
    pending = [start]
    while pending:
        port = pending.pop()
        if port.ref in seen:
            continue
        seen.add(port.ref)
        for conn in blueprint.connections_from(port.ref):
            target = blueprint.component(conn.target.component)
            if target.kind == "sink":
                reached.add(conn.target.ref)
            elif target.data_outputs:
                pending.append(target.data_outputs[0])
    return reached
