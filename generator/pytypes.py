"""How a blueprint schema becomes Python source: annotations, Field(...) and imports."""

from __future__ import annotations

from dataclasses import dataclass

from .blueprint import Schema, SchemaField, TypeRef
from .filters import pyrepr
from .scalars import SCALARS


def annotation(ref: TypeRef) -> str:
    """The Python annotation of a field type."""
    if ref.kind == "list":
        assert ref.item is not None
        core = f"list[{annotation(ref.item)}]"
    elif ref.kind == "schema":
        core = ref.name
    else:
        core = SCALARS[ref.name].annotation
    return f"{core} | None" if ref.optional else core


def imports_for(ref: TypeRef) -> set[tuple[str, str]]:
    """``(module, name)`` pairs an annotation needs."""
    if ref.kind == "list":
        assert ref.item is not None
        return imports_for(ref.item)
    return set(SCALARS[ref.name].imports) if ref.kind == "scalar" else set()


@dataclass(frozen=True)
class FieldCode:
    """One field line of an emitted model: ``name: annotation = value``."""

    name: str
    annotation: str
    value: str | None  # the right-hand side, or None for a bare required field


def field_code(field: SchemaField) -> FieldCode:
    """The source of one field, constraints and description kept."""
    args: list[str] = []
    if not field.required:
        args.append(f"default={_default(field)}")
    args.extend(f"{key}={pyrepr(value)}" for key, value in field.constraints)
    if field.description:
        args.append(f"description={pyrepr(field.description)}")
    if field.pii:
        args.append('json_schema_extra={"x-pii": True}')
    value = f"Field({', '.join(args)})" if args else None
    return FieldCode(field.name, annotation(field.type), value)


def _default(field: SchemaField) -> str:
    """The default's literal; an empty list or dict typed (``list[str]()``).

    A strict type check cannot tell what a bare ``[]`` holds; ``default_factory``
    would type it too, but drop the default from the OpenAPI document.
    """
    typed = annotation(field.type)
    if field.default in ([], {}) and _one_generic(typed, ("list[", "dict[")):
        return f"{typed}()"
    return pyrepr(field.default)


def _one_generic(code: str, heads: tuple[str, ...]) -> bool:
    """Whether ``code`` is one subscripted ``list[...]``/``dict[...]``, nothing around."""
    if not code.startswith(heads) or not code.endswith("]"):
        return False
    depth = 0
    for index, char in enumerate(code):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth == 0 and char == "]":
            return index == len(code) - 1
    return False


def schema_imports(schemas: tuple[Schema, ...]) -> list[str]:
    """The import lines ``schemas.py`` needs, sorted the way ruff's isort sorts them."""
    needed: dict[str, set[str]] = {}
    for schema in schemas:
        for field in schema.fields:
            if field.declared_in != schema.name:
                continue
            for module, name in imports_for(field.type):
                needed.setdefault(module, set()).add(name)
    return [
        f"from {module} import {', '.join(sorted(names))}"
        for module, names in sorted(needed.items())
    ]


def uses_field(schemas: tuple[Schema, ...]) -> bool:
    """Whether any own field needs ``Field(...)``."""
    return any(
        field_code(f).value is not None
        for s in schemas
        for f in s.fields
        if f.declared_in == s.name
    )
