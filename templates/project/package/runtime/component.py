"""The component base class: ports, lifecycle, the per-message loop, failures.

Each incoming connection is drained by its own task (so a sink or merger drains all
inputs concurrently). The loop takes messages with ``receive_nowait`` and only
awaits when the stream is empty, yields to other tasks every ``burst_limit``
messages, and keeps its metrics in plain ints and bucket arrays.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from time import monotonic
from typing import Any, ClassVar, NamedTuple, TypeAlias, TypeVar

import anyio
from anyio import EndOfStream, WouldBlock, to_thread
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint
from pydantic import ValidationError

from . import tracing
from .batching import Batching
from .concurrency import Ordering, Window, Work
from .context import current_message, set_message, track_handling
from .dedup import Dedup, MemoryDedup
from .envelope import Entry, Envelope, Origin, new_envelope, next_seq
from .errors import ErrorRecord, ServiceError, WiringError
from .logs import MaskedLogger
from .pii import Masker
from .ports import Connection, InputPort, OutputPort
from .results import PLURAL
from .settings import ServiceSettings

__all__ = [
    "Component",
    "Delivery",
    "MaybeAwaitable",
    "RunContext",
    "State",
    "current_message",
]

T = TypeVar("T")
#: What a user method returns: a value, or (``async def``) an awaitable of it.
MaybeAwaitable: TypeAlias = T | Awaitable[T]

#: ``deliver(envelope, result, now)``: what the loop does with a result; an
#: awaitable it returns is awaited at once.
BatchDeliver: TypeAlias = Callable[[Envelope, Any, float], Awaitable[None] | None]
#: ``flush()``: send what the ``deliver`` calls since the last flush collected.
Flush: TypeAlias = Callable[[], Awaitable[None] | None]
#: ``retry_after(envelope, failed)``: the wait before a message that failed its
#: ``failed``-th delivery is tried again in place (None: no more); a keyed input
#: over Redis has one (``PartitionedConnection.retry_after``)
RetryAfter: TypeAlias = Callable[[Envelope, int], float | None]
#: ``append(entry)``: add an entry to what the next ``flush`` sends.
Append: TypeAlias = Callable[[Entry], None]


class Delivery(NamedTuple):
    """How one receiving loop hands on what user code returned.

    ``deliver`` handles any result, one message at a time, and ``flush`` sends
    what it collected. The two common shapes have a shortcut the batched loop
    takes without a call per message (``deliver`` still covers every other
    result): ``forward`` maps a result to where the message itself goes (a router's
    port names, a filter's ``True``); ``derive`` takes a new message made from the
    input, with the result as its item (a transformer; ``None`` drops the input).
    """

    deliver: BatchDeliver | None = None
    flush: Flush | None = None
    forward: Mapping[Any, Append] | None = None
    derive: Append | None = None
    #: ``component.port`` deriving, for messages whose ids were fixed elsewhere
    by: str = ""


ERRORS_PORT = "errors"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
#: ErrorRecord messages are cut to this length, after masking.
MAX_ERROR_MESSAGE = 2000


class State(StrEnum):
    """Where a component is in its lifecycle."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(eq=False)
class RunContext:
    """What a running service shares with its components."""

    settings: ServiceSettings
    #: where ``Component.once`` remembers what was applied
    dedup: Dedup = field(default_factory=MemoryDedup)
    #: set when the service may start moving messages (every setup has succeeded)
    go: anyio.Event = field(default_factory=anyio.Event)
    #: set when the service is asked to stop
    stopping: anyio.Event = field(default_factory=anyio.Event)


class Component:
    """Base of every component: named ports, lifecycle hooks and a logger.

    Subclass one of the primitives (``Source``, ``Transformer``, ``Filter``,
    ``Router``, ``Merger``, ``Sink``) rather than this class. Override ``setup``
    and ``cleanup`` for resources; ``cleanup`` runs even when the service is
    cancelled or another component fails, once ``setup`` has succeeded.
    """

    kind: ClassVar[str] = "component"
    #: whether ``current_message()`` is set while user code runs (it costs a little
    #: per message; always on for sinks and for connections carried by Redis)
    tracks_message: ClassVar[bool] = False
    #: set when the user method takes a batch of items at once (``batch``)
    batching: Batching | None = None
    #: ports used when the wiring passes none
    default_inputs: ClassVar[Mapping[str, Any]] = {}
    default_outputs: ClassVar[Mapping[str, Any]] = {}

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
        if not _NAME.match(name):
            raise WiringError(
                f"component name {name!r} is not a lowercase identifier "
                "(letters, digits, underscores)"
            )
        if burst_limit < 1:
            raise WiringError(
                f"component {name!r}: burst_limit must be at least 1, "
                f"got {burst_limit!r}"
            )
        self.name = name
        self.burst_limit = burst_limit
        #: how the user method runs: how many items at once, in which order they
        #: leave, in worker threads or not (``concurrency.Work``)
        self.work = Work(concurrency, ordering, blocking)
        self.work.check(name)
        self.inputs = {
            port: InputPort(name, port, schema)
            for port, schema in (
                self.default_inputs if inputs is None else inputs
            ).items()
        }
        self.outputs = {
            port: OutputPort(name, port, schema)
            for port, schema in (
                self.default_outputs if outputs is None else outputs
            ).items()
        }
        errors = self.outputs.get(ERRORS_PORT)
        if errors is not None and errors.schema is not ErrorRecord:
            raise WiringError(
                f"component {name!r}: the {ERRORS_PORT!r} output must have the "
                f"schema ErrorRecord, not {errors.schema!r}"
            )
        #: where it is in its lifecycle (``state`` is a stateful component's
        #: keyed state, ``keyedstate.Stateful``)
        self.phase = State.CREATED
        self.masker = Masker()
        #: the message a synchronous user method is handling right now (nothing else
        #: runs meanwhile), so that its log lines carry the message's ids
        self.handling: Envelope | None = None
        #: A logger bound to this component; masks personal data in what it logs.
        self.log = MaskedLogger(
            logging.getLogger(name), self.masker, {}, current=self._handling
        )
        self._context: RunContext | None = None
        # The kind's per-message hooks: the user's method (None: no user code),
        # whether it is async (decided once here, not per message), and what to do
        # with its result.
        self._call: Callable[[Any], Any] | None = None
        self._call_is_async = False
        self._deliver: (
            Callable[[InputPort, Envelope, Any, float], Awaitable[None] | None] | None
        ) = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    async def setup(self) -> None:
        """Acquire resources before the first message (override as needed)."""

    async def cleanup(self) -> None:
        """Release resources after the last message (override as needed)."""

    @property
    def is_running(self) -> bool:
        """Whether the component is between a successful setup and its end."""
        return self.phase is State.RUNNING

    @property
    def data_outputs(self) -> dict[str, OutputPort]:
        """The output ports other than ``errors``."""
        return {name: p for name, p in self.outputs.items() if name != ERRORS_PORT}

    def bind(self, service: str, masker: Masker) -> None:
        """Attach to a service: its logger hierarchy and its personal-data masker."""
        self.masker = masker
        self.log = MaskedLogger(
            logging.getLogger(f"{service}.{self.name}"),
            masker,
            {"service": service, "component": self.name},
            current=self._handling,
        )

    def use(self, method: Callable[..., Any] | None) -> None:
        """Set the user method the per-message loop calls (sync or async)."""
        self._call = method
        self._call_is_async = method is not None and inspect.iscoroutinefunction(method)
        if self._call_is_async and self.work.blocking:
            raise WiringError(
                f"component {self.name!r}: blocking runs a plain def in worker "
                f"threads, but {getattr(method, '__name__', 'the method')}() is "
                "async def; make it a def, or drop blocking"
            )

    def check_inputs(self) -> None:
        """Raise ``WiringError`` for an input connection this component cannot take
        (reported as its setup's failure: the service does not start)."""

    def _method(self, connection: Connection) -> Callable[[Any], Any] | None:
        """The user method a loop over ``connection`` calls, taken once per loop
        (``keyedstate.Stateful`` wraps it with the item's key's state)."""
        return self._call

    def _handling(self) -> Envelope | None:
        return self.handling

    def request_stop(self) -> None:
        """Called by the service when it begins to stop; stop taking new work."""

    async def once(
        self, effect: Callable[[], MaybeAwaitable[Any]], *, key: str | None = None
    ) -> bool:
        """Run ``effect`` unless it already ran for this message (or this ``key``).

        Returns whether it ran now. Keys are remembered per component for
        ``dedup_ttl_s``; in memory, or in Redis when the service uses Redis (see
        ``Dedup``). Without ``key``, the key is the id of the message being handled,
        which stays the same when Redis delivers the message again. Raises
        ``DedupBusy`` while another delivery of the same message is running the
        effect (the message is then retried like any failure).
        """
        if key is None:
            message = current_message()
            if message is None:
                raise ServiceError(
                    f"component {self.name!r}: once() without a key needs a message "
                    "being handled (set tracks_message = True on a non-sink class)"
                )
            key = message.id
        if self._context is None:
            raise ServiceError(f"component {self.name!r} is not running")
        return await self._context.dedup.once(f"{self.name}:{key}", effect)

    async def lifecycle(
        self,
        context: RunContext,
        *,
        task_status: TaskStatus[BaseException | None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Set up, report to the service, run until drained, close outputs, clean up.

        Reports ``None`` once set up, or the exception ``setup()`` raised (then no
        cleanup runs: there is nothing set up to clean).
        """
        self._context = context
        self.phase = State.STARTING
        try:
            self.check_inputs()
            await self.setup()
        except Exception as exc:
            self.phase = State.FAILED
            self.log.error("setup failed", exc_info=exc)
            for port in self.outputs.values():
                port.close()
            task_status.started(exc)
            return
        task_status.started(None)
        try:
            await context.go.wait()
            self.phase = State.RUNNING
            await self.serve(context)
        except Exception:
            self.phase = State.FAILED
            raise
        finally:
            if self.phase is not State.FAILED:
                self.phase = State.STOPPED
            for port in self.outputs.values():
                port.close()
            await self._cleanup(context.settings.cleanup_timeout_s)

    async def serve(self, context: RunContext) -> None:
        """Run until every incoming connection is closed and drained."""
        drains = [(p, c) for p in self.inputs.values() for c in p.connections]
        if len(drains) == 1:
            await self._drain(*drains[0])
            return
        async with anyio.create_task_group() as group:
            for port, connection in drains:
                group.start_soon(self._drain, port, connection)

    async def _drain_batches(self, port: InputPort, connection: Connection) -> None:
        """The loop a batch at a time, for a memory stream and plain user code.

        Each turn takes what is buffered (at most what is left of ``burst_limit``),
        handles it message by message, and hands what it produced downstream in
        one operation per output. The metrics stay exact per message: age is
        enqueue to the batch's dequeue, recorded for the batch at once; latency is
        timed around each call, where a call under the first bucket only counts
        one (the sum of consecutive calls is the span they cover). Everything is
        written to the port before each await, so a scrape sees consistent numbers.
        (A stream whose internals ``take`` cannot read still gives batches, taken
        one ``receive_nowait`` at a time.)
        """
        call = self._method(connection)
        deliver, flush, forward, derive, by = self._delivery(port)
        age, latency = port.age, port.latency
        latency_bounds, latency_counts = latency.bounds, latency.counts
        fastest = latency_bounds[0]
        burst_limit = self.burst_limit
        clock, bucket, envelope_of = monotonic, bisect_left, new_envelope
        plural = PLURAL  # a list or a generator: several items, through ``deliver``
        if self.tracks_message:
            # ``handling`` is set per message anyway; current_message() reads it.
            track_handling(self._handling)
        take = connection.take
        handled = 0
        async with connection.receiving() as receiver:
            while True:
                batch = take(burst_limit - handled)
                if not batch:
                    try:
                        batch = [receiver.receive_nowait()]
                    except WouldBlock:
                        try:
                            batch = [await receiver.receive()]
                        except EndOfStream:
                            return
                        handled = 0
                        batch += take(burst_limit - 1)
                    except EndOfStream:
                        return
                port.holding = len(batch)
                now = clock()
                age.observe_since(now, list(map(_stamp, batch)))
                if call is None:
                    latency_counts[0] += len(batch)  # no user code: no time in it
                # ``started``: when the current call began (the previous one ended);
                # ``since``: the start of the run of calls not yet added to the sum.
                started = since = now
                fast = 0
                for _, envelope in batch:
                    if call is None:
                        result = envelope.item
                    else:
                        self.handling = envelope
                        try:
                            result = call(envelope.item)
                        except Exception as exc:
                            self.handling = None
                            latency.sum += started - since
                            latency_counts[0] += fast
                            fast = 0
                            await self.fail(port, envelope, exc)
                            started = since = clock()
                            continue
                        done = clock()
                        if done - started <= fastest:
                            fast += 1
                        else:
                            latency_counts[bucket(latency_bounds, done - started)] += 1
                        started = done
                    if derive is not None and result.__class__ not in plural:
                        if result is None:
                            port.dropped += 1
                        elif envelope.parent.__class__ is Origin:
                            derive((started, envelope.derive(result, started, by)))
                        else:
                            # Envelope.derive, inlined: this runs for every message.
                            correlation = envelope.correlation
                            if correlation is None:
                                correlation = envelope
                            fields = (
                                result,
                                next_seq(),
                                started,
                                correlation,
                                envelope,
                            )
                            derive((started, envelope_of(Envelope, fields)))
                        continue
                    if forward is not None:
                        try:
                            append = forward.get(result)
                        except Exception:  # unhashable (a list of names), or odd
                            append = None
                        if append is not None:
                            append((started, envelope))
                            continue
                    if deliver is not None:
                        pending = deliver(envelope, result, started)
                        if pending is not None:  # a router's unknown name
                            self.handling = None
                            latency.sum += started - since
                            latency_counts[0] += fast
                            fast = 0
                            await pending
                            started = since = clock()
                self.handling = None
                latency.sum += started - since
                latency_counts[0] += fast
                # From here on, what is not delivered yet is the output's ``unsent``.
                port.holding = 0
                if flush is not None and (pending := flush()) is not None:
                    await pending
                handled += len(batch)
                if handled >= burst_limit:
                    handled = 0
                    await checkpoint()

    def _delivery(self, port: InputPort) -> Delivery:
        """How one receiving loop (of ``port``) hands on results; see ``Delivery``.

        Called once per incoming connection, so that each loop collects its own
        batch. This default calls the per-message ``_deliver`` hook, if set.
        """
        hook = self._deliver
        if hook is None:
            return Delivery()

        def deliver(
            envelope: Envelope, result: Any, now: float
        ) -> Awaitable[None] | None:
            return hook(port, envelope, result, now)

        return Delivery(deliver)

    async def _drain(self, port: InputPort, connection: Connection) -> None:
        if self.batching is not None:  # the user method takes lists
            await self._drain_grouped(port, connection, self.batching)
            return
        if self.work.windowed:  # several items at once, or in worker threads
            await self._drain_window(port, connection)
            return
        # Batches where nothing needs to hear about each message on its own: not
        # over a per-message transport (acknowledged per message, or encoded when
        # sent), not around async user code (which may wait, and let others run,
        # in mid-batch).
        # Traced (tracing.py): a span per message, so one message at a time.
        if (
            tracing.TRACER is None
            and not connection.per_message
            and connection.settled is None
            and not self._call_is_async
            and not any(
                c.per_message
                for output in self.outputs.values()
                for c in output.connections
            )
        ):
            await self._drain_batches(port, connection)
        else:
            await self._drain_each(port, connection)

    async def _drain_window(self, port: InputPort, connection: Connection) -> None:
        """The loop with ``concurrency`` items in the user method at once, or in
        worker threads (``blocking``): see ``concurrency.Window``. Each message is
        handed on, then settled, when the window releases it."""
        deliver, flush, *_ = self._delivery(port)
        settled = connection.settled
        call, is_async = self._method(connection), self._call_is_async
        retry_after: RetryAfter | None = getattr(connection, "retry_after", None)
        if retry_after is not None and call is not None:  # a keyed input over Redis
            call, is_async = self._retrying(port, call, retry_after)
        tracer = tracing.TRACER
        if tracer is not None and call is not None:  # decided once per loop
            call, deliver = tracing.traced_loop(
                tracer,
                self.name,
                port.address,
                getattr(connection, "partition", None),
                call,
                is_async,
                deliver,
                current_message,
            )

        async def release(
            envelope: Envelope, result: Any, error: Exception | None
        ) -> None:
            if error is None and deliver is not None:
                try:
                    if (pending := deliver(envelope, result, monotonic())) is not None:
                        await pending
                    if flush is not None and (pending := flush()) is not None:
                        await pending
                except Exception as exc:  # a Redis connection could not encode it
                    error = exc
            if error is not None:
                await self.fail(port, envelope, error)
            if settled is not None:
                settled(envelope, error)

        window = Window(
            self.work, call, is_async=is_async, port=port, key=connection.key
        )
        async with connection.receiving() as receiver:
            await window.run(receiver, release)

    async def _drain_grouped(
        self, port: InputPort, connection: Connection, batching: Batching
    ) -> None:
        """The loop a user batch at a time: the method takes a list of items.

        ``batching`` collects up to ``max_items`` messages (or fewer after
        ``max_wait``); the method gets their items; ``_deliver_batch`` hands on
        what it returned; then every message of the batch is settled (on Redis:
        acknowledged once what the batch sent is written). A failure fails each
        message of the batch, so each is retried or reported on its own.
        """
        call, call_is_async = self._call, self._call_is_async
        blocking = self.work.blocking  # a plain def in worker threads
        settled = connection.settled
        retry_after: RetryAfter | None = getattr(connection, "retry_after", None)
        clock = monotonic
        async with connection.receiving() as receiver:
            while batch := await batching.collect(receiver):
                port.holding = len(batch)
                started = clock()
                port.age.observe_since(started, list(map(_stamp, batch)))
                envelopes = [envelope for _, envelope in batch]
                items = [envelope.item for envelope in envelopes]
                error: Exception | None = None
                try:
                    if call is None:
                        result: Any = items
                    elif blocking:
                        result = await to_thread.run_sync(call, items)
                    else:
                        result = call(items)
                        if call_is_async:
                            result = await result
                    batching.observe(len(batch), clock() - started)
                    pending = self._deliver_batch(port, envelopes, result, clock())
                    if pending is not None:
                        await pending
                except Exception as exc:
                    error = exc
                    if retry_after is not None:  # the whole batch, in place
                        error = await self._again_batch(
                            port, envelopes, exc, retry_after
                        )
                    if error is not None:
                        for envelope in envelopes:
                            await self.fail(port, envelope, error)
                port.holding = 0
                if settled is not None:
                    for envelope in envelopes:
                        settled(envelope, error)
                await checkpoint()

    def _deliver_batch(
        self, port: InputPort, envelopes: list[Envelope], result: Any, now: float
    ) -> Awaitable[None] | None:
        """Hand on what the user method returned for a batch (a sink: nothing)."""
        return None

    async def _drain_each(self, port: InputPort, connection: Connection) -> None:
        """The loop one message at a time: Redis, and async user code."""
        call, call_is_async = self._method(connection), self._call_is_async
        deliver, flush, *_ = self._delivery(port)
        age, latency = port.age, port.latency
        age_bounds, age_counts = age.bounds, age.counts
        latency_bounds, latency_counts = latency.bounds, latency.counts
        fastest = latency_bounds[0]
        burst_limit = self.burst_limit
        clock, bucket = monotonic, bisect_left
        # Only a connection that acknowledges (Redis) wants to hear about each message.
        settled = connection.settled
        # A keyed input over Redis tries a failed item again in place (its key's order)
        retry_after: RetryAfter | None = getattr(connection, "retry_after", None)
        # The context variable costs ~0.1 us per message: set only where it is needed
        # (an async method may interleave with others; a sink's once(); Redis).
        track = (
            set_message
            if self.tracks_message or settled is not None or call_is_async
            else None
        )
        tracer = tracing.TRACER
        if tracer is not None:  # decided once per loop: off costs nothing per message
            track = set_message
            call, deliver = tracing.traced_loop(
                tracer,
                self.name,
                port.address,
                getattr(connection, "partition", None),
                call,
                call_is_async,
                deliver,
                current_message,
            )
        handled = 0
        async with connection.receiving() as receiver:
            receive_nowait = receiver.receive_nowait
            # ``now`` is when the current message was taken. When the next message
            # is already waiting, the end of one message is the start of the next:
            # one clock read per message.
            now = clock()
            while True:
                try:
                    enqueued, envelope = receive_nowait()
                except WouldBlock:
                    try:
                        enqueued, envelope = await receiver.receive()
                    except EndOfStream:
                        return
                    now = clock()
                    handled = 0
                except EndOfStream:
                    return
                # Histogram.observe, inlined: this runs for every message.
                waited = now - enqueued
                age_counts[bucket(age_bounds, waited)] += 1
                age.sum += waited
                if track is not None:
                    track(envelope)
                try:
                    if call is None:
                        result = envelope.item
                    elif call_is_async:
                        result = await call(envelope.item)
                    else:
                        self.handling = envelope
                        try:
                            result = call(envelope.item)
                        finally:
                            self.handling = None
                except Exception as exc:
                    error: Exception | None
                    if retry_after is None:
                        result, error = None, exc
                    else:
                        result, error = await self._again(
                            port, call, call_is_async, envelope, exc, retry_after
                        )
                    if error is not None:
                        await self.fail(port, envelope, error)
                        if settled is not None:
                            settled(envelope, error)
                        now = clock()
                        continue
                done = clock()
                took = done - now
                # Most user code takes less than the first bucket: skip the search.
                if took <= fastest:
                    latency_counts[0] += 1
                else:
                    latency_counts[bucket(latency_bounds, took)] += 1
                latency.sum += took
                now = done
                if deliver is not None:
                    try:
                        if (pending := deliver(envelope, result, done)) is not None:
                            await pending
                            now = clock()
                        if flush is not None and (pending := flush()) is not None:
                            await pending
                            now = clock()
                    except Exception as exc:  # a Redis connection could not encode it
                        await self.fail(port, envelope, exc)
                        if settled is not None:
                            settled(envelope, exc)
                        now = clock()
                        continue
                if settled is not None:
                    settled(envelope, None)
                handled += 1
                if handled >= burst_limit:
                    handled = 0
                    await checkpoint()
                    now = clock()

    async def _again(
        self,
        port: InputPort,
        call: Callable[[Any], Any] | None,
        is_async: bool,
        envelope: Envelope,
        error: Exception,
        retry_after: RetryAfter,
    ) -> tuple[Any, Exception | None]:
        """Try the message that failed again in place, before anything else of this
        loop (a keyed input over Redis: its key's order); its result, or the last
        error once ``retry_after`` gives up (then it is settled as failed)."""
        failed = 1
        while (delay := retry_after(envelope, failed)) is not None:
            self._retrying_in(port, error, delay, failed)
            await anyio.sleep(delay)
            failed += 1
            try:
                if call is None:
                    return envelope.item, None
                result = call(envelope.item)
                return (await result) if is_async else result, None
            except Exception as exc:
                error = exc
        return None, error

    async def _again_batch(
        self,
        port: InputPort,
        envelopes: list[Envelope],
        error: Exception,
        retry_after: RetryAfter,
    ) -> Exception | None:
        """``_again`` for a batch that failed: the user method on the same items,
        and its results handed on; None once it succeeded, else the last error."""
        call, is_async = self._call, self._call_is_async
        items = [envelope.item for envelope in envelopes]
        failed = 1
        while True:
            delays = [retry_after(envelope, failed) for envelope in envelopes]
            if None in delays:
                return error
            delay = max(d for d in delays if d is not None)
            self._retrying_in(port, error, delay, failed)
            await anyio.sleep(delay)
            failed += 1
            try:
                if call is None:
                    result: Any = items
                elif self.work.blocking:
                    result = await to_thread.run_sync(call, items)
                else:
                    result = call(items)
                    if is_async:
                        result = await result
                pending = self._deliver_batch(port, envelopes, result, monotonic())
                if pending is not None:
                    await pending
                return None
            except Exception as exc:
                error = exc

    def _retrying(
        self, port: InputPort, call: Callable[[Any], Any], retry_after: RetryAfter
    ) -> tuple[Callable[[Any], Any], bool]:
        """``call`` that tries a failed item again in place (``_again``), for the
        window, where the item keeps its key meanwhile; and whether it is async.
        Blocking code waits in its worker thread."""
        if self.work.blocking:

            def blocking(item: Any) -> Any:
                failed = 1
                while True:
                    try:
                        return call(item)
                    except Exception as exc:
                        envelope = current_message()
                        delay = (
                            None if envelope is None else retry_after(envelope, failed)
                        )
                        if delay is None:
                            raise
                        self._retrying_in(port, exc, delay, failed)
                        time.sleep(delay)  # in the worker thread
                        failed += 1

            return blocking, False
        is_async = self._call_is_async

        async def tried(item: Any) -> Any:
            try:
                result = call(item)
                return (await result) if is_async else result
            except Exception as exc:
                envelope = current_message()
                if envelope is None:
                    raise
                result, error = await self._again(
                    port, call, is_async, envelope, exc, retry_after
                )
                if error is not None:
                    raise error from None
                return result

        return tried, True

    def _retrying_in(
        self, port: InputPort, error: Exception, delay: float, failed: int
    ) -> None:
        self.log.warning(
            "%s failed on port %s (delivery %d): %s: %s; tried again in place in "
            "%.2f s, before the later items of its key",
            self.kind,
            port.name,
            failed,
            type(error).__name__,
            self.masker.mask_text(_describe(error))[:MAX_ERROR_MESSAGE],
            delay,
        )

    async def fail(
        self,
        port: InputPort | OutputPort,
        envelope: Envelope | None,
        exc: Exception,
    ) -> None:
        """Count, log (masked) and report a failure; the loop carries on.

        The ``ErrorRecord`` goes to the ``errors`` output port when there is one.
        """
        port.errors += 1
        masker = self.masker
        message = masker.mask_text(_describe(exc))[:MAX_ERROR_MESSAGE]
        message_id = envelope.id if envelope is not None else None
        correlation_id = envelope.correlation_id if envelope is not None else None
        self.log.error(
            "%s failed on port %s: %s: %s",
            self.kind,
            port.name,
            type(exc).__name__,
            message,
            exc_info=exc,
            extra={
                "port": port.name,
                "message_id": message_id,
                "correlation_id": correlation_id,
            },
        )
        errors = self.outputs.get(ERRORS_PORT)
        if errors is None:
            return
        record = ErrorRecord(
            component=self.name,
            port=port.name,
            error_type=type(exc).__name__,
            message=message,
            item=None if envelope is None else _masked_item(masker, envelope.item),
            message_id=message_id,
            correlation_id=correlation_id,
            time=datetime.now(UTC),
        )
        now = monotonic()
        failed = (
            Envelope.start(record, now)
            if envelope is None
            else envelope.derive(record, now, f"{self.name}.{ERRORS_PORT}")
        )
        pending = errors.emit((now, failed))
        if pending is not None:
            await pending

    async def _cleanup(self, timeout: float) -> None:
        # Shielded: cleanup must run even while the service is being cancelled.
        with anyio.CancelScope(shield=True), anyio.move_on_after(timeout) as scope:
            try:
                await self.cleanup()
            except Exception as exc:
                self.log.error("cleanup failed", exc_info=exc)
        if scope.cancelled_caught:
            self.log.error("cleanup took longer than %.1f s; abandoned", timeout)


_stamp = itemgetter(0)  # an entry's enqueue time


def _describe(exc: Exception) -> str:
    """The exception's message; validation errors without the offending input."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or '(root)'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        return f"{exc.error_count()} validation error(s) for {exc.title}: {problems}"
    return str(exc)


def _masked_item(masker: Masker, item: Any) -> dict[str, Any]:
    try:
        return {str(key): value for key, value in masker.as_dict(item).items()}
    except Exception:
        # An item that cannot even be dumped still deserves a (masked) trace.
        return {"repr": masker.mask_text(repr(item))[:MAX_ERROR_MESSAGE]}
