"""What a name in a blueprint may be, and why: each rule keeps emitted code valid."""

from __future__ import annotations

import keyword
import re
import sys

import pydantic

SNAKE = re.compile(r"^[a-z_][a-z0-9_]*$")
FIELD = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEMA = re.compile(r"^[A-Z][A-Za-z0-9]*$")
MAX_NAME = 64

# The emitted package must not shadow a module the service imports.
_PACKAGE_CLASHES = frozenset(sys.stdlib_module_names) | {
    "anyio", "fastapi", "starlette", "uvicorn", "pydantic", "pydantic_core",
    "prometheus_client", "structlog", "httpx", "pytest", "tests", "test",
    "generator", "portwright", "runtime", "typing_extensions", "orjson",
}  # fmt: skip
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
# Field names become attributes of pydantic models.
_FIELD_CLASHES = frozenset(
    name for name in dir(pydantic.BaseModel) if not name.startswith("__")
)
# Schema names become classes in schemas.py beside these imports.
RESERVED_SCHEMAS = frozenset(
    {"ErrorRecord", "BaseModel", "ConfigDict", "Field", "Annotated", "Any", "UUID"}
)


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
