"""The memory transport: a connection is a bounded stream in this process.

Both ends of a connection run in the same process (the service checks that), and a
message is handed over without being copied or encoded: the fast path. The bounded
stream itself is ``ports.Connection``, which every transport's receiving end shares;
this package only makes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..dedup import Dedup
from ..logs import MaskedLogger
from ..ports import Connection, InputPort, OutputPort, Overflow
from ..settings import ServiceSettings

__all__ = ["MemoryCarrier", "carrier"]


class MemoryCarrier:
    """The memory transport's carrier: nothing to reach, nothing shared."""

    def __init__(
        self, service: str, settings: ServiceSettings, log: MaskedLogger
    ) -> None:
        self.service = service

    @property
    def problem(self) -> str | None:
        """Memory is always there."""
        return None

    @property
    def shared_storage(self) -> str | None:
        """Nothing is shared beyond this process."""
        return None

    def connect(
        self,
        source: OutputPort,
        target: InputPort,
        *,
        buffer_size: int,
        overflow: Overflow,
        key: Callable[[Any], object] | None = None,
        partitions: int | None = None,
    ) -> Connection:
        """A bounded stream from ``source`` to ``target`` in this process (keyed or
        not, it keeps the order sent: ``partitions`` means nothing here)."""
        return Connection(source, target, buffer_size=buffer_size, overflow=overflow)

    def check(self) -> None:
        """Nothing to check."""

    def dedup(self) -> Dedup | None:
        """None: ``once`` keeps its keys in this process."""
        return None

    async def monitor(self, url: str | None, components: list[str]) -> None:
        """Nothing to watch."""

    async def close(self) -> None:
        """Nothing to release."""


carrier = MemoryCarrier
