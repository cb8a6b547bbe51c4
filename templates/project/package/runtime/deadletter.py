"""The dead-letter streams: see what failed, and put it back.

Each Redis stream ``S`` has a dead-letter stream ``S.dlq``. Its entries are JSON
records (field ``e``)::

    {"stream": S, "group": "<component>.<port>", "entry_id": "<id in S>",
     "envelope": {... the message as it was sent ...},
     "error": {"type": "ValueError", "message": "... (personal data masked)"},
     "attempts": 3, "enqueued_at": <Unix s>, "dead_lettered_at": <Unix s>,
     "consumer": "<replica>"}

``replay`` writes each record's envelope back to ``S``, addressed to the one group
that failed on it (field ``to``: the other groups of ``S`` skip it), and deletes the
record, both in one transaction; the message keeps its id. A dry run only reads
(``XRANGE``): nothing is consumed, acknowledged, written or deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from .errors import ServiceError, SettingsError

if TYPE_CHECKING:
    from .service import Service
    from .streams import RedisLink

__all__ = ["DeadLetter", "dead_letter_streams", "read_dead_letters", "replay", "run"]

#: how long the command waits for an unreachable Redis before it gives up
UNREACHABLE_S = 10.0


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter stream."""

    #: the record's id in the dead-letter stream
    id: str
    record: dict[str, Any]

    @property
    def envelope(self) -> Any:
        """The message as it was sent (a dict; text if it was not JSON)."""
        return self.record.get("envelope")

    @property
    def message_id(self) -> str:
        """The failed message's id."""
        envelope = self.envelope
        return str(envelope.get("id", "?")) if isinstance(envelope, dict) else "?"

    def line(self) -> str:
        """One line for ``dlq list``."""
        error = self.record.get("error") or {}
        message = " ".join(str(error.get("message", "")).split())
        if len(message) > 100:
            message = message[:99] + "…"
        return (
            f"{self.id}  {self.record.get('group', '?')}  "
            f"attempts={self.record.get('attempts', '?')}  "
            f"message={self.message_id}  "
            f"{_when(self.record.get('dead_lettered_at'))}  "
            f"{error.get('type', '?')}: {message}"
        )


def dead_letter_streams(service: Service) -> dict[str, str]:
    """Every stream of the service that has a dead-letter stream -> that stream."""
    from .streams import RedisConnection  # only for services that use Redis

    return {
        c.stream: c.dead_letters
        for c in service.connections
        if isinstance(c, RedisConnection)
    }


async def read_dead_letters(
    link: RedisLink, dead_letters: str, limit: int | None
) -> list[DeadLetter]:
    """The oldest ``limit`` records of ``dead_letters`` (all when None); only reads."""
    rows = await link.call(
        partial(link.client.xrange, dead_letters, "-", "+", count=limit)
    )
    letters = []
    for entry_id, fields in rows or ():
        raw = (fields or {}).get(b"e", b"{}")
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            record = {"error": {"type": "?", "message": "unreadable record"}}
        letters.append(DeadLetter(_text(entry_id), record))
    return letters


async def replay(
    link: RedisLink, dead_letters: str, limit: int | None, *, dry_run: bool
) -> list[DeadLetter]:
    """Put the oldest ``limit`` records back on their streams; the records handled.

    With ``dry_run`` nothing changes: the records are only read.
    """
    letters = await read_dead_letters(link, dead_letters, limit)
    if dry_run:
        return letters
    stream = dead_letters.removesuffix(".dlq")
    client = link.client
    for letter in letters:
        envelope = letter.envelope
        data = (
            envelope.encode() if isinstance(envelope, str) else orjson.dumps(envelope)
        )
        group = str(letter.record.get("group", "")).encode()

        async def put_back(
            letter: DeadLetter = letter, data: bytes = data, group: bytes = group
        ) -> Any:
            pipe = client.pipeline(transaction=True)
            pipe.xadd(stream, {b"e": data, b"to": group})
            pipe.xdel(dead_letters, letter.id)
            return await pipe.execute()

        await link.call(put_back)
    return letters


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
    link = service.redis
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


def _when(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
