"""What a user method may return to send several items: a list, or yield them.

A leaf. A transformer's ``transform`` and a timer's ``tick`` return one item,
``None`` (nothing), a list of items, or are generators (``yield``, plain or
``async def``); each item then travels as its own message. (A tuple is one item:
services that pass tuples around keep doing so.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from types import AsyncGeneratorType, GeneratorType
from typing import Any

__all__ = ["PLURAL", "each", "is_plural"]

#: The classes of results that stand for several items: checked by class first
#: (one set lookup), since a loop asks this of every result.
PLURAL = frozenset({list, GeneratorType, AsyncGeneratorType})


def is_plural(result: Any) -> bool:
    """Whether ``result`` stands for several items (an item itself never does)."""
    return result.__class__ in PLURAL or isinstance(
        result, (list, Iterator, AsyncIterator)
    )


async def each(result: Any) -> AsyncIterator[Any]:
    """The items ``result`` stands for: none for ``None``, one for an item."""
    if result is None:
        return
    if isinstance(result, AsyncIterator):
        async for item in result:
            yield item
    elif is_plural(result):
        items: Iterable[Any] = result
        for item in items:
            yield item
    else:
        yield result
