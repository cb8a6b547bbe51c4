"""The dead-letter streams: see what failed, and put it back.

Each Redis stream ``S`` has a dead-letter stream ``S.dlq``. Its entries are JSON
records (field ``e``, ``wire.FIELD``)::

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

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from .link import RedisLink
from .wire import FIELD, TARGET

__all__ = ["DeadLetter", "read_dead_letters", "replay"]


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


async def read_dead_letters(
    link: RedisLink, dead_letters: str, limit: int | None
) -> list[DeadLetter]:
    """The oldest ``limit`` records of ``dead_letters`` (all when None); only reads."""
    rows = await link.call(
        partial(link.client.xrange, dead_letters, "-", "+", count=limit)
    )
    letters = []
    for entry_id, fields in rows or ():
        raw = (fields or {}).get(FIELD, b"{}")
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
            pipe.xadd(stream, {FIELD: data, TARGET: group})
            pipe.xdel(dead_letters, letter.id)
            return await pipe.execute()

        await link.call(put_back)
    return letters


def _when(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
