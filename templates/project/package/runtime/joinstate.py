"""The buffers of a ``Join`` component: per side and key, the items kept for a partner.

Plain synchronous state, no I/O and no clock. ``add`` pairs an item with every
buffered item of the other side and the same key whose time is within ``within``
of its own (both ends included), then keeps it; ``expire`` drops the items no
item still to come can pair with (their time plus ``within`` is below the
horizon); ``evict`` drops the oldest early. An item dropped without having been
paired is handed to ``unmatched``. ``joins.py`` wraps this in the component;
docs/runtime.md ("Joins") states the rules.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["SIDES", "Held", "JoinState", "Side"]

Side = Literal["left", "right"]
SIDES: tuple[Side, Side] = ("left", "right")
_OTHER: dict[Side, Side] = {"left": "right", "right": "left"}


class Held:
    """One buffered item: its time, what the component keeps of it (``payload``)
    and whether it has been paired."""

    __slots__ = ("matched", "payload", "t")

    def __init__(self, t: float, payload: Any) -> None:
        self.t = t
        self.payload = payload
        self.matched = False


#: ``paired(left, right, arriving)``: a pair found (``arriving``: whose item came last)
Paired = Callable[[Held, Held, Side], None]
#: ``unmatched(side, held)``: an item dropped that no partner came for
Unmatched = Callable[[Side, Held], None]


class JoinState:
    """Per side and key, the held items, sorted by time (then arrival)."""

    def __init__(self, within: float, paired: Paired, unmatched: Unmatched) -> None:
        self.within = within
        self.paired, self.unmatched = paired, unmatched
        #: side -> key -> [(t, seq, held)], sorted
        self.buffers: dict[Side, dict[Any, list[tuple[float, int, Held]]]] = {
            "left": {},
            "right": {},
        }
        #: a heap of (t + within, seq, side, key, t): when each held item expires
        self.expiries: list[tuple[float, int, Side, Any, float]] = []
        self.seq = 0
        self.held = 0
        #: told of every item dropped, paired or not (a store kept elsewhere
        #: deletes it there); None: nobody is
        self.dropped: Callable[[Side, Held], None] | None = None

    def add(self, side: Side, key: Any, t: float, payload: Any) -> Held:
        """Pair the item with the other side's held items of ``key`` within
        ``within`` of ``t`` (in their time order), then hold it (returned)."""
        within = self.within
        item = Held(t, payload)
        partners = self.buffers[_OTHER[side]].get(key)
        if partners:
            low = bisect_left(partners, (t - within,))
            high = bisect_right(partners, (t + within, math.inf))
            for _, _, partner in partners[low:high]:
                item.matched = partner.matched = True
                if side == "left":
                    self.paired(item, partner, side)
                else:
                    self.paired(partner, item, side)
        self.seq += 1
        held = self.buffers[side].setdefault(key, [])
        entry = (t, self.seq, item)
        if not held or held[-1][:2] < entry[:2]:
            held.append(entry)  # the usual case: times come in order
        else:
            held.insert(bisect_right(held, (t, self.seq)), entry)
        heapq.heappush(self.expiries, (t + within, self.seq, side, key, t))
        self.held += 1
        return item

    def restore(self, side: Side, key: Any, t: float, item: Held) -> None:
        """Hold ``item`` again as it was (loaded from a store: no pairing); call in
        the order the items came, so that ties keep their order."""
        self.seq += 1
        held = self.buffers[side].setdefault(key, [])
        entry = (t, self.seq, item)
        if not held or held[-1][:2] < entry[:2]:
            held.append(entry)
        else:
            held.insert(bisect_right(held, (t, self.seq)), entry)
        heapq.heappush(self.expiries, (t + self.within, self.seq, side, key, t))
        self.held += 1

    def next_expiry(self) -> float:
        """The horizon past which the oldest held item expires (inf: none held)."""
        return self.expiries[0][0] if self.expiries else math.inf

    def expire(self, horizon: float) -> None:
        """Drop every held item whose time plus ``within`` is below ``horizon``."""
        expiries = self.expiries
        while expiries and expiries[0][0] < horizon:
            self._drop()

    def evict(self) -> None:
        """Drop the item that would expire first, now."""
        self._drop()

    def clear(self) -> None:
        """Drop every held item, oldest first (a drain)."""
        while self.expiries:
            self._drop()

    def _drop(self) -> None:
        _, seq, side, key, t = heapq.heappop(self.expiries)
        buffers = self.buffers[side]
        held = buffers[key]
        index = bisect_left(held, (t, seq))
        item = held[index][2]
        del held[index]
        if not held:
            del buffers[key]
        self.held -= 1
        if self.dropped is not None:
            self.dropped(side, item)
        if not item.matched:
            self.unmatched(side, item)
