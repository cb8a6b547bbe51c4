"""Leases on partitions, and the fenced scripts that act only under one.

A replica reads a partition of a keyed connection only while it holds the
partition's lease: a hash ``<stream>.lease.<group>`` (``owner``, ``token``) that
expires ``ttl`` after it was last granted or renewed. Every grant takes a new token
from ``<stream>.fence.<group>`` (``INCR``, never expires), so tokens only grow. The
stream, its lease and its fence share the stream's hash tag on a Redis Cluster, so
one script may touch them all.

A lease that expires is not a lock that is released: its old holder may still run
(a GC pause, SIGSTOP). So:

- the holder stops reading the partition by its own monotonic clock before the
  lease can pass on (``Lease.valid``: granted at ``sent`` + ``ttl`` x ``SAFE``,
  ``sent`` taken before the request left, so a slow answer only shortens it);
- every acknowledgement checks the token in the same script as the ``XACK``
  (``ACK_FENCED``), and so does every dead letter;
- on a single Redis, every message written for an input of the partition checks the
  token in the same script as its ``XADD`` (``ADD_FENCED``). On a Cluster the
  output stream is in another slot, which one script cannot reach: see
  docs/redis.md for what is and is not fenced there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any

from redis.commands.core import AsyncScript

from .link import RedisLink
from .wire import FIELD

__all__ = [
    "ACK_FENCED",
    "ACQUIRE",
    "ADD_FENCED",
    "PARK",
    "READ_FENCED",
    "RELEASE",
    "RENEW",
    "SAFE",
    "TO",
    "UNPARK",
    "Lease",
    "Leases",
]

#: the share of a lease's ttl its holder trusts it for, by its own clock
SAFE = 0.75

#: KEYS: lease, fence; ARGV: owner, ttl ms. A new token when the lease is free (or
#: this owner's own, from an earlier grant it gave up on); false when another holds it.
ACQUIRE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""

#: KEYS: lease; ARGV: token, ttl ms. 1 when the lease still holds ``token``.
RENEW = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

#: KEYS: lease; ARGV: token. Frees the lease if it still holds ``token``.
RELEASE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

#: KEYS: stream, lease, dead-letter stream; ARGV: group, token, number of ids, the
#: ids, then (id, record) pairs to move to the dead-letter stream. Nothing happens
#: unless the lease holds ``token``: returns -1 then, else how many were acknowledged.
ACK_FENCED = f"""
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then return -1 end
local n = tonumber(ARGV[3])
local acked = 0
if n > 0 then acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4, 3 + n)) end
for i = 4 + n, #ARGV, 2 do
  redis.call('XADD', KEYS[3], '*', '{FIELD.decode()}', ARGV[i + 1])
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
end
return acked
"""

#: KEYS: stream, then leases; ARGV: the number of leases, each one's token, then
#: (lease number, entry) pairs, lease number 0 for an entry no lease fences. Adds the
#: entries whose lease holds its token, in order; returns ``{added, refused, last id
#: or false}``.
ADD_FENCED = f"""
local n = tonumber(ARGV[1])
local holds = {{}}
for i = 1, n do holds[i] = redis.call('HGET', KEYS[1 + i], 'token') == ARGV[1 + i] end
local added, refused, id = 0, 0, false
for i = n + 2, #ARGV, 2 do
  local lease = tonumber(ARGV[i])
  if lease == 0 or holds[lease] then
    id = redis.call('XADD', KEYS[1], '*', '{FIELD.decode()}', ARGV[i + 1])
    added = added + 1
  else
    refused = refused + 1
  end
end
return {{added, refused, id}}
"""

#: an outbox entry's field naming the stream it is for
TO = b"s"

#: KEYS: outbox, lease; ARGV: token, target stream, entries. The entries go to the
#: partition's outbox (same slot as the lease) for the relay to copy on to the target,
#: only while the lease holds ``token``: how many, or -1 (none).
PARK = f"""
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[1] then return -1 end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '*', '{FIELD.decode()}', ARGV[i], '{TO.decode()}', ARGV[2])
end
return #ARGV - 2
"""

#: KEYS: outbox, lease; ARGV: token, ids. Deletes relayed entries from the outbox
#: while the lease holds ``token``: how many, or -1.
UNPARK = """
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[1] then return -1 end
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
"""

#: KEYS: stream, lease; ARGV: token, group, consumer, count. The group's new entries
#: read under the lease: ``XREADGROUP`` (never blocking) in the script that checks
#: the token, so that no read of a replica paused or cut off past its lease can
#: take entries into its pending list after the lease passed on (its new owner
#: would see them only at a later claim, behind newer ones: the key's order lost).
#: Returns the entries; when there are none, the stream's last id (what a plain
#: ``XREAD BLOCK``, which takes nothing, waits past); -1 when the token is stale.
READ_FENCED = """
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[1] then return -1 end
local got = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
  'STREAMS', KEYS[1], '>')
if got then return got[1][2] end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then return last[1][1] end
return '0-0'
"""

#: most ids one ``ACK_FENCED`` call takes (Lua's ``unpack`` has a stack limit)
ACK_CHUNK = 1000


@dataclass
class Lease:
    """A partition's lease as its holder knows it."""

    partition: int
    key: str
    token: str
    #: by the holder's monotonic clock: until when it trusts the lease
    until: float
    #: the holder knows it gone (not renewed in time, or released)
    lost: bool = False
    #: the partition's outbox (Cluster: what is written under the lease waits there)
    outbox: str = ""

    def valid(self, now: float) -> bool:
        """Whether the holder may still read under it at ``now``."""
        return now < self.until

    def usable(self, now: float) -> bool:
        """Whether the holder may still read, write and acknowledge under it at
        ``now``. Once not, never again (``lost``): what was refused under it must
        not be acknowledged by a renewal that came late, so the next grant (a new
        token) delivers it again."""
        if not self.lost and now >= self.until:
            self.lost = True
        return not self.lost


class Leases:
    """The lease scripts of one service's link, loaded on first use."""

    def __init__(self, link: RedisLink, clock: Callable[[], float] = monotonic) -> None:
        self.link = link
        self.clock = clock
        self._scripts: dict[str, AsyncScript] = {}

    def _script(self, text: str) -> AsyncScript:
        script = self._scripts.get(text)
        if script is None:
            script = self._scripts[text] = self.link.client.register_script(text)
        return script

    async def _run(self, text: str, keys: list[str], args: list[Any]) -> Any:
        script = self._script(text)
        return await script(keys=keys, args=args, client=self.link.client)

    async def acquire(
        self,
        partition: int,
        key: str,
        fence: str,
        owner: str,
        ttl_ms: int,
        outbox: str = "",
    ) -> Lease | None:
        """Take the lease when it is free: one call, raising when Redis does not
        answer (the caller retries on its own schedule)."""
        sent = self.clock()
        token = await self._run(ACQUIRE, [key, fence], [owner, ttl_ms])
        if token is None:
            return None
        until = sent + ttl_ms / 1000 * SAFE
        return Lease(partition, key, str(int(token)), until, outbox=outbox)

    async def renew(self, lease: Lease, ttl_ms: int) -> bool:
        """Extend the lease; False when it no longer holds this token."""
        if lease.lost:  # given up here: it expires, and the next grant takes over
            return False
        sent = self.clock()
        renewed = await self._run(RENEW, [lease.key], [lease.token, ttl_ms])
        if renewed:
            lease.until = max(lease.until, sent + ttl_ms / 1000 * SAFE)
        return bool(renewed)

    async def release(self, lease: Lease) -> bool:
        """Free the lease, if it still holds this token."""
        return bool(await self._run(RELEASE, [lease.key], [lease.token]))

    async def read(
        self, stream: str, group: str, consumer: str, lease: Lease, count: int
    ) -> list[tuple[bytes, dict[bytes, bytes]]] | bytes | int:
        """At most ``count`` new entries of ``stream`` for ``group``, read under the
        lease (``READ_FENCED``); when there are none, the stream's last id (wait
        for entries past it with ``XREAD``); -1: the lease has passed on, and
        nothing was read."""
        keys, args = [stream, lease.key], [lease.token, group, consumer, count]
        answer = await self._run(READ_FENCED, keys, args)
        if isinstance(answer, int):
            return -1
        if isinstance(answer, str):
            return answer.encode()
        if isinstance(answer, bytes):
            return answer
        return [
            (entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
            for entry_id, flat in answer
        ]

    async def acknowledge(
        self,
        stream: str,
        group: str,
        lease: Lease,
        ids: list[bytes],
        dead: list[tuple[bytes, bytes]] | None = None,
        dead_letters: str = "",
    ) -> int:
        """``XACK`` under the lease (and move ``dead`` to ``dead_letters``); -1: the
        lease has passed on and nothing was acknowledged."""
        total = 0
        dead = dead or []
        keys = [stream, lease.key, dead_letters or stream + ".dlq"]
        chunks = [ids[i : i + ACK_CHUNK] for i in range(0, len(ids), ACK_CHUNK)]
        if dead or not chunks:
            chunks.append([])
        for number, chunk in enumerate(chunks):
            pairs: list[bytes] = []
            if number == len(chunks) - 1:
                for entry_id, record in dead:
                    pairs += [entry_id, record]
            args: list[Any] = [group, lease.token, len(chunk), *chunk, *pairs]
            acked = int(await self._run(ACK_FENCED, keys, args))
            if acked < 0:
                return -1
            total += acked
        return total

    async def park(self, lease: Lease, target: str, entries: list[bytes]) -> int:
        """Put ``entries`` for ``target`` in the lease's outbox, under the lease
        (``PARK``): how many, or -1 when the lease has passed on."""
        args: list[Any] = [lease.token, target, *entries]
        return int(await self._run(PARK, [lease.outbox, lease.key], args))

    async def unpark(self, lease: Lease, ids: list[bytes]) -> int:
        """Delete relayed entries from the outbox under the lease (``UNPARK``)."""
        args: list[Any] = [lease.token, *ids]
        return int(await self._run(UNPARK, [lease.outbox, lease.key], args))

    async def add(
        self, stream: str, entries: list[tuple[Lease | None, bytes]]
    ) -> tuple[int, int, bytes | None]:
        """``XADD`` each entry whose lease still holds its token (single Redis:
        ``ADD_FENCED``); how many were added and refused, and the last id."""
        leases: dict[str, int] = {}
        tokens: list[str] = []
        pairs: list[Any] = []
        for lease, data in entries:
            number = 0
            if lease is not None:
                slot = f"{lease.key}\0{lease.token}"
                number = leases.get(slot, 0)
                if not number:
                    number = leases[slot] = len(tokens) + 1
                    tokens.append(lease.token)
            pairs += [number, data]
        keys = [stream, *(slot.split("\0", 1)[0] for slot in leases)]
        added, refused, last = await self._run(
            ADD_FENCED, keys, [len(tokens), *tokens, *pairs]
        )
        return int(added), int(refused), last or None
