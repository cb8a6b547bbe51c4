"""Apply an effect once per key, in Redis: the ``Dedup`` of a service on Redis.

Redis delivers a message at least once, so a sink may see the same message again
(same message id) after a replica died or a delivery failed. ``once(key, effect)``
runs ``effect`` only if it has not run for ``key`` yet:

1. ``SET key <token> NX PX <lease>`` claims the key atomically (never a read and then
   a write): only one delivery can hold it.
2. The holder runs the effect. If the effect raises, the key is released (deleted if
   it still holds the token), so a later delivery can apply it.
3. When the effect succeeded, the key is set to ``done`` for ``ttl``; later
   deliveries of the same key skip the effect.

A delivery that finds the key ``done`` returns False; one that finds it held by
another delivery raises ``DedupBusy`` (the message is retried later, like any
failure). If the holder dies, the key frees itself when the lease ends.

What it does not cover: a process that dies after the effect and before step 3 (one
round trip to Redis) leaves the key to expire, and the effect runs again when the
message comes back. An effect that must never repeat has to be idempotent itself,
or record its key in the same transaction as its result.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import anyio

from ..dedup import Dedup, DedupBusy, apply
from .link import RedisLink

__all__ = ["RedisDedup"]

DONE = b"done"
# Deletes the key, or marks it done, only while it still holds our token.
_SETTLE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then return redis.call('del', KEYS[1]) end
  redis.call('set', KEYS[1], ARGV[2], 'px', ARGV[3])
  return 1
end
return 0
"""


class RedisDedup(Dedup):
    """Keys in Redis, shared by every replica: ``<prefix><service>.dedup.<key>``."""

    def __init__(
        self, link: RedisLink, namespace: str, *, ttl_s: float, lease_s: float
    ) -> None:
        self.link = link
        self.namespace = namespace
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.lease_ms = max(1, int(lease_s * 1000))
        self._owner = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def once(self, key: str, effect: Callable[[], Any]) -> bool:
        """Run ``effect`` unless ``key`` is done; see the module's description."""
        name = self.namespace + key
        token = f"pending:{self._owner}:{uuid.uuid4().hex}"
        client = self.link.client
        while True:
            claimed = await self.link.call(
                lambda: client.set(name, token, nx=True, px=self.lease_ms)
            )
            if claimed:
                break
            held = await self.link.call(lambda: client.get(name))
            if held == DONE:
                return False
            if held is not None:
                raise DedupBusy(
                    f"the effect for {key!r} is being applied by another delivery"
                )
            # expired between the two calls: claim again
        try:
            await apply(effect)
        except BaseException:
            # Release the key so that a later delivery can apply the effect (even when
            # cancelled: shielded, briefly; otherwise the lease frees it).
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self._settle(name, token, "")
            raise
        marked = await self._settle(name, token, DONE.decode())
        if not marked:
            self.link.log.warning(
                "the effect for %r took longer than its %d ms lease; another "
                "delivery may have applied it too",
                key,
                self.lease_ms,
            )
        return True

    async def _settle(self, name: str, token: str, value: str) -> bool:
        """Delete the key (``value`` empty) or set it, if it still holds ``token``."""
        client = self.link.client
        settled = await self.link.call(
            lambda: client.eval(_SETTLE, 1, name, token, value, str(self.ttl_ms))
        )
        return bool(settled)
