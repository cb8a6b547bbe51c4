"""A window's state over a keyed Redis connection: per partition, in Redis.

A ``Window`` whose input is a keyed Redis connection keeps, per partition of that
connection, its open windows and its watermark in a hash next to the partition's
stream (same hash tag, so same slot on a Cluster):
``<stream>.state.<group>``, one field per key and open window (``[start, key]`` as
JSON) whose value is the accumulator as JSON (``Aggregate.dump``), and the field
``~watermark``. A count window has one open window per key: its field is ``[key]``
and its value ``[accumulator, items so far, first time, last time]``. A sliding
window (one per key and item time ``t``: ``(t - size, t]``) is named by its end,
``[end, key]``; a new window is seeded from the key's items of the ``size`` before
it, so those are kept too, one field each, ``[time, seq, key]`` (``seq`` tells
apart items of one key and time) whose value is the item; a field is written when
its item is kept and deleted when no window can hold it any more (its time is at or
before the watermark less the grace and the size). So a batch writes what it
changed: the accumulators of the windows its items fell in, a field per new item,
a deletion per window closed and item dropped.

Every batch of a partition's items is one ``COMMIT`` script, which does nothing
unless the partition's lease still holds this replica's token (fencing), and else,
at once: acknowledges the batch's entries (``XACK``), writes the accumulators (and
kept items) the batch changed, deletes the windows it closed (and items dropped),
writes the watermark, and adds what the batch made (closed windows, updates, late
items) to the output streams (one Redis) or to the partition's outbox (a Cluster:
the partition's relay copies them on). A close by time (idleness, processing time) is
a ``COMMIT`` with no entry. So an input is in the state exactly when it is
acknowledged, whatever instant a replica is killed at.

A replica that takes a partition loads its hash before it delivers any entry of
it (the ones still pending first): what was acknowledged is in the state, what was
not is delivered again. One that loses the lease, or whose commit fails, drops the
partition's state here (the next owner loads it from Redis).

Accumulators are JSON; ``datetime``, ``date`` and ``Decimal`` are written as
``{"$datetime": iso}``, ``{"$date": iso}`` and ``{"$decimal": str}``, an item
(a pydantic model, as ``collect`` of the whole item keeps) as ``{"$item": json}``,
read back with the input's schema.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from time import monotonic
from typing import Any, Protocol

import anyio
import orjson
from pydantic import BaseModel

from ..aggregates import Aggregate
from ..clock import Clock
from ..envelope import Entry, Envelope
from ..errors import WiringError
from ..ports import OutputPort
from ..watermark import Watermark
from ..windowstate import AlignedWindows, CountWindows, SlidingWindows, Store
from .commits import Sends, lua_state_and_sends, state_and_sends
from .connection import RedisConnection
from .leases import Lease
from .link import UNREACHABLE, RedisLink

__all__ = [
    "COMMIT",
    "WATERMARK",
    "Keyed",
    "WindowStore",
    "Windowed",
    "check_json",
    "dump_value",
    "load_value",
]

#: the state hash's field holding the partition's watermark
WATERMARK = b"~watermark"

#: most entries one ``COMMIT`` takes (Lua's ``unpack`` has a stack limit)
COMMIT_CHUNK = 1000

#: KEYS: stream, lease, state, then the output streams (``park`` 0) or the outbox
#: (``park`` 1). ARGV: group, token, park, the number of ids and the ids to XACK, the
#: number of (field, value) pairs to set in the state and the pairs, the number of
#: fields to delete and the fields, the number of targets and their names,
#: then (target number, message) pairs. Nothing happens unless the lease holds
#: ``token``: -1 then, else how many ids were acknowledged.
COMMIT = f"""
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then return -1 end
local park = ARGV[3] == '1'
local i = 4
local n = tonumber(ARGV[i])
i = i + 1
local acked = 0
if n > 0 then acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, i + n - 1)) end
i = i + n
{lua_state_and_sends(3, 4)}
return acked
"""

_TAGS = ("$datetime", "$date", "$decimal", "$item")


def _tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, BaseModel):
        return {"$item": value.model_dump(mode="json")}
    raise TypeError(f"{type(value).__name__} is not JSON")


def dump_value(value: Any) -> bytes:
    """``value`` as JSON bytes, with the tags of the module's description."""
    return orjson.dumps(value, default=_tag, option=orjson.OPT_PASSTHROUGH_DATETIME)


def load_value(data: bytes, item: type[BaseModel] | None = None) -> Any:
    """What ``dump_value`` wrote; ``item`` reads ``$item`` back (else a dict)."""
    return _untag(orjson.loads(data), item)


def _untag(value: Any, item: type[BaseModel] | None) -> Any:
    if isinstance(value, list):
        return [_untag(v, item) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$datetime":
            return datetime.fromisoformat(inner)
        if tag == "$date":
            return date.fromisoformat(inner)
        if tag == "$decimal":
            return Decimal(inner)
        if tag == "$item":
            return inner if item is None else item.model_validate(inner)
    return {k: _untag(v, item) for k, v in value.items()}


def _hashable(value: Any) -> Any:
    """A key read back from JSON: lists become tuples (a key is hashable)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def check_json(name: str, aggregate: Aggregate) -> None:
    """Refuse an aggregate whose empty accumulator does not survive JSON."""
    initial = aggregate.initial()
    try:
        back = aggregate.load(load_value(dump_value(aggregate.dump(initial))))
    except (TypeError, ValueError) as exc:
        back, why = None, f": {exc}"
    else:
        why = f" (it came back as {back!r})"
    if back != initial:
        raise WiringError(
            f"window {name!r}: over Redis its state is kept as JSON, and the "
            f"accumulator of {type(aggregate).__name__} ({initial!r}) is not "
            f"JSON{why}; give the aggregate dump(acc) and load(data) methods"
        )


class Windowed(Protocol):
    """What the store reads and counts of its ``Window`` (runtime/windows.py)."""

    name: str
    store: Store
    aggregate: Aggregate
    schema: type[BaseModel]
    event_time: bool
    time: Callable[[Any], Any] | None
    grace: float
    max_open: int
    every: bool
    clock: Clock
    outputs: dict[str, OutputPort]
    item_schema: type[BaseModel] | None
    closed: int
    late_items: int
    evicted: int
    watermark: Watermark

    @property
    def idle_after(self) -> float:
        """How long a partition is quiet before its watermark moves on."""

    def rearm(self) -> None:
        """Look at the time to close again (the state changed)."""


class Keyed(Protocol):
    """What the store needs of its input (``PartitionedConnection``)."""

    link: RedisLink
    group: str
    streams: list[str]
    key: Callable[[Any], Any] | None

    def held(self, envelope: Envelope) -> tuple[Lease, bytes] | None:
        """The lease an entry was taken under, and its id."""

    def committed(self, lease: Lease, entries: list[Entry]) -> None:
        """The entries were acknowledged (by ``COMMIT``)."""

    def lose(self, lease: Lease, why: str) -> None:
        """Stop reading the partition of ``lease``."""

    def depth(self) -> int:
        """Items read and waiting to be taken (every partition's)."""


@dataclass
class _Partition:
    """One partition's windows and watermark, as loaded under ``lease``."""

    lease: Lease
    store: AlignedWindows | SlidingWindows | CountWindows
    watermark: float = -math.inf
    advanced_at: float = 0.0
    #: windows a load found past the watermark: sent (and deleted) by the next commit
    carried: list[tuple[Any, float, float, Any]] = field(default_factory=list)
    #: a sliding store's items kept since the last commit (field -> item), and the
    #: fields of those it dropped that an earlier commit wrote: the next commit
    #: writes the one and deletes the other
    kept: dict[bytes, Any] = field(default_factory=dict)
    forgotten: list[bytes] = field(default_factory=list)

    def watch(self, store: SlidingWindows) -> None:
        """Record what ``store`` keeps and drops, for the next commit."""
        kept, forgotten = self.kept, self.forgotten

        def keep(key: Any, t: float, seq: int, item: Any) -> None:
            kept[dump_value([t, seq, key])] = item

        def drop(key: Any, items: list[tuple[float, int, Any]]) -> None:
            for t, seq, _ in items:
                name = dump_value([t, seq, key])
                if name in kept:
                    del kept[name]  # never written: nothing to delete
                else:
                    forgotten.append(name)

        store.kept, store.dropped = keep, drop


@dataclass
class _Changes:
    """What one commit writes."""

    entries: list[Entry] = field(default_factory=list)
    ids: list[bytes] = field(default_factory=list)
    dirty: dict[tuple[float, Any], Any] = field(default_factory=dict)
    deleted: list[bytes] = field(default_factory=list)
    #: (port name, item) in the order they were made
    outputs: list[tuple[str, Any]] = field(default_factory=list)
    failed: list[tuple[Entry, Exception]] = field(default_factory=list)


class WindowStore:
    """The state of one window's partitions, kept in Redis (see the module)."""

    def __init__(self, window: Windowed, connection: Keyed) -> None:
        if not isinstance(window.store, AlignedWindows | SlidingWindows | CountWindows):
            raise WiringError(
                f"window {window.name!r}: over Redis only tumbling, hopping, sliding "
                f"and count windows are kept, not {type(window.store).__name__}"
            )
        if isinstance(window.store, SlidingWindows) and window.item_schema is None:
            raise WiringError(
                f"window {window.name!r}: over Redis a sliding window keeps its "
                "recent items in Redis, read back with the input's schema: give "
                "its input a pydantic model"
            )
        check_json(window.name, window.aggregate)
        self.window, self.connection = window, connection
        self.shape = window.store
        self.link = connection.link
        self.partitions: dict[int, _Partition] = {}
        self.lock = anyio.Lock()
        # the script as registered with the client in use (a new one after an outage)
        self._script: tuple[Any, Any] | None = None
        self.targets = {
            name: self._targets(window, port)
            for name, port in window.outputs.items()
            if name in ("out", "late")
        }

    @staticmethod
    def _targets(window: Windowed, port: OutputPort) -> list[RedisConnection]:
        targets: list[RedisConnection] = []
        for connection in port.connections:
            if not isinstance(connection, RedisConnection):
                raise WiringError(
                    f"window {window.name!r}: over Redis its results are written "
                    "in the script that acknowledges its input, so "
                    f"{port.address} must be connected over redis too"
                )
            targets.append(connection)
        return targets

    def state_key(self, partition: int) -> str:
        """The hash holding ``partition``'s windows and watermark."""
        connection = self.connection
        return f"{connection.streams[partition]}.state.{connection.group}"

    @property
    def open(self) -> int:
        """Windows open here, over the partitions held."""
        return sum(p.store.open for p in self.partitions.values())

    # -- ownership ------------------------------------------------------------

    async def load(self, lease: Lease) -> None:
        """Load the partition's state (before any of its entries is delivered)."""
        raw: Any = await self.link.client.hgetall(self.state_key(lease.partition))
        window = self.window
        if isinstance(self.shape, CountWindows):
            self.partitions[lease.partition] = self._load_counts(lease, raw)
            return  # count windows do not close on time: nothing to rearm
        if isinstance(self.shape, SlidingWindows):
            part = self._load_sliding(lease, raw)
        else:
            part = self._load_aligned(lease, raw)
        if part.watermark > -math.inf:
            part.store.close(part.watermark - window.grace, self._carry(part))
        self.partitions[lease.partition] = part
        window.rearm()  # its windows close by time too, items or not

    def _load_aligned(self, lease: Lease, raw: dict[bytes, bytes]) -> _Partition:
        window, shape = self.window, self.shape
        assert isinstance(shape, AlignedWindows)
        store = AlignedWindows(shape.size, shape.hop, window.aggregate)
        part = _Partition(lease, store, advanced_at=window.clock.now())
        load = window.aggregate.load
        for name, value in raw.items():
            if name == WATERMARK:
                part.watermark = float(value)
                continue
            start, key = orjson.loads(name)
            slot = store.slots.get(start)
            if slot is None:
                slot = store.slots[start] = dict[Any, Any]()
                store.starts.append(start)
            slot[_hashable(key)] = load(load_value(value, window.item_schema))
            store.open += 1
        heapq.heapify(store.starts)
        return part

    def _load_sliding(self, lease: Lease, raw: dict[bytes, bytes]) -> _Partition:
        """A partition's sliding windows (fields ``[end, key]``) and kept items
        (fields ``[time, seq, key]``)."""
        window, shape = self.window, self.shape
        assert isinstance(shape, SlidingWindows)
        store = SlidingWindows(shape.size, window.aggregate)
        part = _Partition(lease, store, advanced_at=window.clock.now())
        load, schema = window.aggregate.load, window.item_schema
        windows: list[tuple[Any, float, Any]] = []
        items: list[tuple[Any, float, int, Any]] = []
        for name, value in raw.items():
            if name == WATERMARK:
                part.watermark = float(value)
                continue
            found = orjson.loads(name)
            if len(found) == 2:
                end, key = found
                windows.append((_hashable(key), end, load(load_value(value, schema))))
            else:
                t, seq, key = found
                items.append((_hashable(key), t, seq, load_value(value, schema)))
        store.restore(windows, items)
        part.watch(store)
        return part

    def _load_counts(self, lease: Lease, raw: dict[bytes, bytes]) -> _Partition:
        """A partition's count windows, oldest first (so that the cap closes the
        window opened first, as in memory)."""
        window, shape = self.window, self.shape
        assert isinstance(shape, CountWindows)
        store = CountWindows(shape.count, window.aggregate, shape.closed)
        part = _Partition(lease, store, advanced_at=window.clock.now())
        load, found = window.aggregate.load, list[tuple[Any, list[Any]]]()
        for name, value in raw.items():
            if name == WATERMARK:
                part.watermark = float(value)
                continue
            (key,) = orjson.loads(name)
            acc, items, first, last = load_value(value, window.item_schema)
            found.append((_hashable(key), [load(acc), items, first, last]))
        found.sort(key=lambda pair: float(pair[1][2]))
        store.windows = dict(found)
        store.open = len(found)
        return part

    @staticmethod
    def _carry(part: _Partition) -> Callable[[Any, float, float, Any], None]:
        def carry(key: Any, start: float, end: float, acc: Any) -> None:
            part.carried.append((key, start, end, acc))

        return carry

    def drop(self, lease: Lease) -> None:
        """Forget the partition of ``lease`` (if loaded under it)."""
        part = self.partitions.get(lease.partition)
        if part is not None and part.lease is lease:
            del self.partitions[lease.partition]

    # -- items ----------------------------------------------------------------

    async def take(self, batch: list[Entry]) -> list[tuple[Entry, Exception]]:
        """Add a batch: per partition, one commit. Returns the items that failed
        (no key or time, or the aggregate raised): acknowledged, to report."""
        by_lease: dict[int, tuple[Lease, list[Entry], list[bytes]]] = {}
        held = self.connection.held
        for entry in batch:
            found = held(entry[1])
            if found is None:
                continue  # not (or no longer) held here: delivered again elsewhere
            lease, entry_id = found
            group = by_lease.get(id(lease))
            if group is None:
                group = by_lease[id(lease)] = (lease, list[Entry](), list[bytes]())
            group[1].append(entry)
            group[2].append(entry_id)
        failed: list[tuple[Entry, Exception]] = []
        for lease, entries, ids in by_lease.values():
            for at in range(0, len(entries), COMMIT_CHUNK):
                chunk = entries[at : at + COMMIT_CHUNK]
                async with self.lock:
                    part = self.partitions.get(lease.partition)
                    if part is None or part.lease is not lease or lease.lost:
                        continue  # left pending: its next owner delivers them
                    changes = self._add(part, chunk, ids[at : at + COMMIT_CHUNK])
                    if await self._commit(part, changes):
                        failed += changes.failed
        return failed

    def _add(
        self, part: _Partition, entries: list[Entry], ids: list[bytes]
    ) -> _Changes:
        """The synchronous core: the batch's items into the partition's windows."""
        window = self.window
        changes = _Changes(entries=entries, ids=ids)
        store, grace, max_open = part.store, window.grace, window.max_open
        closed, updated = self._recorders(changes)
        key = self.connection.key
        assert key is not None
        if isinstance(store, CountWindows):
            store.closed = closed  # a count window closes in ``add``, when full
        watermark = part.watermark
        now = 0.0
        if not window.event_time:  # processing time: one reading per batch
            now = window.clock.wall()
            if now > watermark:
                watermark = now
                store.close(watermark, closed)
        for entry in entries:
            item = entry[1].item
            try:
                k = key(item)
                t = now
                if window.event_time:
                    assert window.time is not None
                    value = window.time(item)
                    t = value.timestamp() if isinstance(value, datetime) else value
                    if t > watermark:
                        watermark = t
                        if t - grace >= store.next_close:
                            store.close(t - grace, closed)
                if store.open >= max_open:
                    window.evicted += 1
                    store.evict(closed)
                if not store.add(k, t, item, updated):
                    window.late_items += 1
                    changes.outputs.append(("late", item))
            except Exception as exc:  # no key or time, or the aggregate raised
                changes.failed.append((entry, exc))
        self._advance(part, watermark)
        return changes

    def _advance(self, part: _Partition, watermark: float) -> None:
        window = self.window
        if watermark > part.watermark:
            part.watermark = watermark
            part.advanced_at = window.clock.now()
            mark = window.watermark
            if watermark > mark.value:
                mark.value, mark.advanced_at = watermark, part.advanced_at

    def _recorders(self, changes: _Changes) -> tuple[
        Callable[[Any, float, float, Any], None],
        Callable[[Any, float, float, Any], None],
    ]:
        window = self.window
        dirty, outputs, deleted = changes.dirty, changes.outputs, changes.deleted
        every, result, schema = window.every, window.aggregate.result, window.schema

        def made(key: Any, start: float, end: float, acc: Any) -> None:
            outputs.append(
                (
                    "out",
                    schema(
                        key=key,
                        start=datetime.fromtimestamp(start, UTC),
                        end=datetime.fromtimestamp(end, UTC),
                        value=result(acc),
                    ),
                )
            )

        counting = isinstance(self.shape, CountWindows)
        # a sliding window is named by its end (one per item time), exact in JSON
        # where ``end - size`` need not be
        by_end = isinstance(self.shape, SlidingWindows)

        def closed(key: Any, start: float, end: float, acc: Any) -> None:
            window.closed += 1
            at = end if by_end else start
            dirty.pop((at, key), None)
            deleted.append(dump_value([key] if counting else [at, key]))
            if not every:
                made(key, start, end, acc)

        def updated(key: Any, start: float, end: float, acc: Any) -> None:
            dirty[(end if by_end else start, key)] = acc
            if every:
                made(key, start, end, acc)

        return closed, updated

    # -- time -----------------------------------------------------------------

    def deadline(self) -> float:
        """When (``clock.now()``) a partition has windows to close by time."""
        window, clock = self.window, self.window.clock
        deadline = math.inf
        for part in self.partitions.values():
            if not part.store.open or isinstance(part.store, CountWindows):
                continue  # count windows do not close on time
            if window.event_time:
                when = part.advanced_at + window.idle_after
            else:
                when = clock.now() + max(0.0, part.store.closes_at() - clock.wall())
            deadline = min(deadline, when)
        return deadline

    async def on_time(self) -> None:
        """Close by the clock what is due: event-time windows of a partition quiet
        for ``idle_after`` (its watermark moves on by the quiet time), and
        processing-time windows at their end; each partition in one commit."""
        window, clock = self.window, self.window.clock
        for part in list(self.partitions.values()):
            async with self.lock:
                if self.partitions.get(part.lease.partition) is not part:
                    continue
                store = part.store
                if not store.open or isinstance(store, CountWindows):
                    continue
                now = clock.now()
                if window.event_time:
                    if now < part.advanced_at + window.idle_after:
                        continue
                    if self.connection.depth():
                        # Items wait here to be added: the input is not quiet, the
                        # process was busy (moving on now would make them late).
                        part.advanced_at = now
                        continue
                    watermark = part.watermark + (now - part.advanced_at)
                else:
                    if clock.wall() < store.closes_at():
                        continue
                    watermark = max(clock.wall(), store.closes_at())
                changes = _Changes()
                closed, _ = self._recorders(changes)
                store.close(watermark - window.grace, closed)
                part.watermark = watermark
                part.advanced_at = now
                window.watermark.value = max(window.watermark.value, watermark)
                await self._commit(part, changes)

    # -- the script -----------------------------------------------------------

    async def _commit(self, part: _Partition, changes: _Changes) -> bool:
        """Run ``COMMIT`` for ``changes``; False (and the partition dropped, its
        lease given up) when the lease has passed on or Redis did not answer."""
        lease = part.lease
        if part.carried:
            closed, _ = self._recorders(changes)
            for window in part.carried:
                closed(*window)
            part.carried.clear()
        keys, args = self._script_input(part, changes)
        connection = self.connection
        try:
            client = self.link.client
            if self._script is None or self._script[0] is not client:
                self._script = (client, client.register_script(COMMIT))
            script = self._script[1]
            acked = int(await script(keys=keys, args=args, client=client))
        except (*UNREACHABLE, TimeoutError) as exc:
            # Whether it ran or not, the partition's state in Redis is whole: the
            # next grant (here or elsewhere) loads it and goes on from there.
            acked, why = -1, f"a commit of its window state failed: {exc!r}"
        else:
            why = "its window state's commit found another replica's lease"
        if acked < 0:
            self.drop(lease)
            connection.lose(lease, why)
            return False
        connection.committed(lease, changes.entries)
        return True

    def _script_input(
        self, part: _Partition, changes: _Changes
    ) -> tuple[list[str], list[Any]]:
        window, connection = self.window, self.connection
        dump = window.aggregate.dump
        pairs: list[Any] = []
        store = part.store
        if isinstance(store, CountWindows):
            for _, key in changes.dirty:
                acc, items, first, last = store.windows[key]
                pairs += [
                    dump_value([key]),
                    dump_value([dump(acc), items, first, last]),
                ]
        else:
            for (at, key), acc in changes.dirty.items():
                pairs += [dump_value([at, key]), dump_value(dump(acc))]
        # A window closed and opened again in one commit (a count window, or one
        # the cap closed early): the script deletes after it sets, so not this one.
        written = set(pairs[::2])
        deleted = [name for name in changes.deleted if name not in written]
        # A sliding store's items: those kept since the last commit and still kept,
        # and those dropped that an earlier commit wrote (one kept and dropped in
        # between is in neither).
        for name, item in part.kept.items():
            pairs += [name, dump_value(item)]
        deleted += part.forgotten
        part.kept.clear()
        part.forgotten.clear()
        if part.watermark > -math.inf:
            pairs += [WATERMARK, repr(part.watermark)]
        sends, now = Sends(), monotonic()
        for port, item in changes.outputs:
            sends.add(self.targets.get(port, []), item, now)
        partition = part.lease.partition
        stream = connection.streams[partition]
        park = self.link.cluster
        keys = [stream, part.lease.key, self.state_key(partition)]
        keys += [part.lease.outbox] if park else sends.names
        args: list[Any] = [connection.group, part.lease.token, int(park)]
        args += [len(changes.ids), *changes.ids]
        return keys, args + state_and_sends(pairs, deleted, sends)
