"""What a name in a blueprint may be, and why: each rule keeps emitted code valid."""

from __future__ import annotations

import keyword
import re
import sys

import pydantic

from .scalars import SCALARS

SNAKE = re.compile(r"^[a-z_][a-z0-9_]*$")
FIELD = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEMA = re.compile(r"^[A-Z][A-Za-z0-9]*$")
MAX_NAME = 64

# Every list below is what the emitted code really binds, imports or uses:
# tests/test_reserved_names.py renders every example and a blueprint with every
# feature, collects those names with ``ast``, and fails naming any that is missing.
# (docs/design.md, "Reserved names", says why a test and not a render in ``validate``.)

# Modules the emitted code imports (outside the standard library) ...
_IMPORTED_MODULES = frozenset({
    "anyio", "bcrypt", "fastapi", "httpx", "limits", "opentelemetry", "orjson",
    "prometheus_client", "pydantic", "pytest", "redis", "starlette", "structlog",
    "uvicorn",
})  # fmt: skip
# ... and those its dependencies bring and import in turn: a package named like one
# would be imported in its place, since the project's folder is first on sys.path.
_DEPENDENCY_MODULES = frozenset({
    "annotated_doc", "annotated_types", "black", "blackd", "blib2to3", "certifi",
    "click", "deprecated", "h11", "hiredis", "httpcore", "httptools", "idna",
    "iniconfig", "mypy_extensions", "opentelemetry", "packaging", "pathspec",
    "platformdirs", "pluggy", "py", "pydantic_core", "pygments", "pyrefly",
    "pytest_cov", "pytest_timeout", "pytokens", "ruff", "coverage",
    "typing_extensions", "typing_inspection", "uvloop", "wrapt",
})  # fmt: skip
# The emitted package must not shadow a module the service imports.
_PACKAGE_CLASHES = (
    frozenset(sys.stdlib_module_names)
    | _IMPORTED_MODULES
    | _DEPENDENCY_MODULES
    | {"tests", "test", "generator", "portwright", "runtime"}
)
# Component names become module names in the emitted package and names in its wiring;
# these are the builtins and module-level names the emitted code itself relies on.
_COMPONENT_CLASHES = frozenset(
    {
        "str", "int", "float", "bool", "dict", "list", "set", "tuple", "type", "object",
        "len", "print", "range", "super", "isinstance", "sorted", "repr", "iter", "next",
        "app", "service", "settings", "runtime", "schemas", "components", "wiring",
        "main", "config", "self", "cls", "build_service", "create_app",
    }
)  # fmt: skip
# Field names become attributes of pydantic models, in a class body beside the type
# names schemas.py annotates them with (a field 'date' of type date breaks pydantic).
_FIELD_CLASHES = frozenset(
    name for name in dir(pydantic.BaseModel) if not name.startswith("__")
)


def _field_type_names() -> set[str]:
    """The names schemas.py annotates fields with (read from the scalar table)."""
    return (
        {"list"}
        | {s.annotation.split("[")[0] for s in SCALARS.values()}
        | {name for s in SCALARS.values() for _module, name in s.imports}
    )


# Schema names become classes in schemas.py, imported by the modules beside these
# names (and a component's class name is made beside them too): every CamelCase name
# an emitted module binds or uses.
RESERVED_SCHEMAS = frozenset({
    "AUTH", "AUTHENTICATED", "Annotated", "Any", "ApiEndpoint", "AsyncIterator",
    "Awaitable",
    # the join kind: wiring.py and tests/test_joins.py (EVENT_JOINS: no schema
    # name has an underscore)
    "JOINS", "Join", "JoinCase", "Wired",
    "BATCHES", "Batch", "BaseModel", "Cron", "ManualClock", "PERIODIC", "SCHEDULED",
    "START", "TIMERS", "WAITING", "CONNECTIONS", "Callable", "Component", "ConfigDict", "ENDPOINTS",
    "ENTRIES", "Endpoint", "ErrorRecord", "FIELDS", "FORGED", "FastAPI", "Field",
    "Filter", "Headers", "IDS", "INTERRUPTED", "INVALID", "Iterator", "JSON",
    "KeyboardInterrupt", "LIMITED", "Literal", "Mapping", "Merger", "ModuleType",
    "OneItem", "Overflow", "PEER", "Path", "ROUTES", "RateLimit", "Router", "SERVICE",
    "Service", "ServiceError", "ServiceSettings", "Sink", "Source", "Stuck",
    "SystemExit", "Timer", "Transformer", "Transport", "UTC", "UUID", "VALID", "ValidationError", "ValueError",
    # the live kinds: wiring.py and tests/test_websockets.py
    "Envelope", "ExitStack", "FILTERS", "INS", "Inlet", "LIVES", "OUTS", "PAGES", "POLICY", "Tap",
    "TestClient", "WebSocketDisconnect", "WebSocketIn", "WebSocketOut",
    "WebSocketTestSession",
    # the window kind: wiring.py and tests/test_windows.py
    # (LATE_WINDOWS, TIMED_WINDOWS, WINDOW_OFFSETS, WINDOW_VALUES: no schema name
    # has an underscore)
    "AlignedWindows", "CountWindows", "MICROS", "NamedTuple", "SlidingWindows", "T0",
    "WINDOWS", "Window", "WindowCase", "WindowRow",
    # a window of user code: bases.py subclasses it, tests/test_windows.py checks it
    "Aggregate", "TypeError",
    # keyed state: bases.py subclasses Stateful; tests/test_state.py
    "STATEFUL", "StateCase", "Stateful",
})  # fmt: skip
def _common(value: str, pattern: re.Pattern[str], what: str, shape: str) -> str | None:
    if not pattern.fullmatch(value):  # not match: "$" also matches before a final "\n"
        return f"{what} {value!r} is not a valid name: use {shape}"
    if len(value) > MAX_NAME:
        return f"{what} {value!r} is longer than {MAX_NAME} characters"
    if keyword.iskeyword(value):
        return f"{what} {value!r} is a Python keyword; choose another name"
    return None


def service_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be the service (package) name, or None."""
    problem = _common(value, SNAKE, "name", "snake_case (^[a-z_][a-z0-9_]*$)")
    if problem is None and value in _PACKAGE_CLASHES:
        problem = f"name {value!r} would shadow the Python module of that name; choose another"
    return problem


def component_name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a component, or None."""
    problem = _common(value, SNAKE, "component name", "snake_case (^[a-z_][a-z0-9_]*$)")
    if problem is None and value in _COMPONENT_CLASHES:
        problem = f"component name {value!r} shadows a name the emitted code uses; choose another"
    if problem is None and value.startswith("__") and value.endswith("__"):
        # components/<name>.py: '__init__' would be the package's own module
        problem = f"component name {value!r} is a special module name; choose another"
    clash = next((c for c in component_classes(value) if c in RESERVED_SCHEMAS), None)
    if problem is None and clash is not None:
        problem = (
            f"component name {value!r} makes the class {clash!r}, a name the emitted "
            "code uses; choose another"
        )
    return problem


def port_name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a port, or None.

    Ports appear in emitted code only as string literals, so keywords are fine here:
    ``in`` is the very name the ``input:`` shorthand gives.
    """
    if not SNAKE.fullmatch(value):
        return f"port name {value!r} is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"
    if len(value) > MAX_NAME:
        return f"port name {value!r} is longer than {MAX_NAME} characters"
    return None


def field_name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a schema field, or None."""
    if value.startswith("_"):
        return f"field name {value!r} starts with '_', which pydantic treats as private"
    problem = _common(value, FIELD, "field name", "snake_case (^[a-z][a-z0-9_]*$)")
    if problem is None and (value in _FIELD_CLASHES or value.startswith("model_")):
        problem = f"field name {value!r} shadows an attribute of pydantic's BaseModel"
    if problem is None and value in _field_type_names():
        problem = (
            f"field name {value!r} shadows the type of that name in the emitted "
            "schemas.py; choose another"
        )
    return problem


def schema_name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a schema, or None."""
    problem = _common(value, SCHEMA, "schema name", "CamelCase (^[A-Z][A-Za-z0-9]*$)")
    if problem is None and value in RESERVED_SCHEMAS:
        problem = (
            f"schema name {value!r} is reserved by the emitted code; choose another"
        )
    return problem


def class_name(snake: str) -> str:
    """``by_risk`` -> ``ByRisk`` (the class a component's user file defines)."""
    return (
        "".join(part[:1].upper() + part[1:] for part in snake.split("_") if part)
        or "Component"
    )


def component_classes(snake: str) -> tuple[str, str, str, str]:
    """The names a component with user code makes: its class, its base, its ports,
    and its item type (the union of its input schemas, when it has several)."""
    name = class_name(snake)
    return name, f"{name}Base", f"{name}Port", f"{name}Item"
