"""Ways in and out of a running service from code: an ``Inlet`` and a ``Tap``.

Tests use them to push items into any input port and to see what an output port
emits; adapters can use an inlet as an in-process ingress. Both are ordinary
components, so their ports have metrics and overflow policies like any other.
Create them with ``Service.inlet`` and ``Service.tap`` before the service starts.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

import anyio
from anyio import WouldBlock

from .component import Component, RunContext
from .envelope import Envelope
from .ports import InputPort

__all__ = ["Inlet", "Tap"]


class Inlet(Component):
    """Pushes items into the input port it is connected to.

    Closed by ``close()`` or when the service stops; once every producer of a
    pipeline is closed, the pipeline drains and its components stop in order.
    """

    kind = "inlet"

    def __init__(self, name: str, schema: Any = Any) -> None:
        super().__init__(name, inputs={}, outputs={"out": schema})
        self._out = self.outputs["out"]
        self._closed = False
        self._wake: anyio.Event | None = None

    async def send(self, item: Any, *, correlation_id: str | None = None) -> Envelope:
        """Send ``item``, waiting for room if the connection blocks; its envelope."""
        return await self._out.send(item, correlation_id)

    def send_nowait(self, item: Any, *, correlation_id: str | None = None) -> Envelope:
        """Send ``item`` now; raises ``anyio.WouldBlock`` (nothing sent) when full."""
        now = monotonic()
        envelope = Envelope.start(item, now, correlation_id)
        entry = (now, envelope)
        for connection in self._out.connections:
            if not connection.offer(entry):
                raise WouldBlock
        self._out.sent += 1
        return envelope

    def close(self) -> None:
        """No more items: the connected port ends once it has taken what was sent."""
        self._closed = True
        self._out.close()
        if self._wake is not None:
            self._wake.set()

    def request_stop(self) -> None:
        """The service is stopping: close."""
        self.close()

    async def serve(self, context: RunContext) -> None:
        """Stay open until closed."""
        if not self._closed:
            self._wake = anyio.Event()
            await self._wake.wait()


class Tap(Component):
    """Records every message that reaches it, in arrival order."""

    kind = "tap"

    def __init__(self, name: str, schema: Any = Any) -> None:
        super().__init__(name, inputs={"in": schema}, outputs={})
        #: every envelope received, in order
        self.envelopes: list[Envelope] = []
        self._arrived: anyio.Event | None = None
        self._deliver = self._record

    @property
    def items(self) -> list[Any]:
        """The items received so far, in order."""
        return [envelope.item for envelope in self.envelopes]

    async def wait_for(self, count: int) -> list[Any]:
        """Wait until at least ``count`` items arrived; the items so far."""
        while len(self.envelopes) < count:
            if self._arrived is None:
                self._arrived = anyio.Event()
            await self._arrived.wait()
        return self.items

    def _record(
        self, port: InputPort, envelope: Envelope, result: Any, now: float
    ) -> None:
        self.envelopes.append(envelope)
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None
