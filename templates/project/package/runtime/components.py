"""The primitives users subclass: Source, Transformer, Filter, Router, Merger, Sink.

User methods may be plain or ``async def``; which one is decided once, when the
component is built. An exception in user code is counted, logged with personal
data masked, and sent to the ``errors`` port when one is wired; the loop goes on.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from functools import partial
from itertools import islice
from time import monotonic
from typing import Any

import anyio
from anyio.lowlevel import checkpoint

from .batching import Batch, Batching
from .clock import Clock, LoopClock
from .component import (
    ERRORS_PORT,
    Component,
    Delivery,
    MaybeAwaitable,
    RunContext,
    State,
)
from .concurrency import Ordering
from .envelope import Entry, Envelope, new_envelope, next_seq
from .errors import UnknownRouteError, WiringError
from .ports import InputPort, OutputPort
from .results import each, is_plural
from .streamstate import StreamState
from .timers import Ticker

__all__ = ["Filter", "Merger", "Router", "Sink", "Source", "Timer", "Transformer"]


_ONE_IN = {"in": Any}
_ONE_OUT = {"out": Any}


class Source(Component, ABC):
    """Produces messages: implement ``generate()``, an (async) generator of items.

    Yielded items go to the output ``out`` (or the only data output); use
    ``await self.emit(port, item)`` to send to another output. On shutdown the
    generator is cancelled and closed. If ``generate()`` raises, the error is
    reported and ``generate()`` is started again after ``source_restart_s``.
    """

    kind = "source"
    default_outputs = _ONE_OUT

    def __init__(
        self,
        name: str,
        *,
        outputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
    ) -> None:
        super().__init__(name, inputs={}, outputs=outputs, burst_limit=burst_limit)
        data = self.data_outputs
        if not data:
            raise WiringError(f"source {name!r} needs at least one output port")
        self._out: OutputPort | None = data.get("out") or (
            next(iter(data.values())) if len(data) == 1 else None
        )
        self._emitted = 0
        self._stop_scope: anyio.CancelScope | None = None
        self._stop_requested = False

    @abstractmethod
    def generate(self) -> AsyncIterator[Any] | Iterator[Any]:
        """Yield the items to send (``async def`` with ``yield``, or a generator)."""

    async def emit(self, port: str, item: Any) -> None:
        """Send ``item`` on the output ``port``, waiting if its buffer is full."""
        output = self.outputs.get(port)
        if output is None:
            raise WiringError(f"source {self.name!r} has no output port {port!r}")
        await output.send(item)
        self._emitted += 1
        if self._emitted >= self.burst_limit:
            self._emitted = 0
            await checkpoint()

    def request_stop(self) -> None:
        """Cancel ``generate()``; what it already sent still flows downstream."""
        self._stop_requested = True
        if self._stop_scope is not None:
            self._stop_scope.cancel()

    async def serve(self, context: RunContext) -> None:
        """Run ``generate()`` until it ends or the service stops."""
        restart_after = context.settings.source_restart_s
        with anyio.CancelScope() as self._stop_scope:
            while not self._stop_requested:
                try:
                    await self._produce()
                    return
                except Exception as exc:
                    await self.fail(self._out or self._first_output(), None, exc)
                if restart_after <= 0:
                    self.phase = State.FAILED
                    return
                self.log.warning("restarting generate() in %.1f s", restart_after)
                await anyio.sleep(restart_after)

    async def _produce(self) -> None:
        out = self._out
        emit = out.emit if out is not None else self._no_default_output
        # With one batched ``block`` connection, an entry that fits goes straight
        # into the stream's buffer (what send_nowait would do when no receiver is
        # waiting and the receiver is open); anything else takes ``emit``.
        port = out if out is not None else self._first_output()
        state: StreamState[Entry] | None = None
        if out is not None and (connection := out.batched_connection) is not None:
            state = connection.stream_state
        buffer: deque[Entry] = deque()
        waiting: Sized = ()
        size = 0.0
        if state is not None:
            buffer, waiting, size = (
                state.buffer,
                state.waiting_receivers,
                state.max_buffer_size,
            )
        append = buffer.append
        burst_limit = self.burst_limit
        produced = 0
        generated = self.generate()
        if state is not None and not isinstance(generated, AsyncIterator):
            try:
                await self._produce_chunks(iter(generated), port, state)
            finally:
                close = getattr(generated, "close", None)
                if close is not None:
                    close()
            return
        items = generated if isinstance(generated, AsyncIterator) else _async(generated)
        try:
            async for item in items:
                now = monotonic()
                # Envelope.start, inlined: this runs for every message.
                entry = (
                    now,
                    new_envelope(Envelope, (item, next_seq(), now, None, None)),
                )
                if state is not None and not waiting and len(buffer) < size:
                    if state.open_receive_channels:
                        append(entry)
                        port.sent += 1
                    else:
                        emit(entry)  # counts the drop
                elif (pending := emit(entry)) is not None:
                    await pending
                produced += 1
                if produced >= burst_limit:
                    produced = 0
                    await checkpoint()
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def _produce_chunks(
        self, items: Iterator[Any], port: OutputPort, state: StreamState[Entry]
    ) -> None:
        """``_produce`` for a plain generator into one batched ``block`` connection:
        its items are taken a chunk at a time and put into the stream at once, with
        no async generator stepped per item.

        A chunk is never more than the stream has room for (nor more than what is
        left of ``burst_limit``), so the generator runs exactly as far ahead as
        one item at a time would: with a full stream, one item, whose ``emit``
        waits for room. Each item is stamped when it is taken; what the generator
        yielded before it raised is sent before the error is reported.
        """
        emit_all = port.emit_all
        buffer, size = state.buffer, state.max_buffer_size
        burst_limit = self.burst_limit
        clock, seq, make = monotonic, next_seq, new_envelope
        produced = 0
        while True:
            limit = burst_limit - produced
            room = size - len(buffer)
            if room < limit:
                limit = max(int(room), 1)
            chunk: list[Entry] = []
            add = chunk.append
            error: Exception | None = None
            try:
                for item in islice(items, limit):
                    now = clock()
                    # Envelope.start, inlined: this runs for every message.
                    add((now, make(Envelope, (item, seq(), now, None, None))))
            except Exception as exc:
                error = exc
            taken = len(chunk)
            if (pending := emit_all(chunk)) is not None:
                await pending
            if error is not None:
                raise error
            if taken < limit:
                return  # the generator is done
            produced += taken
            if produced >= burst_limit:
                produced = 0
                await checkpoint()

    def _first_output(self) -> OutputPort:
        return next(iter(self.data_outputs.values()))

    def _no_default_output(self, entry: Entry) -> None:
        raise WiringError(
            f"source {self.name!r} has several outputs and none named 'out', so "
            "generate() cannot yield; use `await self.emit(port, item)` instead"
        )


class Timer(Source):
    """Produces items on a clock: ``tick()`` runs ``every`` seconds, or on a cron
    ``schedule`` (five fields, UTC), and returns or yields the items to send.

    The first tick with ``every`` runs at start. A tick that runs long (or whose
    items wait for room downstream) never makes ticks pile up: the ticks that came
    due meanwhile are skipped and counted (``ticker.skipped``). An exception in
    ``tick()`` is reported like any failure and the next tick runs on time.
    """

    def __init__(
        self,
        name: str,
        *,
        every: float | None = None,
        schedule: str | None = None,
        outputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, outputs=outputs, burst_limit=burst_limit)
        try:
            self.ticker = Ticker(clock or LoopClock(), every=every, schedule=schedule)
        except ValueError as exc:
            raise WiringError(f"timer {name!r}: {exc}") from None

    @property
    def clock(self) -> Clock:
        """What the ticks are timed by; set a ``ManualClock`` before the service
        starts to drive them by hand."""
        return self.ticker.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.ticker.clock = clock

    @abstractmethod
    def tick(self) -> MaybeAwaitable[Any]:
        """Return the item(s) to send now: one, a list, ``None``, or ``yield`` them."""

    async def generate(self) -> AsyncIterator[Any]:
        """Tick on the clock and yield what each tick gives."""
        ticker = self.ticker
        due = ticker.first()
        while True:
            await ticker.clock.sleep_until(due)
            try:
                result = self.tick()
                if inspect.isawaitable(result):
                    result = await result
                async for item in each(result):
                    yield item
            except Exception as exc:
                await self.fail(self._out or self._first_output(), None, exc)
            due = ticker.next()


class _OneToOne(Component, ABC):
    """One input, one output, one user method: what Transformer and Filter share."""

    default_inputs = _ONE_IN
    default_outputs = _ONE_OUT

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
        concurrency: int = 1,
        ordering: Ordering = "input",
        blocking: bool = False,
    ) -> None:
        super().__init__(
            name,
            inputs=inputs,
            outputs=outputs,
            burst_limit=burst_limit,
            concurrency=concurrency,
            ordering=ordering,
            blocking=blocking,
        )
        self._out = _single_output(self)
        _require_inputs(self, exactly_one=True)
        self.use(self._user_method())

    @abstractmethod
    def _user_method(self) -> Callable[[Any], Any]:
        """The method the loop calls per item."""


class Transformer(_OneToOne):
    """One input, one output: ``transform(item)`` returns the new item or ``None``.

    ``None`` drops the message (counted as dropped on the input port). The new item
    travels as a new message: same correlation id, caused by the input message.
    A list (or a generator: ``yield``) sends each of its items as such a message;
    an empty one drops the input like ``None``.

    With ``batch``, ``transform`` takes a list of items and returns a list: the
    outputs are caused by the inputs in order when there are as many, else each
    by the batch's first input.
    """

    kind = "transformer"

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
        batch: Batch | None = None,
        concurrency: int = 1,
        ordering: Ordering = "input",
        blocking: bool = False,
    ) -> None:
        super().__init__(
            name,
            inputs=inputs,
            outputs=outputs,
            burst_limit=burst_limit,
            concurrency=concurrency,
            ordering=ordering,
            blocking=blocking,
        )
        if batch is not None:
            self.batching = Batching(batch)

    @abstractmethod
    def transform(self, item: Any, /) -> MaybeAwaitable[Any]:
        """Return the item to send on, or ``None`` to drop this one."""

    def _user_method(self) -> Callable[[Any], Any]:
        return self.transform

    def _delivery(self, port: InputPort) -> Delivery:
        out = self._out
        by = out.address
        entries: list[Entry] = []
        append = entries.append

        def deliver(
            envelope: Envelope, result: Any, now: float
        ) -> Awaitable[None] | None:
            if result is None:
                port.dropped += 1
            elif not is_plural(result):
                append((now, envelope.derive(result, now, by)))
            elif isinstance(result, AsyncIterator):
                return self._derive_each(port, envelope, each(result), append, now)
            else:
                count = 0
                try:
                    for item in result:
                        append((now, envelope.derive(item, now, _nth(by, count))))
                        count += 1
                except Exception as exc:  # the user's generator raised
                    return self.fail(port, envelope, exc)
                if count == 0:
                    port.dropped += 1
            return None

        return Delivery(deliver, partial(out.emit_all, entries), derive=append, by=by)

    async def _derive_each(
        self,
        port: InputPort,
        envelope: Envelope,
        items: AsyncIterator[Any],
        append: Callable[[Entry], None],
        now: float,
    ) -> None:
        """What an ``async def`` generator yields, each item as a message."""
        index = 0
        try:
            async for item in items:
                append(
                    (now, envelope.derive(item, now, _nth(self._out.address, index)))
                )
                index += 1
        except Exception as exc:
            await self.fail(port, envelope, exc)
            return
        if index == 0:
            port.dropped += 1

    def _deliver_batch(
        self, port: InputPort, envelopes: list[Envelope], result: Any, now: float
    ) -> Awaitable[None] | None:
        by = self._out.address
        outputs: list[Any] = [] if result is None else list(result)
        if not outputs:
            port.dropped += len(envelopes)
            return None
        paired = len(outputs) == len(envelopes)
        first = envelopes[0]
        entries = [
            (
                now,
                (
                    envelopes[index].derive(item, now, by)
                    if paired
                    else first.derive(item, now, _nth(by, index))
                ),
            )
            for index, item in enumerate(outputs)
        ]
        return self._out.emit_all(entries)


class Filter(_OneToOne):
    """One input, one output: ``keep(item)`` says whether the message goes on.

    A kept message is forwarded unchanged (same message id); a rejected one is
    counted as dropped on the input port.
    """

    kind = "filter"

    @abstractmethod
    def keep(self, item: Any) -> MaybeAwaitable[bool]:
        """Return whether the item goes on."""

    def _user_method(self) -> Callable[[Any], Any]:
        return self.keep

    def _delivery(self, port: InputPort) -> Delivery:
        entries: list[Entry] = []
        append = entries.append

        def deliver(envelope: Envelope, result: Any, now: float) -> None:
            if result:
                append((now, envelope))
            else:
                port.dropped += 1

        flush = partial(self._out.emit_all, entries)
        return Delivery(deliver, flush, forward={True: append})


RouteResult = str | Iterable[str] | None


class Router(Component, ABC):
    """One input, named outputs: ``route(item)`` names the output port(s).

    Return a port name, a list of names (the message goes to each), or ``None``
    (dropped, counted). A name that is not an output port is an error: counted,
    logged and reported like an exception; the known names still get the message.
    """

    kind = "router"
    default_inputs = _ONE_IN

    def __init__(
        self,
        name: str,
        *,
        outputs: Mapping[str, Any],
        inputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
        concurrency: int = 1,
        ordering: Ordering = "input",
        blocking: bool = False,
    ) -> None:
        super().__init__(
            name,
            inputs=inputs,
            outputs=outputs,
            burst_limit=burst_limit,
            concurrency=concurrency,
            ordering=ordering,
            blocking=blocking,
        )
        _require_inputs(self, exactly_one=True)
        self._routes = self.data_outputs
        if not self._routes:
            raise WiringError(f"router {name!r} needs at least one output port")
        self.use(self.route)

    @abstractmethod
    def route(self, item: Any) -> MaybeAwaitable[RouteResult]:
        """Return the output port name(s) for the item, or ``None`` to drop it."""

    def _delivery(self, port: InputPort) -> Delivery:
        outboxes: list[tuple[OutputPort, list[Entry]]] = [
            (output, []) for output in self._routes.values()
        ]
        add = {
            name: box.append
            for name, (_, box) in zip(self._routes, outboxes, strict=True)
        }

        def deliver(
            envelope: Envelope, result: Any, now: float
        ) -> Awaitable[None] | None:
            if result is None:
                port.dropped += 1
                return None
            if isinstance(result, str):
                append = add.get(result)
                if append is not None:
                    append((now, envelope))
                    return None
                return self.fail(port, envelope, self._unknown([result]))
            try:
                names = list(result)
            except TypeError:
                return self.fail(
                    port,
                    envelope,
                    TypeError(
                        f"route() must return a port name, a list of names or "
                        f"None, not {type(result).__name__}"
                    ),
                )
            unknown: list[str] = []
            for name in names:
                append = add.get(name)
                if append is None:
                    unknown.append(name)
                else:
                    append((now, envelope))
            return (
                self.fail(port, envelope, self._unknown(unknown)) if unknown else None
            )

        def flush() -> Awaitable[None] | None:
            waiting = [
                pending
                for output, box in outboxes
                if box and (pending := output.emit_all(box)) is not None
            ]
            return _await_each(waiting) if waiting else None

        return Delivery(deliver, flush, forward=add)

    def _unknown(self, names: Sequence[object]) -> UnknownRouteError:
        return UnknownRouteError(
            f"router {self.name!r} has no output port "
            + ", ".join(repr(name) for name in names)
            + f"; its outputs are {', '.join(map(repr, self._routes))}"
        )


class Merger(Component):
    """Named inputs, one output; no user code. Fair fan-in.

    Every input is drained by its own task, which yields after at most
    ``burst_limit`` messages, so no input waits behind more than ``burst_limit``
    messages of another and a slow input is never starved. When the output is
    full, waiting inputs are served in the order they started waiting.
    """

    kind = "merger"
    default_outputs = _ONE_OUT

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
    ) -> None:
        super().__init__(name, inputs=inputs, outputs=outputs, burst_limit=burst_limit)
        self._out = _single_output(self)
        _require_inputs(self, exactly_one=False)

    def _delivery(self, port: InputPort) -> Delivery:
        entries: list[Entry] = []
        append = entries.append

        def deliver(envelope: Envelope, result: Any, now: float) -> None:
            append((now, envelope))

        return Delivery(deliver, partial(self._out.emit_all, entries))


class Sink(Component, ABC):
    """Named inputs, no outputs (except ``errors``): ``consume(item)`` keeps it.

    All inputs are drained concurrently, each by its own task. With ``batch``,
    ``consume`` takes a list of items (up to ``max_items``, or fewer after
    ``max_wait_s``); over Redis they are acknowledged once it returns.
    """

    kind = "sink"
    tracks_message = True
    default_inputs = _ONE_IN

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
        batch: Batch | None = None,
        concurrency: int = 1,
        ordering: Ordering = "input",
        blocking: bool = False,
    ) -> None:
        super().__init__(
            name,
            inputs=inputs,
            outputs=outputs,
            burst_limit=burst_limit,
            concurrency=concurrency,
            ordering=ordering,
            blocking=blocking,
        )
        _require_inputs(self, exactly_one=False)
        if batch is not None:
            self.batching = Batching(batch)
        if self.data_outputs:
            raise WiringError(
                f"sink {name!r} may only have an {ERRORS_PORT!r} output, "
                f"not {', '.join(map(repr, self.data_outputs))}"
            )
        self.use(self.consume)

    @abstractmethod
    def consume(self, item: Any, /) -> MaybeAwaitable[None]:
        """Do whatever the service does with a finished item."""


def _single_output(component: Component) -> OutputPort:
    data = component.data_outputs
    if len(data) != 1:
        raise WiringError(
            f"{component.kind} {component.name!r} needs exactly one output port "
            f"besides {ERRORS_PORT!r}, got {sorted(data) or 'none'}"
        )
    return next(iter(data.values()))


def _require_inputs(component: Component, *, exactly_one: bool) -> None:
    count = len(component.inputs)
    if count == 0 or (exactly_one and count != 1):
        wanted = "exactly one input port" if exactly_one else "at least one input port"
        raise WiringError(
            f"{component.kind} {component.name!r} needs {wanted}, "
            f"got {sorted(component.inputs) or 'none'}"
        )


def _nth(by: str, index: int) -> str:
    """Where the ``index``-th of several items from one input was made: the first
    keeps ``by``, so its id is the one a single result would have (ids of messages
    made from a redelivered message stay the same, see ``Envelope.derive``)."""
    return by if index == 0 else f"{by}#{index}"


async def _await_each(awaitables: list[Awaitable[None]]) -> None:
    for awaitable in awaitables:
        await awaitable


async def _async(items: Iterator[Any]) -> AsyncGenerator[Any, None]:
    """A plain generator as an async one; closing it closes the generator."""
    try:
        for item in items:
            yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
