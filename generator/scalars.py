"""The scalar field types of blueprint-v1: one row per type, every fact about it.

The loader (which types exist, which constraints each takes, how a default is
checked), the examples (a valid value, values the emitted tests expect refused) and
the planner (the annotation and imports of ``schemas.py``) all read this table, so a
new scalar type is one row here. ``list[T]``, ``T | None`` and schema references are
the type expressions around these, in ``field_types.py``.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import values

BOUNDS = ("gt", "ge", "lt", "le")
LENGTHS = ("min_length", "max_length")
# Every constraint a field may carry, in the order emitted models write them.
CONSTRAINTS = (*BOUNDS, *LENGTHS, "pattern")


@dataclass(frozen=True)
class Scalar:
    """One scalar type: how blueprints name it and everything derived from that."""

    name: str  # as blueprints write it
    annotation: str  # in the emitted models
    imports: tuple[tuple[str, str], ...]  # ``(module, name)`` the annotation needs
    python: Any  # the Python type a default is checked against
    example: Callable[[Mapping[str, Any]], Any]  # a valid JSON value, given constraints
    rejected: tuple[Any, ...]  # JSON values of another type, which the model refuses
    constraints: tuple[str, ...]  # the constraints that apply to it
    # one element: repeated, it breaks min_length and max_length (None: not derived)
    unit: Any = None


SCALARS: dict[str, Scalar] = {
    s.name: s
    for s in (
        Scalar("str", "str", (), str, values.text, ({"not": "a string"},),
               ("min_length", "max_length", "pattern"), "x"),
        Scalar("int", "int", (), int, values.integer, ("not a number",), BOUNDS),
        Scalar("float", "float", (), float, values.number, ("not a number",), BOUNDS),
        Scalar("bool", "bool", (), bool, values.fixed(True), (), ()),
        Scalar("datetime", "datetime", (("datetime", "datetime"),), datetime.datetime,
               values.fixed("2024-01-02T03:04:05+00:00"), ("not-a-datetime",), ()),
        Scalar("date", "date", (("datetime", "date"),), datetime.date,
               values.fixed("2024-01-02"), ("not-a-date",), ()),
        Scalar("uuid", "UUID", (("uuid", "UUID"),), uuid.UUID,
               values.fixed("01890a5d-ac96-774b-bcce-b302099a8057"), ("not-a-uuid",),
               ()),
        Scalar("dict", "dict[str, Any]", (("typing", "Any"),), dict[str, Any],
               values.fixed({}), (), LENGTHS),
    )
}  # fmt: skip
# What a ``list[T]`` field takes, whatever its items.
LIST_CONSTRAINTS = LENGTHS
