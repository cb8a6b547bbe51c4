"""Parse the field type expressions of blueprint-v1 (``list[str] | None``, ``Order``)."""

from __future__ import annotations

from .blueprint import TypeRef
from .names import SCHEMA
from .scalars import LIST_CONSTRAINTS, SCALARS


class TypeSyntaxError(ValueError):
    """A type expression that blueprint-v1 does not define."""


def parse_type(text: str) -> TypeRef:
    """Parse ``text``; raise TypeSyntaxError with a message naming what is wrong."""
    return _parse(text.strip(), text, depth=0)


def _parse(text: str, whole: str, depth: int) -> TypeRef:
    if depth > 8:
        raise TypeSyntaxError(f"type {whole!r} is nested too deeply")
    parts = _split_union(text)
    if len(parts) > 1:
        others = [part for part in parts if part != "None"]
        if len(parts) != 2 or len(others) != 1:
            raise TypeSyntaxError(
                f"type {whole!r}: a union may only be 'T | None' (an optional field)"
            )
        inner = _parse(others[0], whole, depth + 1)
        if inner.optional:
            raise TypeSyntaxError(f"type {whole!r} says '| None' twice")
        return TypeRef(inner.kind, inner.name, inner.item, optional=True)
    if text.startswith("list[") and text.endswith("]"):
        return TypeRef("list", "list", _parse(text[5:-1].strip(), whole, depth + 1))
    if text in SCALARS:
        return TypeRef("scalar", text)
    if SCHEMA.fullmatch(text):
        return TypeRef("schema", text)
    raise TypeSyntaxError(
        f"unknown type {whole!r}: use one of {', '.join(SCALARS)}, list[T], "
        "a schema name, or T | None"
    )


def _split_union(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return parts


def allowed_constraints(ref: TypeRef) -> frozenset[str]:
    """The constraints that make sense for ``ref`` (optional or not)."""
    if ref.kind == "list":
        return frozenset(LIST_CONSTRAINTS)
    if ref.kind == "scalar":
        return frozenset(SCALARS[ref.name].constraints)
    return frozenset()
