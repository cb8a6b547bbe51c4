"""Keyed state (``state: true``) over a keyed Redis connection: per partition, in Redis.

A stateful transformer, filter, router or sink (``keyedstate.Stateful``) whose input
is a keyed Redis connection keeps, per partition of that connection, one field per
key in a hash next to the partition's stream (same hash tag, so same slot on a
Cluster): ``<stream>.state.<group>``, field ``[key]`` (JSON), value the key's state
as JSON (a pydantic model's ``model_dump_json``, or the dict, with the tags of
``windowstore.dump_value``).

The state an item leaves, and the outputs the component made of it over Redis, are
written by the script that acknowledges that item (``ACK_STATE``), which does
nothing unless the partition's lease still holds this replica's token (fencing): an
input is in the state, and its outputs are written, exactly when it is
acknowledged, whatever instant a replica is killed at (exactly once for the state;
for the outputs too on one Redis). The outputs are taken from the component's
publishers (``RedisPublisher.take_by``, by the input each was made of) instead of
being queued there: on one Redis the script ``XADD``s them to their streams (a keyed
output: its partition's stream); on a Cluster those streams are in other slots, so
the script parks them in the input partition's outbox (as ``PARK``), which the
partition's relay copies on (at least once on the wire). Outputs to a connection in
memory cannot be in a script: they go on at once, at least once (a kill before the
script has them made again). Under ``max_lag`` of an output stream (one Redis) a
script runs only when each bounded group of the streams it writes has room for its
outputs, or has nothing unread or pending (a script carries at most the smallest
``max_lag`` of outputs, unless one entry alone has more: so the bound holds); else
it does nothing (``ROOM``) and is tried again, and meanwhile the partition reads no
more once ``buffer_size`` of its entries wait for it. On a Cluster the relay's
copies are not bounded (as a window's results).
Entries of a stateful input are acknowledged in the order they were settled, so the
state of a key's later item is never written before its earlier item is
acknowledged.

A replica that takes a partition loads its hash before it delivers any entry of it
(the pending ones first); one that loses the lease drops the partition's keys here,
and an item taken under a lost lease (still in this process's buffer) changes no
state: the next owner delivers it again.

``max_keys`` bounds the keys held in memory, over the partitions held here; Redis
holds the same keys: past the cap, a new key evicts the least recently used key of
its own partition, here and in Redis (deleted by the script that acknowledges the
item that evicted it), and that key starts again from its initial state when it
comes back, as in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel

from ..keystates import KeyedState
from .leases import TO, Lease, Leases
from .link import RedisLink
from .partitions import partition_of
from .publisher import RedisPublisher
from .windowstore import dump_value, load_value
from .wire import FIELD

__all__ = [
    "ACK_STATE",
    "LOST",
    "ROOM",
    "Acknowledged",
    "Output",
    "RedisKeyedState",
    "StateWrite",
]

#: most ids one ``ACK_STATE`` takes (Lua's ``unpack`` has a stack limit)
ACK_STATE_CHUNK = 1000

#: KEYS: stream, lease, dead-letter stream, state hash, then the output streams
#: (``park`` 0) or the outbox (``park`` 1). ARGV: group, token, park, the number of
#: ids and the ids to XACK, the number of (field, value) pairs and the pairs (an
#: empty value deletes the field), the number of output streams and their names, the
#: number of bounds and the (stream number, group, max_lag) triples, the number of
#: outputs and the (stream number, message) pairs, then (id, dead letter) pairs.
#: Nothing happens unless the lease holds ``token`` (``{-1}`` then), nor while a
#: bounded group is full (``{-2}``: ``ROOM`` in ``Acknowledged``); else ``{acked,
#: the last id added to each output stream ('' for none)}``.
ACK_STATE = f"""
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then return {{-1}} end
local park = ARGV[3] == '1'
local i = 4
local n = tonumber(ARGV[i])
local ids = i + 1
i = ids + n
local m = tonumber(ARGV[i])
local fields = i + 1
i = fields + 2 * m
local t = tonumber(ARGV[i])
local names = i
i = names + 1 + t
local b = tonumber(ARGV[i])
local bounds = i + 1
i = bounds + 3 * b
local k = tonumber(ARGV[i])
local outputs = i + 1
i = outputs + 2 * k
if b > 0 then
  local per = {{}}
  for j = 0, k - 1 do
    local s = tonumber(ARGV[outputs + 2 * j])
    per[s] = (per[s] or 0) + 1
  end
  for j = 0, b - 1 do
    local s = tonumber(ARGV[bounds + 3 * j])
    local group, most = ARGV[bounds + 3 * j + 1], tonumber(ARGV[bounds + 3 * j + 2])
    local stream = KEYS[4 + s]
    local used = -1
    if redis.call('EXISTS', stream) == 1 then
      local length = redis.call('XLEN', stream)
      for _, row in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local info = {{}}
        for r = 1, #row, 2 do info[row[r]] = row[r + 1] end
        if info['name'] == group then
          used = length
          if info['lag'] then used = info['lag'] + info['pending'] end
        end
      end
      if used < 0 then
        redis.call('XGROUP', 'CREATE', stream, group, '0')
        used = length
      end
    else
      redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
      used = 0
    end
    if used > 0 and used + (per[s] or 0) > most then return {{-2}} end
  end
end
local acked = 0
if n > 0 then acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, ids, ids + n - 1)) end
for j = fields, fields + 2 * m - 1, 2 do
  if ARGV[j + 1] == '' then
    redis.call('HDEL', KEYS[4], ARGV[j])
  else
    redis.call('HSET', KEYS[4], ARGV[j], ARGV[j + 1])
  end
end
local last = {{}}
for s = 1, t do last[s] = '' end
for j = outputs, outputs + 2 * k - 1, 2 do
  local s = tonumber(ARGV[j])
  if park then
    redis.call('XADD', KEYS[5], '*', '{FIELD.decode()}', ARGV[j + 1],
      '{TO.decode()}', ARGV[names + s])
  else
    last[s] = redis.call('XADD', KEYS[4 + s], '*', '{FIELD.decode()}', ARGV[j + 1])
  end
end
while i <= #ARGV do
  redis.call('XADD', KEYS[3], '*', '{FIELD.decode()}', ARGV[i + 1])
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  i = i + 2
end
local answer = {{acked}}
for s = 1, t do answer[s + 1] = last[s] end
return answer
"""

#: ``Acknowledged.acked`` when the lease has passed on: nothing of the chunk written
LOST = -1
#: ``Acknowledged.acked`` when a bounded group of an output stream is full
ROOM = -2


class Acknowledged(NamedTuple):
    """What ``RedisKeyedState.acknowledge`` did: how many entries Redis
    acknowledged (``LOST``, ``ROOM``: none of the chunk it stopped at), and how many
    of the ids given were handled (the rest, and the dead letters unless all were,
    are to be tried again once there is room)."""

    acked: int
    done: int


#: an output an item made and that its ``ACK_STATE`` writes: the publisher of its
#: stream (on which ``max_lag``, the stream's name and its local readers hang) and
#: the message as encoded
Output = tuple[RedisPublisher, bytes]

#: what one item changed: (field, value) pairs in order, value b"" for a delete
StateWrite = list[tuple[bytes, bytes]]


def _hashable(value: Any) -> Any:
    """A key read back from JSON: lists become tuples (a key is hashable)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


class RedisKeyedState(KeyedState):
    """A stateful component's key states over a keyed Redis connection: the keys of
    the partitions held here, each partition's loaded from Redis at its grant."""

    def __init__(
        self,
        initial: Callable[[], Any],
        max_keys: int,
        state_type: type[BaseModel] | None,
        partitions: int,
    ) -> None:
        super().__init__(initial, max_keys)
        self.state_type = state_type
        self.partitions = partitions
        #: per partition held here, its keys' states, least recently used first
        self.parts: dict[int, OrderedDict[object, Any]] = {}
        self._count = 0
        self._plock = threading.Lock()
        #: what each item changed, by ``id(item)`` (with the item, so that the id is
        #: not reused), until the item is settled (``written``)
        self.changes: dict[int, tuple[object, StateWrite]] = {}
        #: the lease each item was taken under, by ``id(item)``, until it is settled
        self.leases: dict[int, Lease] = {}

    def __len__(self) -> int:
        return self._count

    def partition(self, key: object) -> int:
        return partition_of(key, self.partitions)

    def checkout(self, key: object) -> Any:
        part = self.parts.get(self.partition(key))
        value = None if part is None else part.get(key)
        if value is None:
            return self.initial()
        assert part is not None
        with self._plock:
            if key in part:
                part.move_to_end(key)
        if isinstance(value, BaseModel):
            return value.model_copy(deep=True)
        return load_value(dump_value(value))

    def taken(self, item: object, lease: Lease) -> None:
        """``item`` was taken from its partition under ``lease``."""
        self.leases[id(item)] = lease

    def keep(self, key: object, value: Any, item: object = None) -> bool:
        if item is not None:
            lease = self.leases.get(id(item))
            if lease is None or lease.lost:
                # Taken under a lease since lost (still in this process's buffer):
                # its partition's next owner, maybe this process again, delivers
                # it again; counting it here too would count it twice.
                return False
        number = self.partition(key)
        write: StateWrite = [(dump_value([key]), self._dump(value))]
        evicting = False
        with self._plock:
            part = self.parts.setdefault(number, OrderedDict())
            if key not in part:
                self._count += 1
                if self._count > self.max_keys and part:
                    old, _ = part.popitem(last=False)
                    self._count -= 1
                    self.evicted += 1
                    evicting = True
                    write.insert(0, (dump_value([old]), b""))
            part[key] = value
            part.move_to_end(key)
            if item is not None:
                self.changes[id(item)] = (item, write)
        return evicting

    def get(self, key: object) -> Any:
        part = self.parts.get(self.partition(key))
        return None if part is None else part.get(key)

    def written(self, item: object) -> StateWrite | None:
        """What ``item`` changed (None: nothing), forgotten here."""
        self.leases.pop(id(item), None)
        found = self.changes.pop(id(item), None)
        return None if found is None else found[1]

    def _dump(self, value: Any) -> bytes:
        if isinstance(value, BaseModel):
            return value.model_dump_json().encode()
        return dump_value(value)

    # -- ownership ------------------------------------------------------------

    async def load(self, link: RedisLink, state_key: str, lease: Lease) -> None:
        """Load a partition's key states (before any of its entries is delivered)."""
        raw: Any = await link.client.hgetall(state_key)
        made = self.state_type
        part: OrderedDict[object, Any] = OrderedDict()
        for name, data in raw.items():
            (key,) = orjson.loads(name)
            if made is not None:
                part[_hashable(key)] = made.model_validate_json(data)
            else:
                part[_hashable(key)] = load_value(data)
        with self._plock:
            self._count -= len(self.parts.get(lease.partition, ()))
            self.parts[lease.partition] = part
            self._count += len(part)

    def drop(self, partition: int) -> None:
        """Forget a partition's keys (its lease ended or was lost)."""
        with self._plock:
            part = self.parts.pop(partition, None)
            if part is not None:
                self._count -= len(part)

    async def acknowledge(
        self,
        leases: Leases,
        keys: list[str],
        group: str,
        lease: Lease,
        ids: list[bytes],
        writes: dict[bytes, StateWrite],
        dead: list[tuple[bytes, bytes]],
        outputs: dict[bytes, list[Output]] | None = None,
    ) -> Acknowledged:
        """``XACK`` ``ids``, write the states they changed and the outputs they made,
        under the lease, one script per chunk (each id's state and outputs in its own
        id's script; ``keys``: stream, lease, dead letters, state hash). It stops at
        the first chunk refused: the lease has passed on (``LOST``), or a bounded
        group of an output stream is full (``ROOM``; one Redis only)."""
        made = outputs if outputs is not None else {}
        total = 0
        chunks = _chunks(ids, made, leases.link.cluster)
        if dead or not chunks:
            chunks.append([])
        done = 0
        for number, chunk in enumerate(chunks):
            pairs: list[bytes] = []
            for entry_id in chunk:
                for name, value in writes.get(entry_id, ()):
                    pairs += [name, value]
            park = leases.link.cluster
            chunk_keys, tail, publishers = _script_input(
                keys, lease, park, [m for i in chunk for m in made.get(i, ())]
            )
            args: list[Any] = [group, lease.token, int(park), len(chunk), *chunk]
            args += [len(pairs) // 2, *pairs, *tail]
            if number == len(chunks) - 1:
                for entry_id, record in dead:
                    args += [entry_id, record]
            answer: list[Any] = await leases._run(ACK_STATE, chunk_keys, args)
            acked = int(answer[0])
            if acked < 0:
                return Acknowledged(acked, done)
            for entry_id in chunk:
                writes.pop(entry_id, None)
                made.pop(entry_id, None)
            done += len(chunk)
            total += acked
            for publisher, written in zip(publishers, answer[1:], strict=True):
                if written:
                    publisher.wrote(written)
        return Acknowledged(total, done)


def _chunks(
    ids: list[bytes], made: dict[bytes, list[Output]], park: bool
) -> list[list[bytes]]:
    """``ids`` in order, at most ``ACK_STATE_CHUNK`` per script, and (one Redis) at
    most as many outputs per script as the smallest ``max_lag`` of their streams, so
    that a script that passes the room check stays within the bound (an entry alone
    may pass it by its own outputs)."""
    cap = None
    if not park:
        bounds = [
            max_lag
            for outputs in made.values()
            for publisher, _ in outputs
            for max_lag in publisher.bounds.values()
        ]
        cap = min(bounds, default=None)
    chunks: list[list[bytes]] = []
    chunk: list[bytes] = []
    count = 0
    for entry_id in ids:
        n = len(made.get(entry_id, ()))
        if chunk and (
            len(chunk) >= ACK_STATE_CHUNK or (cap is not None and count + n > cap)
        ):
            chunks.append(chunk)
            chunk, count = list[bytes](), 0
        chunk.append(entry_id)
        count += n
    if chunk:
        chunks.append(chunk)
    return chunks


def _script_input(
    keys: list[str], lease: Lease, park: bool, outputs: list[Output]
) -> tuple[list[str], list[Any], list[RedisPublisher]]:
    """The keys of one ``ACK_STATE`` and the part of its arguments from the output
    streams on (names, bounds, outputs), and the publisher of each output stream."""
    publishers: list[RedisPublisher] = []
    numbers: dict[str, int] = {}
    messages: list[Any] = []
    for publisher, data in outputs:
        number = numbers.get(publisher.stream)
        if number is None:
            publishers.append(publisher)
            number = numbers[publisher.stream] = len(publishers)
        messages += [number, data]
    names = [p.stream for p in publishers]
    bounds: list[Any] = []
    if not park:  # a Cluster's relay copies on later, unbounded (docs/redis.md)
        for number, publisher in enumerate(publishers, 1):
            for bounded, max_lag in publisher.bounds.items():
                bounds += [number, bounded, max_lag]
    args: list[Any] = [len(names), *names, len(bounds) // 3, *bounds]
    args += [len(messages) // 2, *messages]
    # (on a Cluster the outbox only when there is something to park in it)
    outbox = [lease.outbox] if park and names else []
    return [*keys, *(outbox if park else names)], args, publishers
