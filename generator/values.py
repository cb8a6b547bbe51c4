"""Values that a scalar's constraints allow, derived rather than guessed.

Numbers come from their bounds; strings with a ``pattern`` get the shortest match we
can derive from Python's own regex parser, and a pattern that defeats it raises
ExampleError, so the blueprint is reported rather than given a wrong example. The
scalar table (``scalars.py``) points at these; nothing here knows a blueprint.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

# Python's own regex parser (re._parser since 3.11); typeshed does not describe it.
sre_parse: Any = importlib.import_module("re._parser")
sre_constants: Any = importlib.import_module("re._constants")


class ExampleError(ValueError):
    """No example value could be derived for a field (its pattern is too involved)."""


def integer(constraints: Mapping[str, Any]) -> int:
    """An int inside ``constraints``' bounds (1 when they allow it)."""
    return int(_number(True, dict(constraints)))


def number(constraints: Mapping[str, Any]) -> float:
    """A float inside ``constraints``' bounds (1.5 when unbounded)."""
    return float(_number(False, dict(constraints)))


def text(constraints: Mapping[str, Any]) -> str:
    """A string of the allowed length that matches the ``pattern``, if any."""
    return _string(dict(constraints))


def fixed(value: Any) -> Callable[[Mapping[str, Any]], Any]:
    """A derivation that ignores constraints: always a fresh copy of ``value``."""

    def derive(constraints: Mapping[str, Any]) -> Any:
        return dict(value) if isinstance(value, dict) else value

    return derive


def _number(whole: bool, c: dict[str, Any]) -> int | float:
    low = c.get("ge", c.get("gt"))
    high = c.get("le", c.get("lt"))
    if whole:
        value: int = 1
        if "ge" in c:
            value = math.ceil(c["ge"])
        elif "gt" in c:
            value = math.floor(c["gt"]) + 1
        elif "le" in c:
            value = min(1, math.floor(c["le"]))
        elif "lt" in c:
            value = min(1, math.ceil(c["lt"]) - 1)
        return value
    if low is not None and high is not None:
        return (float(low) + float(high)) / 2
    if low is not None:
        return float(low) + 1.0
    if high is not None:
        return float(high) - 1.0
    return 1.5


def _string(c: dict[str, Any]) -> str:
    low: int = c.get("min_length", 0)
    high: int | None = c.get("max_length")
    pattern: str | None = c.get("pattern")
    if pattern is None:
        size = max(low, min(7, high) if high is not None else 7)
        return ("example" * (size // 7 + 1))[:size]
    value = shortest_match(pattern)
    if (
        re.search(pattern, value) is None
        or len(value) < low
        or (high is not None and len(value) > high)
    ):
        raise ExampleError(f"cannot derive an example value for pattern {pattern!r}")
    return value


def shortest_match(pattern: str) -> str:
    """A short string that ``re.search(pattern, ...)`` accepts (best effort)."""
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise ExampleError(f"pattern {pattern!r} is invalid: {exc}") from None
    return _emit(parsed)


def _emit(items: Any) -> str:
    out = []
    for op, arg in items:
        out.append(_one(op, arg))
    return "".join(out)


def _one(op: Any, arg: Any) -> str:
    c = sre_constants
    if op is c.LITERAL:
        return chr(arg)
    if op is c.NOT_LITERAL:
        return "a" if chr(arg) != "a" else "b"
    if op is c.ANY:
        return "a"
    if op is c.IN:
        return _charset(arg)
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
        low, _high, sub = arg
        return str(_emit(sub) * int(low))
    if op is c.SUBPATTERN:
        return _emit(arg[-1])
    if op is getattr(c, "ATOMIC_GROUP", None):
        return _emit(arg)
    if op is c.BRANCH:
        return _emit(arg[1][0])
    if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
        return ""
    if op is c.CATEGORY:
        return _category(arg)
    if op is c.GROUPREF:
        return ""
    raise ExampleError(f"unsupported regular expression construct {op}")


def _charset(items: Any) -> str:
    c = sre_constants
    negate = any(op is c.NEGATE for op, _ in items)
    if negate:
        excluded = set()
        for op, arg in items:
            if op is c.LITERAL:
                excluded.add(chr(arg))
        for ch in "aZ0_-":
            if ch not in excluded:
                return ch
        raise ExampleError("negated character class excludes every candidate")
    for op, arg in items:
        if op is c.LITERAL:
            return chr(arg)
        if op is c.RANGE:
            return chr(arg[0])
        if op is c.CATEGORY:
            return _category(arg)
    raise ExampleError("empty character class")


def _category(arg: Any) -> str:
    name = str(arg)
    if "NOT_DIGIT" in name:
        return "a"
    if "DIGIT" in name:
        return "0"
    if "NOT_SPACE" in name:
        return "a"
    if "SPACE" in name:
        return " "
    if "NOT_WORD" in name:
        return "-"
    return "a"
