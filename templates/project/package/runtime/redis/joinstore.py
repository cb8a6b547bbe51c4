"""A join's state over two keyed Redis connections: per partition, in Redis.

A ``Join`` whose ``left`` and ``right`` inputs are keyed Redis connections with the
same number of partitions keeps, per partition ``p``, one state for both inputs:
the items it holds for a partner, of both sides, and the partition's watermark, in
one hash, ``<left stream of p>.state.<left group>``: one field per held item
(``l<id>`` or ``r<id>``, ``<id>`` the item's stream id on its side) whose value is
``[key, time, paired, item]`` as JSON, and the field ``~watermark``. A key hashes
to the same partition on both connections (``partition_of`` of its canonical
bytes), so partition ``p`` of the left and partition ``p`` of the right hold the
same keys, and every pair is found within one partition.

The partition is processed only by a replica holding BOTH leases, its left
input's and its right input's ``p`` (rendezvous ownership weighs
``member/partition``, whatever the stream, so with the same live members both
connections give ``p`` to the same replica); an item delivered under one lease
waits here until the other is held too. Every batch of a partition's items is one
``COMMIT`` script, which does nothing unless both leases still hold this
replica's tokens (fencing), and else, at once: acknowledges the batch's entries of
either side (``XACK``), writes the items it holds and the watermark, deletes the
items it dropped (expired, evicted, or paired and past ``within``), and adds what
the batch made (the pairs ``match`` returned, the items dropped unpaired) to the
output streams. So an input is in the state, and its pairs are out, exactly when it
is acknowledged, whatever instant a replica is killed at.

The partition's state is read from Redis once both leases are held (their tokens
are newer than any earlier holder's, whose commits are refused from then on), and
before any entry of either side is added. A replica handing one lease over (the
assignment, a stop) commits what it took while it still holds both; once either
lease has ended here, it drops the partition's state and hands the other over too:
what that side took and could not commit is left pending (``forget``), its reader
settles and releases the lease, and the next holder of both delivers it again. A
commit refused (a token passed on) or unanswered gives both leases up at once.

On a Redis Cluster the streams of partition ``p`` of both inputs share one hash
tag, ``{<prefix><service>.<join>.p<n>}`` (``RedisLink.tagged``; the inputs are
``JoinPort``s, which the transport asks), and so do their leases, fences and the
state hash: one slot, one script. What the commit makes is parked in the left
lease's outbox (``.outbox.<left group>``), and the left partition's relay copies
it on to the output streams (other slots): at least once there, exactly once in
the state.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from inspect import isawaitable
from time import monotonic
from typing import Any, Protocol

import anyio

from ..clock import Clock
from ..envelope import Entry, Envelope
from ..errors import WiringError
from ..joinstate import SIDES, Held, JoinState, Side
from ..ports import InputPort, OutputPort
from ..watermark import TimeReader, Watermark
from .commits import Sends, lua_state_and_sends, state_and_sends
from .connection import RedisConnection
from .leases import Lease
from .link import UNREACHABLE, RedisLink
from .windowstore import dump_value, load_value

__all__ = ["COMMIT_JOIN", "WATERMARK", "JoinInput", "JoinStore", "Joined"]

#: the state hash's field holding the partition's watermark
WATERMARK = b"~watermark"

#: most entries one ``COMMIT_JOIN`` takes (Lua's ``unpack`` has a stack limit)
COMMIT_CHUNK = 1000

#: KEYS: left stream, right stream, left lease, right lease, state, then the output
#: streams (``park`` 0) or the left lease's outbox (``park`` 1: a Cluster). ARGV:
#: left group, right group, left token, right token, park, the number of left ids
#: and the ids to XACK, the same for the right, the number of (field, value) pairs
#: to set in the state and the pairs, the number of fields to delete and the
#: fields, the number of outputs and their names, then (output number, message)
#: pairs. Nothing happens unless both leases hold their tokens: -1 then, else how
#: many ids were acknowledged.
COMMIT_JOIN = f"""
if redis.call('HGET', KEYS[3], 'token') ~= ARGV[3] then return -1 end
if redis.call('HGET', KEYS[4], 'token') ~= ARGV[4] then return -1 end
local park = ARGV[5] == '1'
local i = 6
local acked = 0
for side = 1, 2 do
  local n = tonumber(ARGV[i])
  i = i + 1
  if n > 0 then
    acked = acked + redis.call('XACK', KEYS[side], ARGV[side],
      unpack(ARGV, i, i + n - 1))
  end
  i = i + n
end
{lua_state_and_sends(5, 6)}
return acked
"""

_PREFIX: dict[Side, bytes] = {"left": b"l", "right": b"r"}
_OTHER: dict[Side, Side] = {"left": "right", "right": "left"}


class Joined(Protocol):
    """What the store reads and counts of its ``Join`` (runtime/joins.py)."""

    name: str
    within: float
    grace: float
    max_buffered: int
    times: dict[Side, TimeReader] | None
    clock: Clock
    watermark: Watermark
    inputs: dict[str, InputPort]
    outputs: dict[str, OutputPort]
    matched_pairs: int
    unmatched_items: int
    late_items: int

    def match(self, left: Any, right: Any) -> Any:
        """The item a pair makes (None: dropped)."""

    def note_evicted(self) -> None:
        """An item was dropped early at the cap (counted, one warning)."""

    def rearm(self) -> None:
        """Look at the time to expire again (the state changed)."""


class JoinInput(Protocol):
    """What the store needs of each input (``PartitionedConnection``)."""

    link: RedisLink
    group: str
    streams: list[str]
    partitions: int
    key: Callable[[Any], Any] | None

    def held(self, envelope: Envelope) -> tuple[Lease, bytes] | None:
        """The lease an entry was taken under, and its id."""

    def committed(self, lease: Lease, entries: list[Entry]) -> None:
        """The entries were acknowledged (by ``COMMIT_JOIN``)."""

    def lose(self, lease: Lease, why: str) -> None:
        """Stop reading the partition of ``lease``."""

    def give_up(self, lease: Lease) -> None:
        """Hand the partition of ``lease`` over: settle, then release."""

    def forget(self, lease: Lease, entries: list[Entry]) -> None:
        """Leave ``entries`` pending: they are not acknowledged here."""

    def depth(self) -> int:
        """Items read and waiting to be taken (every partition's)."""


@dataclass
class _Item:
    """What a held item keeps: its field in the state hash, key and item."""

    name: bytes
    key: Any
    item: Any


@dataclass
class _Changes:
    """What one commit writes."""

    entries: dict[Side, list[Entry]] = field(
        default_factory=lambda: {"left": list[Entry](), "right": list[Entry]()}
    )
    ids: dict[Side, list[bytes]] = field(
        default_factory=lambda: {"left": list[bytes](), "right": list[bytes]()}
    )
    dirty: dict[bytes, Held] = field(default_factory=dict)
    deleted: list[bytes] = field(default_factory=list)
    #: (port name, item or what an ``async def match`` returned), in order made
    outputs: list[tuple[str, Any]] = field(default_factory=list)
    failed: list[tuple[Entry, Exception]] = field(default_factory=list)
    #: the entry being added (what a failure of ``match`` is reported on)
    current: Entry | None = None


def _no_leases() -> dict[Side, Lease | None]:
    """No lease held of either side (typed: the checkers cannot infer it)."""
    return {"left": None, "right": None}


def _entries() -> list[tuple[Entry, bytes]]:
    """An empty list of (entry, id) (typed: the checkers cannot infer ``[]``)."""
    return []


@dataclass
class _Partition:
    """One partition: the leases held of it, and (both held) its state."""

    leases: dict[Side, Lease | None] = field(default_factory=_no_leases)
    #: the sides whose lease is being handed over (their readers settle, then go)
    leaving: set[Side] = field(default_factory=set[Side])
    state: JoinState | None = None
    watermark: float = -math.inf
    advanced_at: float = 0.0
    #: entries delivered and not yet committed, per side: (entry, id)
    waiting: dict[Side, list[tuple[Entry, bytes]]] = field(
        default_factory=lambda: {"left": _entries(), "right": _entries()}
    )
    changes: _Changes = field(default_factory=_Changes)

    def whole(self) -> bool:
        """Both leases held and still usable as far as this replica knows."""
        return all(
            lease is not None and not lease.lost for lease in self.leases.values()
        )


class JoinStore:
    """The state of one join's partitions, kept in Redis (see the module)."""

    def __init__(self, join: Joined) -> None:
        self.join = join
        self.inputs: dict[Side, JoinInput] = {}
        self.partitions: dict[int, _Partition] = {}
        self.lock = anyio.Lock()
        self._script: tuple[Any, Any] | None = None
        self.targets: dict[str, list[RedisConnection]] = {}
        #: items that failed in a commit no input loop ran: reported by the next
        self.failed: list[tuple[Side, Entry, Exception]] = []

    def attach(self, side: Side, connection: JoinInput) -> None:
        """``connection`` carries the ``side`` input (one per side)."""
        name = self.join.name
        if side in self.inputs:
            raise WiringError(
                f"join {name!r}: over Redis each input takes one connection"
            )
        self.inputs[side] = connection

    def check(self) -> None:
        """Refuse what one script per partition cannot keep exact (at setup)."""
        join, name = self.join, self.join.name
        if sorted(self.inputs) != ["left", "right"]:
            raise WiringError(
                f"join {name!r}: its state is kept in Redis when both inputs come "
                "over keyed Redis connections; connect both over redis (or both "
                "in memory)"
            )
        left, right = self.inputs["left"], self.inputs["right"]
        if left.partitions != right.partitions:
            raise WiringError(
                f"join {name!r}: over Redis its inputs must have the same number of "
                f"partitions (left {left.partitions}, right {right.partitions}): "
                "partition p of each holds the same keys, joined by one replica"
            )
        if join.times is None:
            raise WiringError(
                f"join {name!r}: over Redis it joins on event time only (set "
                "time): a processing-time join's expiry needs one clock, and its "
                "state moves between replicas"
            )
        for port_name, port in join.outputs.items():
            if port_name == "errors":
                continue
            self.targets[port_name] = self._targets(port)

    def _targets(self, port: OutputPort) -> list[RedisConnection]:
        targets: list[RedisConnection] = []
        for connection in port.connections:
            if not isinstance(connection, RedisConnection):
                raise WiringError(
                    f"join {self.join.name!r}: over Redis what it makes is written "
                    "in the script that acknowledges its inputs, so "
                    f"{port.address} must be connected over redis too"
                )
            targets.append(connection)
        return targets

    def state_key(self, partition: int) -> str:
        """The hash holding ``partition``'s held items and watermark."""
        left = self.inputs["left"]
        return f"{left.streams[partition]}.state.{left.group}"

    @property
    def held(self) -> int:
        """Items held here, over the partitions loaded."""
        return sum(p.state.held for p in self.partitions.values() if p.state)

    # -- ownership ------------------------------------------------------------

    async def granted(self, side: Side, lease: Lease) -> None:
        """The ``side`` input's lease of a partition was granted here: once the
        other side's is too, the partition's state is loaded, and what the other
        side delivered meanwhile is committed (no item of this side may come to
        set it going: all may be acknowledged already)."""
        part = self.partitions.setdefault(lease.partition, _Partition())
        part.leases[side] = lease
        part.leaving.discard(side)
        part.state = None  # read again under the new pair of tokens
        part.waiting[side].clear()
        if part.whole():
            async with self.lock:
                self.failed += await self._run(part)

    def leaving(self, side: Side, lease: Lease) -> None:
        """The ``side`` input hands the partition over (another member's now, or
        the service stops): with both leases held what it took is committed as
        usual; else it is left pending (``_forget``), so that the reader settles
        and releases the lease."""
        part = self.partitions.get(lease.partition)
        if part is None or part.leases[side] is not lease:
            return
        part.leaving.add(side)
        if not part.whole():
            self._forget(part, side)

    def drop(self, side: Side, lease: Lease) -> None:
        """The ``side`` input's lease ended here: forget the partition, and hand
        the other side's lease of it over too (what it took and did not commit is
        left pending: the next holder of both delivers it again)."""
        part = self.partitions.get(lease.partition)
        if part is None or part.leases[side] is not lease:
            return
        part.leases[side] = None
        part.state = None
        part.waiting[side].clear()
        other = _OTHER[side]
        paired = part.leases[other]
        if paired is not None and not paired.lost:
            self.inputs[other].give_up(paired)
        self._forget(part, other)

    def _forget(self, part: _Partition, side: Side) -> None:
        """Leave what ``side`` delivered and did not commit pending in Redis."""
        lease, waiting = part.leases[side], part.waiting[side]
        if lease is not None and waiting:
            self.inputs[side].forget(lease, [entry for entry, _ in waiting])
        waiting.clear()

    # -- items ----------------------------------------------------------------

    async def take(
        self, side: Side, batch: list[Entry]
    ) -> list[tuple[Side, Entry, Exception]]:
        """Add a batch of ``side``: per partition held on both sides, one commit
        (else it waits for the other lease). Returns the items that failed (no
        key or time, or ``match`` raised), of either side: acknowledged, to
        report."""
        held = self.inputs[side].held
        touched: dict[int, _Partition] = {}
        for entry in batch:
            found = held(entry[1])
            if found is None:
                continue  # not (or no longer) held here: delivered again elsewhere
            lease, entry_id = found
            part = self.partitions.get(lease.partition)
            if part is None or part.leases[side] is not lease:
                continue
            part.waiting[side].append((entry, entry_id))
            if side in part.leaving and not part.whole():
                self._forget(part, side)  # it will not be whole here again
                continue
            touched[lease.partition] = part
        failed, self.failed = self.failed, list[tuple[Side, Entry, Exception]]()
        for part in touched.values():
            async with self.lock:
                failed += await self._run(part)
        return failed

    async def _run(self, part: _Partition) -> list[tuple[Side, Entry, Exception]]:
        """Commit what waits in ``part``, once both leases are held and its state
        loaded."""
        failed: list[tuple[Side, Entry, Exception]] = []
        while part.whole() and (part.waiting["left"] or part.waiting["right"]):
            if part.state is None and not await self._load(part):
                return failed
            for side in SIDES:
                waiting = part.waiting[side]
                chunk, part.waiting[side] = (
                    waiting[:COMMIT_CHUNK],
                    waiting[COMMIT_CHUNK:],
                )
                if not chunk:
                    continue
                changes = self._add(part, side, chunk)
                if not await self._commit(part, changes):
                    return failed
                failed += [(side, entry, exc) for entry, exc in changes.failed]
        return failed

    async def _load(self, part: _Partition) -> bool:
        """Read the partition's state (both leases held); False: Redis did not
        answer, and both leases are given up."""
        lease = part.leases["left"]
        assert lease is not None
        join, leases = self.join, dict(part.leases)
        try:
            raw: Any = await self.inputs["left"].link.client.hgetall(
                self.state_key(lease.partition)
            )
        except (*UNREACHABLE, TimeoutError) as exc:
            self._lose(part, f"its join state could not be loaded: {exc!r}")
            return False
        if part.leases != leases or not part.whole():
            return False  # a lease ended or passed meanwhile: read again at the next
        state = JoinState(join.within, self._paired(part), self._unmatched(part))
        state.dropped = self._dropped(part)
        part.watermark = -math.inf
        items: list[tuple[float, bytes, Side, Held]] = []
        schemas = self._schemas()
        for name, value in raw.items():
            if name == WATERMARK:
                part.watermark = float(value)
                continue
            side: Side = "left" if name[:1] == b"l" else "right"
            key, t, paired, item = load_value(value, schemas[side])
            held = Held(float(t), _Item(name, _hashable(key), item))
            held.matched = bool(paired)
            items.append((held.t, name, side, held))
        items.sort(key=lambda found: (found[0], found[1]))
        for t, _, side, held in items:
            state.restore(side, held.payload.key, t, held)
        part.state = state
        part.advanced_at = join.clock.now()
        join.rearm()
        return True

    def _schemas(self) -> dict[Side, Any]:
        """What each side's items are read back as (a pydantic model, or None)."""
        found: dict[Side, Any] = {}
        for side in SIDES:
            schema = self.join.inputs[side].schema
            found[side] = schema if hasattr(schema, "model_validate") else None
        return found

    def _paired(self, part: _Partition) -> Callable[[Held, Held, Side], None]:
        join = self.join

        def paired(left: Held, right: Held, arriving: Side) -> None:
            changes = part.changes
            join.matched_pairs += 1
            # the one already held is now paired: its record says so
            other = right if arriving == "left" else left
            changes.dirty[other.payload.name] = other
            try:
                result = join.match(left.payload.item, right.payload.item)
            except Exception as exc:  # the user's match raised: on the arriving item
                if changes.current is not None:
                    changes.failed.append((changes.current, exc))
                return
            changes.outputs.append(("out", result))

        return paired

    def _unmatched(self, part: _Partition) -> Callable[[Side, Held], None]:
        join = self.join

        def unmatched(side: Side, held: Held) -> None:
            join.unmatched_items += 1
            part.changes.outputs.append((f"unmatched_{side}", held.payload.item))

        return unmatched

    def _dropped(self, part: _Partition) -> Callable[[Side, Held], None]:
        def dropped(side: Side, held: Held) -> None:
            changes = part.changes
            name = held.payload.name
            changes.dirty.pop(name, None)
            changes.deleted.append(name)

        return dropped

    def _add(
        self, part: _Partition, side: Side, chunk: list[tuple[Entry, bytes]]
    ) -> _Changes:
        """The synchronous core: a chunk of one side into the partition's state."""
        join = self.join
        state = part.state
        assert state is not None and join.times is not None
        changes = part.changes = _Changes()
        key, time = self.inputs[side].key, join.times[side]
        assert key is not None
        grace, cap, prefix = join.grace, join.max_buffered, _PREFIX[side]
        watermark = part.watermark
        for entry, entry_id in chunk:
            changes.entries[side].append(entry)
            changes.ids[side].append(entry_id)
            changes.current = entry
            item = entry[1].item
            try:
                k, t = key(item), time(item)
                if t > watermark:
                    watermark = t
                    state.expire(t - grace)
                kept = _Item(prefix + entry_id, k, item)
                if t < watermark - grace:
                    join.late_items += 1
                    self._unmatched(part)(side, Held(t, kept))
                    continue
                if state.held >= cap:
                    join.note_evicted()
                    state.evict()
                changes.dirty[kept.name] = state.add(side, k, t, kept)
            except Exception as exc:  # no key or time
                changes.failed.append((entry, exc))
        changes.current = None
        self._advance(part, watermark)
        return changes

    def _advance(self, part: _Partition, watermark: float) -> None:
        join = self.join
        if watermark > part.watermark:
            part.watermark = watermark
            part.advanced_at = join.clock.now()
            mark = join.watermark
            if watermark > mark.value:
                mark.value, mark.advanced_at = watermark, part.advanced_at

    # -- time -----------------------------------------------------------------

    def deadline(self) -> float:
        """When (``clock.now()``) a quiet partition's watermark moves on."""
        idle = self.join.watermark.idle_after
        return min(
            (
                p.advanced_at + idle
                for p in self.partitions.values()
                if p.state is not None and p.state.held and p.whole()
            ),
            default=math.inf,
        )

    async def on_time(self) -> None:
        """Expire what a partition quiet for ``idle_after`` holds (its watermark
        moves on by the quiet time), each partition in one commit."""
        join, clock = self.join, self.join.clock
        for part in list(self.partitions.values()):
            async with self.lock:
                state = part.state
                if state is None or not state.held or not part.whole():
                    continue
                now = clock.now()
                if now < part.advanced_at + join.watermark.idle_after:
                    continue
                if any(c.depth() for c in self.inputs.values()):
                    # items wait here to be added: the inputs are not quiet
                    part.advanced_at = now
                    continue
                watermark = part.watermark + (now - part.advanced_at)
                changes = part.changes = _Changes()
                state.expire(watermark - join.grace)
                part.watermark, part.advanced_at = watermark, now
                join.watermark.value = max(join.watermark.value, watermark)
                await self._commit(part, changes)

    # -- the script -----------------------------------------------------------

    def _lose(self, part: _Partition, why: str) -> None:
        """Give both leases of ``part`` up, and forget its state."""
        for side in SIDES:
            lease = part.leases[side]
            if lease is not None:
                self.inputs[side].lose(lease, why)
        part.state = None
        for waiting in part.waiting.values():
            waiting.clear()

    async def _commit(self, part: _Partition, changes: _Changes) -> bool:
        """Run ``COMMIT_JOIN`` for ``changes``; False (both leases given up, the
        state forgotten) when a lease has passed on or Redis did not answer."""
        # the leases it runs under (a drop or a grant meanwhile changes the part's)
        leases = dict(part.leases)
        pending = [o for o in changes.outputs if isawaitable(o[1])]
        if pending:
            await self._await_matches(changes)
        keys, args = self._script_input(part, changes)
        link = self.inputs["left"].link
        try:
            client = link.client
            if self._script is None or self._script[0] is not client:
                self._script = (client, client.register_script(COMMIT_JOIN))
            acked = int(await self._script[1](keys=keys, args=args, client=client))
        except (*UNREACHABLE, TimeoutError) as exc:
            acked, why = -1, f"a commit of its join state failed: {exc!r}"
        else:
            why = "its join state's commit found another replica's lease"
        if acked < 0:
            self._lose(part, why)
            return False
        for side in SIDES:
            lease = leases[side]
            # (the left's always: on a Cluster its relay copies what was parked)
            if lease is not None and (changes.entries[side] or side == "left"):
                self.inputs[side].committed(lease, changes.entries[side])
        return True

    async def _await_matches(self, changes: _Changes) -> None:
        """Await what an ``async def match`` returned (a failure: on no entry,
        logged as the commit's)."""
        done: list[tuple[str, Any]] = []
        for port, result in changes.outputs:
            if isawaitable(result):
                awaitable: Awaitable[Any] = result
                try:
                    result = await awaitable
                except Exception as exc:  # the user's match raised
                    if changes.entries["left"] or changes.entries["right"]:
                        side: Side = "left" if changes.entries["left"] else "right"
                        changes.failed.append((changes.entries[side][-1], exc))
                    continue
            done.append((port, result))
        changes.outputs = done

    def _script_input(
        self, part: _Partition, changes: _Changes
    ) -> tuple[list[str], list[Any]]:
        pairs: list[Any] = []
        for name, held in changes.dirty.items():
            item: _Item = held.payload
            pairs += [name, dump_value([item.key, held.t, held.matched, item.item])]
        written = set(changes.dirty)
        deleted = [name for name in changes.deleted if name not in written]
        if part.watermark > -math.inf:
            pairs += [WATERMARK, repr(part.watermark)]
        sends, now = Sends(), monotonic()
        for port, result in changes.outputs:
            if result is not None:  # (None: match dropped the pair)
                sends.add(self.targets.get(port, []), result, now)
        left, right = self.inputs["left"], self.inputs["right"]
        lease_l, lease_r = part.leases["left"], part.leases["right"]
        assert lease_l is not None and lease_r is not None
        p, park = lease_l.partition, left.link.cluster
        keys = [left.streams[p], right.streams[p], lease_l.key, lease_r.key]
        keys += [self.state_key(p), *([lease_l.outbox] if park else sends.names)]
        args: list[Any] = [left.group, right.group, lease_l.token, lease_r.token]
        args.append(int(park))
        for side in SIDES:
            args += [len(changes.ids[side]), *changes.ids[side]]
        return keys, args + state_and_sends(pairs, deleted, sends)


def _hashable(value: Any) -> Any:
    """A key read back from JSON: lists become tuples (a key is hashable)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
