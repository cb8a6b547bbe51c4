"""``python -m <service> dlq list|show|replay``: the dead-letter streams, for people.

A command-line tool over the service's wiring: which of its connections the Redis
transport carries, and its link to Redis. What a dead letter is, and how it is read
and replayed: ``redis.deadletter``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import anyio
import orjson

from .errors import ServiceError, SettingsError
from .redis.carrier import RedisCarrier
from .redis.connection import RedisConnection
from .redis.deadletter import DeadLetter, read_dead_letters, replay
from .service import Service

__all__ = ["DeadLetter", "dead_letter_streams", "read_dead_letters", "replay", "run"]

#: how long the command waits for an unreachable Redis before it gives up
UNREACHABLE_S = 10.0


def dead_letter_streams(service: Service) -> dict[str, str]:
    """Every stream of the service that has a dead-letter stream -> that stream."""
    return {
        c.stream: c.dead_letters
        for c in service.connections
        if isinstance(c, RedisConnection)
    }


async def run(
    service: Service,
    action: str,
    stream: str | None,
    limit: int | None,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> int:
    """``python -m <service> dlq list|show|replay``: print, and return the exit code."""
    streams = dead_letter_streams(service)
    carrier = service.carriers.get("redis")
    link = carrier.link if isinstance(carrier, RedisCarrier) else None
    if link is None or not streams:
        raise SettingsError(
            f"service {service.name!r} carries no connection by redis, so it has no "
            "dead-letter streams"
        )
    try:
        with anyio.move_on_after(UNREACHABLE_S):
            await link.call(link.client.ping)
        if link.problem is not None:
            raise ServiceError(f"{link.problem}; nothing was read or changed")
        if stream is None:
            if action != "list":
                raise SettingsError(f"dlq {action} needs --stream; see 'dlq list'")
            for name, dead in streams.items():
                count = await link.call(partial(link.client.xlen, dead))
                echo(f"{dead}  {count}  (for {name})")
            return 0
        dead = _resolve(stream, streams)
        if action == "list":
            letters = await read_dead_letters(link, dead, limit)
            for letter in letters:
                echo(letter.line())
            echo(f"{len(letters)} dead letter(s) shown from {dead}")
        elif action == "show":
            letters = await read_dead_letters(link, dead, limit)
            for letter in letters:
                shown = {"id": letter.id, **letter.record}
                echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
            echo(f"{len(letters)} dead letter(s) shown from {dead}")
        elif action == "replay":
            letters = await replay(link, dead, limit, dry_run=dry_run)
            verb = "would replay" if dry_run else "replayed"
            for letter in letters:
                echo(
                    f"{verb} {letter.id}: message {letter.message_id} for "
                    f"{letter.record.get('group', '?')}"
                )
            suffix = " (dry run: nothing changed)" if dry_run else ""
            echo(f"{len(letters)} dead letter(s) {verb} from {dead}{suffix}")
        else:
            raise SettingsError(f"unknown dlq action {action!r}")
    finally:
        await link.close()
    return 0


def _resolve(stream: str, streams: dict[str, str]) -> str:
    """The dead-letter stream meant by ``stream`` (full name, or ``component.port``)."""
    for name, dead in streams.items():
        if stream in (dead, name) or name.endswith("." + stream):
            return dead
    known = ", ".join(streams)
    raise SettingsError(f"no stream {stream!r} in this service; its streams: {known}")
