"""The envelope every message travels in, and its UUID v7 message ids.

User code only ever sees ``Envelope.item``. The envelope adds the tracing identity
(message id, correlation id, causation id). The time a message was enqueued is not
part of the envelope: streams carry ``(enqueued_at, envelope)`` pairs (an ``Entry``),
so a component that forwards a message unchanged (filter, router, merger) passes the
same envelope on and only stamps a new time.

A message that arrives from another process (over Redis) keeps the ids it was sent
with: its ``parent`` is an ``Origin`` holding them. A message derived from such a
message gets an id computed from its parent's id and the port that derived it, so
when the parent is delivered again (at-least-once) the derived message has the same
id as the first time, and a sink can recognise the duplicate.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, cast

__all__ = [
    "Entry",
    "Envelope",
    "EnvelopeFields",
    "Origin",
    "monotonic_time",
    "new_envelope",
    "next_seq",
    "uuid7",
    "wall_time",
]

# Ids are computed from a per-process random seed plus a process-wide sequence
# number (RFC 9562 section 6.2, method 2: monotonic random). The seed keeps ids of
# different processes apart; leaving its top bit clear leaves room to count up for
# 2**73 messages without wrapping.
_SEED = int.from_bytes(os.urandom(10), "big") >> 7
_SEQUENCE = itertools.count()
#: The next message sequence number (for code that builds envelopes inline).
next_seq = _SEQUENCE.__next__
# UUID v7 carries Unix milliseconds. Messages are timed with the monotonic clock, so
# the wall time is derived from it once; ids then never go backwards with the clock.
_WALL_OFFSET_MS = time.time() * 1000.0 - time.monotonic() * 1000.0
_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_LOW_62 = (1 << 62) - 1
_LOW_12 = (1 << 12) - 1


def _uuid7_int(created: float, seq: int) -> int:
    """The 128-bit UUID v7 for a message created at monotonic time ``created``."""
    unix_ms = int(created * 1000.0 + _WALL_OFFSET_MS)
    counter = _SEED + seq
    return (
        (unix_ms << 80)
        | _VERSION_7
        | (((counter >> 62) & _LOW_12) << 64)
        | _VARIANT_RFC
        | (counter & _LOW_62)
    )


def _format_uuid(value: int) -> str:
    """``str(uuid.UUID(int=value))``, without building the UUID object."""
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def uuid7() -> uuid.UUID:
    """A new RFC 9562 version 7 UUID (time-ordered within this process)."""
    return uuid.UUID(int=_uuid7_int(time.monotonic(), next(_SEQUENCE)))


def wall_time(monotonic: float) -> float:
    """The Unix time (seconds) of a ``time.monotonic()`` reading of this process."""
    return monotonic + _WALL_OFFSET_MS / 1000.0


def monotonic_time(wall: float) -> float:
    """The ``time.monotonic()`` reading of this process at Unix time ``wall``."""
    return wall - _WALL_OFFSET_MS / 1000.0


def stable_id(parent_id: str, by: str) -> str:
    """The id of the message that ``by`` (``component.port``) made from ``parent_id``.

    A UUID v7 with the parent's millisecond time and 74 bits of a hash of both: the
    same parent and port always give the same id.
    """
    digest = hashlib.blake2b(
        f"{parent_id}|{by}".encode(), digest_size=10, person=b"portwright"
    ).digest()
    bits = int.from_bytes(digest, "big")
    try:
        unix_ms = int(parent_id[:8] + parent_id[9:13], 16)
    except ValueError:  # not a UUID (written by hand into a stream): hash it too
        unix_ms = bits >> 32
    return _format_uuid(
        ((unix_ms & ((1 << 48) - 1)) << 80)
        | _VERSION_7
        | (((bits >> 62) & _LOW_12) << 64)
        | _VARIANT_RFC
        | (bits & _LOW_62)
    )


class Origin(NamedTuple):
    """The ids of a message that were fixed elsewhere (another process, a replay)."""

    id: str
    causation_id: str | None


class Envelope(NamedTuple):
    """One message: the user's item plus its tracing identity.

    The ids are computed when first read (``id``, ``correlation_id``,
    ``causation_id``), because formatting a UUID costs more than moving the message
    through a stage and most ids are never looked at. They are stable: the same
    envelope always reports the same ids.
    """

    item: Any
    #: process-wide sequence number; with ``created`` it determines the message id
    seq: int
    #: monotonic time at which the message was created
    created: float
    #: the message that started this conversation, or an external correlation id
    #: (``None``: this message starts it)
    correlation: Envelope | str | None
    #: the message this one was made from (``None`` for a message from outside), or
    #: the ``Origin`` of a message whose ids were fixed elsewhere
    parent: Envelope | Origin | None

    @classmethod
    def start(
        cls, item: Any, created: float, correlation_id: str | None = None
    ) -> Envelope:
        """A message entering the service (from a source, HTTP or a test)."""
        return new_envelope(
            Envelope, (item, next(_SEQUENCE), created, correlation_id, None)
        )

    def derive(self, item: Any, created: float, by: str = "") -> Envelope:
        """A new message made from this one: same correlation, caused by this one.

        ``by`` (``component.port``) names where it is made; it fixes the new id when
        this message's own id was fixed elsewhere (see ``Origin``).
        """
        correlation = self.correlation
        if correlation is None:
            correlation = self
        parent: Envelope | Origin = self
        if self.parent.__class__ is Origin:
            own = self.id
            parent = Origin(stable_id(own, by), own)
        return new_envelope(Envelope, (item, next_seq(), created, correlation, parent))

    @property
    def id(self) -> str:
        """This message's UUID v7, as a string."""
        parent = self.parent
        if isinstance(parent, Origin):
            return parent.id
        return _format_uuid(_uuid7_int(self.created, self.seq))

    @property
    def correlation_id(self) -> str:
        """The id shared by every message of one conversation."""
        correlation = self.correlation
        if correlation is None:
            return self.id
        if isinstance(correlation, str):
            return correlation
        return correlation.correlation_id

    @property
    def causation_id(self) -> str | None:
        """The id of the message this one was made from, if any."""
        parent = self.parent
        if parent is None:
            return None
        if isinstance(parent, Origin):
            return parent.causation_id
        return parent.id

    @property
    def stable(self) -> bool:
        """Whether this message's id was fixed elsewhere, or derived from one that was."""
        return isinstance(self.parent, Origin)


#: An envelope's fields, in order: what ``new_envelope`` takes after the class.
EnvelopeFields = tuple[
    Any, int, float, "Envelope | str | None", "Envelope | Origin | None"
]
#: The one fast way to build an envelope: ``new_envelope(Envelope, fields)`` (the
#: hot paths build one per message). ``Envelope(...)`` and ``Envelope._make`` check
#: their arguments; ``tuple.__new__(Envelope, fields)`` is what they end in, and the
#: cast gives it the type the type checkers cannot infer for it. The class is passed
#: each time on purpose: a ``partial`` binding it copies the fields into a new
#: argument tuple on every call, ~25 ns more per envelope (3% of the pipeline).
new_envelope = cast(
    "Callable[[type[Envelope], EnvelopeFields], Envelope]", tuple.__new__
)

#: What a stream carries: the monotonic time the message was enqueued, and the message.
Entry = tuple[float, Envelope]
