"""Keyed state (``state: true``) over a keyed Redis connection: per partition, in Redis.

A stateful transformer, filter, router or sink (``keyedstate.Stateful``) whose input
is a keyed Redis connection keeps, per partition of that connection, one field per
key in a hash next to the partition's stream (same hash tag, so same slot on a
Cluster): ``<stream>.state.<group>``, field ``[key]`` (JSON), value the key's state
as JSON (a pydantic model's ``model_dump_json``, or the dict, with the tags of
``windowstore.dump_value``).

The state an item leaves is written by the script that acknowledges that item
(``ACK_STATE``), which does nothing unless the partition's lease still holds this
replica's token (fencing): an input is in the state exactly when it is
acknowledged, whatever instant a replica is killed at (exactly once for the state).
The item's outputs are written before, as for any input over Redis (the ack waits
for them): a replica killed between the two has its item delivered again, counted
once in the state, its outputs possibly written twice (at least once, as without
state; a sink's own side effect likewise, unless it uses ``once``). Entries of a
stateful input are acknowledged in the order they were settled, so the state of a
key's later item is never written before its earlier item is acknowledged.

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
from typing import Any

import orjson
from pydantic import BaseModel

from ..keystates import KeyedState
from .leases import Lease, Leases
from .link import RedisLink
from .partitions import partition_of
from .windowstore import dump_value, load_value
from .wire import FIELD

__all__ = ["ACK_STATE", "RedisKeyedState", "StateWrite"]

#: most ids one ``ACK_STATE`` takes (Lua's ``unpack`` has a stack limit)
ACK_STATE_CHUNK = 1000

#: KEYS: stream, lease, dead-letter stream, state hash. ARGV: group, token, the
#: number of ids and the ids to XACK, the number of (field, value) pairs and the
#: pairs (an empty value deletes the field), then (id, dead letter) pairs. Nothing
#: happens unless the lease holds ``token``: -1 then, else how many were acknowledged.
ACK_STATE = f"""
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then return -1 end
local n = tonumber(ARGV[3])
local acked = 0
if n > 0 then acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4, 3 + n)) end
local i = 4 + n
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[4], ARGV[i])
  else
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
while i <= #ARGV do
  redis.call('XADD', KEYS[3], '*', '{FIELD.decode()}', ARGV[i + 1])
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  i = i + 2
end
return acked
"""

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
    ) -> int:
        """``XACK`` ``ids`` and write the states they changed, under the lease, one
        script per chunk (each id's state in its own id's script); -1: the lease
        has passed on (nothing of that chunk written)."""
        total = 0
        chunks = [
            ids[i : i + ACK_STATE_CHUNK] for i in range(0, len(ids), ACK_STATE_CHUNK)
        ]
        if dead or not chunks:
            chunks.append([])
        for number, chunk in enumerate(chunks):
            pairs: list[bytes] = []
            for entry_id in chunk:
                for name, value in writes.pop(entry_id, ()):
                    pairs += [name, value]
            args: list[Any] = [group, lease.token, len(chunk), *chunk]
            args += [len(pairs) // 2, *pairs]
            if number == len(chunks) - 1:
                for entry_id, record in dead:
                    args += [entry_id, record]
            acked = int(await leases._run(ACK_STATE, keys, args))
            if acked < 0:
                return -1
            total += acked
        return total
