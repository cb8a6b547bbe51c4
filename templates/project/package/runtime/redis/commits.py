"""What the commit scripts of the Redis stores share: the end of the script that
changes the partition's state hash and sends what the batch made (``windowstore``'s
``COMMIT``, ``joinstore``'s ``COMMIT_JOIN``), and the arguments it reads.

The end reads ARGV from the script's ``i`` on: the number of (field, value) pairs to
set in the state and the pairs, the number of fields to delete and the fields, the
number of target streams and their names, then (target number, message) pairs to the
last argument. It sets before it deletes, so a field written and dropped by one
commit must not be among the deletes (the stores leave it out). Each message is
added to its target stream, or, when the script's ``park`` is true (a Cluster: the
target is in another slot), to the partition's outbox with its target's name, for
the relay (``leases``).
"""

from __future__ import annotations

from typing import Any

from ..envelope import Envelope
from .connection import RedisConnection
from .leases import TO
from .partitions import partition_of
from .wire import FIELD, encode

__all__ = ["Sends", "lua_state_and_sends", "state_and_sends", "stream_of"]


def lua_state_and_sends(state: int, outbox: int) -> str:
    """The script's end: ``KEYS[state]`` is the state hash, ``KEYS[outbox]`` the
    outbox (when parking), and target ``t`` is ``KEYS[state + t]`` (when not)."""
    return f"""
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[{state}], ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HDEL', KEYS[{state}], ARGV[i])
  i = i + 1
end
n = tonumber(ARGV[i])
local names = i
i = i + 1 + n
while i <= #ARGV do
  local t = tonumber(ARGV[i])
  if park then
    redis.call('XADD', KEYS[{outbox}], '*', '{FIELD.decode()}', ARGV[i + 1],
      '{TO.decode()}', ARGV[names + t])
  else
    redis.call('XADD', KEYS[{state} + t], '*', '{FIELD.decode()}', ARGV[i + 1])
  end
  i = i + 2
end
"""


def stream_of(connection: RedisConnection, item: Any) -> str:
    """The stream a result goes to on ``connection`` (a keyed one: by its key)."""
    streams: list[str] | None = getattr(connection, "streams", None)
    key = connection.key
    if streams is None or key is None:
        return connection.stream
    return streams[partition_of(key(item), len(streams))]


class Sends:
    """The messages one commit sends, each to the streams of its port's targets,
    the streams numbered in the order first met."""

    def __init__(self) -> None:
        #: the target streams, target ``t`` at ``names[t - 1]``
        self.names: list[str] = []
        #: (target number, encoded message) pairs, flat
        self.messages: list[Any] = []
        self._numbers: dict[str, int] = {}

    def add(self, targets: list[RedisConnection], item: Any, now: float) -> None:
        """Send ``item`` (made now) to each of ``targets``."""
        data = encode(Envelope.start(item, now), now)
        for target in targets:
            stream = stream_of(target, item)
            number = self._numbers.get(stream)
            if number is None:
                self.names.append(stream)
                number = self._numbers[stream] = len(self.names)
            self.messages += [number, data]


def state_and_sends(pairs: list[Any], deleted: list[Any], sends: Sends) -> list[Any]:
    """The arguments the script's end reads (``pairs``: field, value, field, ...)."""
    return [
        len(pairs) // 2,
        *pairs,
        len(deleted),
        *deleted,
        len(sends.names),
        *sends.names,
        *sends.messages,
    ]
