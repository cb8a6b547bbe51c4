"""What a window computes over its items: a fold with a start, a step and a result.

A leaf. An ``Aggregate`` is three plain functions: ``initial()`` (the accumulator of
an empty window), ``add(acc, item)`` (the accumulator with one more item; it may
return a new value or the same, mutated) and ``result(acc)`` (what the window
emits). The built-ins read a field of the item by name (``a.b`` nested, as a
keyed connection's ``key``); user code subclasses ``Aggregate`` the same way.

Over Redis a window keeps its accumulators in Redis, as JSON: ``dump(acc)`` gives
the accumulator as JSON values (``None``, bool, int, float, str, lists, dicts with
str keys; ``datetime``, ``date`` and ``Decimal`` are written tagged, see
``redis/windowstore.py``) and ``load(data)`` makes it back. The built-ins'
accumulators are such values already; a user aggregate whose accumulator is not
(a set, an object) overrides both.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

__all__ = [
    "Aggregate",
    "Collect",
    "Count",
    "Last",
    "Max",
    "Mean",
    "Min",
    "Sum",
    "builtin",
]


class Aggregate:
    """A fold over a window's items; override the three methods."""

    def initial(self) -> Any:
        """The accumulator of a window that has no item yet."""
        return None

    def add(self, acc: Any, item: Any) -> Any:
        """The accumulator once ``item`` is in the window."""
        return item

    def result(self, acc: Any) -> Any:
        """The window's value, from its accumulator."""
        return acc

    def dump(self, acc: Any) -> Any:
        """The accumulator as JSON values (a window over Redis keeps it so)."""
        return acc

    def load(self, data: Any) -> Any:
        """The accumulator ``dump`` wrote, made back."""
        return data


class Count(Aggregate):
    """How many items the window holds."""

    def initial(self) -> int:
        """No item: zero."""
        return 0

    def add(self, acc: int, item: Any) -> int:
        """One more."""
        return acc + 1


def _itself(item: Any) -> Any:
    return item


class _OfField(Aggregate):
    """An aggregate of one field of each item (``None``: the item itself)."""

    def __init__(self, field: str | None = None) -> None:
        self.field = field
        self.value: Callable[[Any], Any] = (
            _itself if field is None else attrgetter(field)
        )


class Sum(_OfField):
    """The sum of a field."""

    def initial(self) -> Any:
        """No item: zero."""
        return 0

    def add(self, acc: Any, item: Any) -> Any:
        """Plus the item's field."""
        return acc + self.value(item)


class Mean(_OfField):
    """The mean of a field (``None`` for a window closed with no item)."""

    def initial(self) -> list[Any]:
        """A running [sum, count]; mutated in place (one window owns it)."""
        return [0, 0]

    def add(self, acc: list[Any], item: Any) -> list[Any]:
        """Add the field to the sum and one to the count."""
        acc[0] += self.value(item)
        acc[1] += 1
        return acc

    def result(self, acc: list[Any]) -> float | None:
        """Sum over count."""
        total, count = acc
        return total / count if count else None


class Min(_OfField):
    """The least value of a field (``None`` before the first item)."""

    def add(self, acc: Any, item: Any) -> Any:
        """The lesser of the two."""
        value = self.value(item)
        return value if acc is None or value < acc else acc


class Max(_OfField):
    """The greatest value of a field (``None`` before the first item)."""

    def add(self, acc: Any, item: Any) -> Any:
        """The greater of the two."""
        value = self.value(item)
        return value if acc is None or value > acc else acc


class Last(_OfField):
    """The field of the last item added (in arrival order)."""

    def add(self, acc: Any, item: Any) -> Any:
        """This item's field."""
        return self.value(item)


class Collect(_OfField):
    """Every item's field (or every item), in arrival order."""

    def initial(self) -> list[Any]:
        """An empty list; appended to in place (one window owns it)."""
        return []

    def add(self, acc: list[Any], item: Any) -> list[Any]:
        """Append the field."""
        acc.append(self.value(item))
        return acc

    def result(self, acc: list[Any]) -> list[Any]:
        """A copy: what was emitted does not change when the window grows."""
        return list(acc)


_BUILTIN: dict[str, type[_OfField] | type[Count]] = {
    "count": Count,
    "sum": Sum,
    "mean": Mean,
    "min": Min,
    "max": Max,
    "last": Last,
    "collect": Collect,
}


def builtin(name: str, field: str | None = None) -> Aggregate:
    """The built-in aggregate ``name`` of ``field``; ``ValueError`` if unknown."""
    kind = _BUILTIN.get(name)
    if kind is None:
        raise ValueError(
            f"unknown aggregate {name!r}; choose one of {', '.join(_BUILTIN)}"
        )
    if kind is Count:
        if field is not None:
            raise ValueError("count takes no field")
        return Count()
    if field is None and name in ("sum", "mean", "min", "max"):
        raise ValueError(f"{name} needs a field")
    return kind(field)  # type: ignore[call-arg]
