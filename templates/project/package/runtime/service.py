"""A service: components, the connections between them, and their lifecycle.

``Service.run()`` sets up every component, starts them together, and returns once
every component has finished: by itself (finite sources), or after ``stop()``. A
stop is graceful: ingress answers 503, sources stop, and everything already
accepted flows through to the sinks; ``drain_timeout_s`` bounds it, and the
returned ``DrainReport`` (also logged) says what was left.

A service may run in several processes: each runs the components its settings name
(``components``; all by default), and the connections between processes are carried
by a transport between processes (Redis). The service knows transports only through
``transport.Carrier``: one per transport it uses, made when a connection asks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from time import monotonic
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .component import Component, RunContext, State
from .components import Source
from .dedup import Dedup, MemoryDedup
from .errors import ServiceError, SettingsError, StartupError, WiringError
from .ingress import ApiEndpoint
from .logs import MaskedLogger
from .looplag import LoopLag
from .metrics import ServiceMetrics
from .pii import Masker
from .ports import Connection, InputPort, OutputPort, Overflow, Placement, Writer
from .settings import ServiceSettings
from .taps import Inlet, Tap
from .transport import Carrier, Transport, carrier_factory, transports

__all__ = ["DrainReport", "Service", "ServiceState"]

C = TypeVar("C", bound=Component)


class ServiceState(StrEnum):
    """Where a service is in its lifecycle."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class DrainReport:
    """How a service stopped."""

    #: every accepted message reached the end of the pipeline
    completed: bool
    #: seconds from the stop request to the end (0.0 if nothing asked it to stop)
    seconds: float
    #: input port (``component.port``) -> messages still queued when the drain
    #: timed out; empty when completed
    left: dict[str, int] = field(default_factory=dict)


class Service:
    """A named set of components and connections, run as one unit.

    ``pii_fields`` names the fields masked in every log line and error record
    (matched case-insensitively, at any depth).
    """

    def __init__(
        self,
        name: str,
        *,
        pii_fields: frozenset[str] | set[str] | tuple[str, ...] = frozenset(),
        settings: ServiceSettings | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or ServiceSettings()
        self.masker = Masker(pii_fields)
        self.components: dict[str, Component] = {}
        self.connections: list[Connection] = []
        self.metrics = ServiceMetrics(self.local_components)
        self.state = ServiceState.CREATED
        #: how the last run ended; set when ``run()`` returns
        self.drain_report: DrainReport | None = None
        self.log = MaskedLogger(logging.getLogger(name), self.masker, {"service": name})
        #: the event loop's lag, and the watchdog that names code blocking it
        self.loop_lag = LoopLag(
            self.settings.loop_lag_warn_ms / 1000, self.local_components, self.log
        )
        self.metrics.registry.register(self.loop_lag)
        self._context: RunContext | None = None
        self._stop_requested_at: float | None = None
        self._left: dict[str, int] | None = None
        #: each transport's carrier, once a connection uses it (``transport``)
        self.carriers: dict[str, Carrier] = {}
        self._failure: StartupError | None = None
        #: where this process serves HTTP (``serve`` sets it); with Redis, each
        #: replica lists itself there under this address (``replicas``)
        self.url: str | None = None

    def __repr__(self) -> str:
        return f"Service({self.name!r}, state={self.state.value!r})"

    # -- wiring ---------------------------------------------------------------

    def add(self, component: C) -> C:
        """Add a component; returns it, for the wiring module to keep."""
        self._require_state(ServiceState.CREATED, "add components")
        if component.name in self.components:
            raise WiringError(
                f"service {self.name!r} already has a component {component.name!r}"
            )
        routes = {
            (c.method, c.route)
            for c in self.components.values()
            if isinstance(c, ApiEndpoint)
        }
        if isinstance(component, ApiEndpoint) and (
            (component.method, component.route) in routes
        ):
            raise WiringError(
                f"api_endpoint {component.name!r}: {component.method} "
                f"{component.route} is already served by another endpoint"
            )
        component.bind(self.name, self.masker)
        settings = self.settings
        burst = settings.burst_overrides.get(component.name)
        if burst is not None:
            component.burst_limit = burst
        if isinstance(component, ApiEndpoint):
            component.configure(
                timeout_ms=settings.timeout_overrides.get(component.name),
                max_payload_kb=settings.payload_overrides.get(component.name),
            )
        self.components[component.name] = component
        return component

    def connect(
        self,
        source: str,
        target: str,
        *,
        buffer_size: int = 1024,
        overflow: Overflow = "block",
        transport: Transport = "memory",
        key: str | None = None,
        max_lag: int | None = None,
        partitions: int | None = None,
    ) -> Connection:
        """Connect the output ``"component.port"`` to the input ``"component.port"``.

        ``buffer_size`` bounds the connection's stream (an env override for the
        target port wins); ``overflow`` says what a full buffer does. ``transport``
        carries it in this process's memory or by Redis (``settings.transport``,
        when set, wins). ``key`` (a field, ``a.b`` nested) keys it: the items of one
        value keep their order and are never in the receiver's method together.
        ``max_lag``: over Redis, the most entries the target's group may hold unread
        or pending before senders wait (HTTP ingress: 503); memory ignores it, its
        ``buffer_size`` being the bound already. ``partitions``: over Redis, the
        streams a keyed connection is split into (None: the transport's default);
        memory ignores it.
        """
        if partitions is not None:
            if key is None:
                raise WiringError(
                    f"connection {source} -> {target}: partitions needs a key"
                )
            if partitions < 1:
                raise WiringError(
                    f"connection {source} -> {target}: partitions must be at least "
                    f"1, got {partitions!r}"
                )
        getter = None if key is None else attrgetter(key)
        connection = self._connect(
            source,
            target,
            buffer_size=buffer_size,
            overflow=overflow,
            transport=self.settings.transport or transport,
            key=getter,
            partitions=partitions,
        )
        if key is not None:
            if not connection.keeps_key_order:
                raise WiringError(
                    f"connection {source} -> {target} is keyed by {key!r}, which "
                    f"transport {connection.transport!r} cannot keep in order"
                )
            connection.key = getter
        if max_lag is not None:
            if max_lag < 1:
                raise WiringError(
                    f"connection {source} -> {target}: max_lag must be at least 1, "
                    f"got {max_lag!r}"
                )
            connection.max_lag = max_lag
        return connection

    def _connect(
        self,
        source: str,
        target: str,
        *,
        buffer_size: int,
        overflow: Overflow,
        transport: Transport,
        key: Callable[[Any], object] | None = None,
        partitions: int | None = None,
    ) -> Connection:
        self._require_state(ServiceState.CREATED, "connect ports")
        output = self._output(source)
        port = self._input(target)
        if not _compatible(output.schema, port.schema):
            raise WiringError(
                f"connection {source} -> {target}: {_name(output.schema)} is not "
                f"{_name(port.schema)} (nor a subclass of it)"
            )
        size = self.settings.buffer_overrides.get(port.address, buffer_size)
        overflow = self.settings.overflow_overrides.get(port.address, overflow)
        carrier = self._carrier(source, target, transport)
        if key is None:
            connection = carrier.connect(
                output, port, buffer_size=size, overflow=overflow
            )
        else:
            connection = carrier.connect(
                output,
                port,
                buffer_size=size,
                overflow=overflow,
                key=key,
                partitions=partitions,
            )
        output.connections.append(connection)
        port.connections.append(connection)
        self.connections.append(connection)
        return connection

    def inlet(
        self,
        target: str,
        *,
        buffer_size: int = 1024,
        overflow: Overflow = "block",
    ) -> Inlet:
        """A way to push items into the input ``"component.port"`` (tests, adapters)."""
        port = self._input(target)
        inlet = self.add(Inlet(self._free_name("inlet", port), port.schema))
        self._connect(
            f"{inlet.name}.out",
            target,
            buffer_size=buffer_size,
            overflow=overflow,
            transport="memory",
        )
        return inlet

    def tap(
        self,
        source: str,
        *,
        buffer_size: int = 1024,
        overflow: Overflow = "block",
    ) -> Tap:
        """A recorder of what the output ``"component.port"`` emits (tests)."""
        output = self._output(source)
        tap = self.add(Tap(self._free_name("tap", output), output.schema))
        self._connect(
            source,
            f"{tap.name}.in",
            buffer_size=buffer_size,
            overflow=overflow,
            transport="memory",
        )
        return tap

    @property
    def endpoints(self) -> list[ApiEndpoint]:
        """The HTTP ingress components this process runs, in the order added."""
        return [c for c in self.local_components() if isinstance(c, ApiEndpoint)]

    def local_components(self) -> list[Component]:
        """The components this process runs: those ``settings.components`` names
        (all when it names none), and every inlet and tap."""
        chosen = self.selected()
        return [
            c
            for c in self.components.values()
            if chosen is None or c.name in chosen or isinstance(c, (Inlet, Tap))
        ]

    def selected(self) -> set[str] | None:
        """The names in ``settings.components``; ``None`` when it names none (all)."""
        names = {n.strip() for n in self.settings.components.split(",") if n.strip()}
        return names or None

    # -- running --------------------------------------------------------------

    async def run(self) -> DrainReport:
        """Run until every component has finished; raises ``StartupError``."""
        self._check_startable()
        failure = await self._run()
        if failure is not None:
            raise failure
        assert self.drain_report is not None
        return self.drain_report

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Service]:
        """Run in the background for the body; stop and drain on the way out.

        The drain's outcome is in ``self.drain_report`` afterwards.
        """
        self._check_startable()
        body_error: Exception | None = None
        async with anyio.create_task_group() as group:
            failure = await group.start(self._run)
            if failure is None:
                try:
                    yield self
                except Exception as exc:
                    # Re-raised after the drain, unwrapped (not in an ExceptionGroup).
                    body_error = exc
                finally:
                    self.stop()
        if failure is not None:
            raise failure
        if body_error is not None:
            raise body_error

    def stop(self) -> None:
        """Ask for a graceful stop; returns at once. Idempotent.

        Call it from the event loop's thread (signal handlers hop there first).
        """
        if self._stop_requested_at is not None:
            return
        self._stop_requested_at = monotonic()
        if self.state is ServiceState.RUNNING:
            self.state = ServiceState.STOPPING
        if self._context is not None and self._context.go.is_set():
            self._begin_stop(self._context)

    def readiness(self) -> list[str]:
        """Why the service is not ready; an empty list means ready."""
        if self.state is not ServiceState.RUNNING:
            return [f"service is {self.state.value}"]
        reasons = [
            f"component {c.name!r} is {c.phase.value}"
            for c in self.local_components()
            if not c.is_running
            and not (isinstance(c, Source) and c.phase is State.STOPPED)
        ]
        limit = self.settings.ready_max_utilization
        for port in self._inputs():
            if port.connections and port.utilization() >= limit:
                reasons.append(
                    f"port {port.address} is saturated "
                    f"({port.utilization():.0%} of its buffer used)"
                )
        reasons.extend(
            c.problem for c in self.carriers.values() if c.problem is not None
        )
        return reasons

    def shared_storage(self) -> str | None:
        """A store every replica shares (rate limits), if a transport offers one."""
        return next(
            (s for c in self.carriers.values() if (s := c.shared_storage)), None
        )

    async def _run(
        self,
        *,
        task_status: TaskStatus[StartupError | None] = anyio.TASK_STATUS_IGNORED,
    ) -> StartupError | None:
        """Run; report (and return) a ``StartupError`` instead of raising it."""
        self.state = ServiceState.STARTING
        context = self._context = RunContext(self.settings, dedup=self._dedup())
        writers = self._open_connections(context)
        try:
            async with anyio.create_task_group() as watchers:
                names = [c.name for c in self.local_components()]
                watchers.start_soon(self.loop_lag.watch)
                for carrier in self.carriers.values():
                    watchers.start_soon(carrier.monitor, self.url, names)
                # ``links``: the components, and the connections' background work
                # (writers to another process; it ends once the components closed
                # their outputs and all is written).
                # (it ends once they closed their outputs and all is written).
                async with anyio.create_task_group() as links:
                    for write in writers:
                        links.start_soon(write)
                    await self._start_components(context, links, watchers, task_status)
                watchers.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            # Cancelled from outside: whatever is still queued is abandoned.
            if self._left is None:
                self._left = self._queued()
            raise
        finally:
            for connection in self.connections:
                connection.close()
            for carrier in self.carriers.values():
                await carrier.close()
            if self._failure is None:
                self.state = ServiceState.STOPPED
                self.drain_report = self._report()
        failure = self._failure
        if failure is None:
            return None
        self.state = ServiceState.FAILED
        self.log.error("%s", failure)
        task_status.started(failure)
        return failure

    def _open_connections(self, context: RunContext) -> list[Writer]:
        """Tell each connection which of its ends run here; its background work."""
        local = {component.name: component for component in self.local_components()}
        writers: list[Writer] = []
        for connection in self.connections:
            source = local.get(connection.source.component)
            target = local.get(connection.target.component)
            placement = Placement(
                sending=source is not None,
                receiving=target is not None,
                stopping=context.stopping,
                masker=self.masker,
                # HTTP ingress answers 202 only once the message is safely carried
                confirm=isinstance(source, ApiEndpoint),
                outputs=tuple(target.outputs.values()) if target else (),
            )
            writer = connection.place(placement)
            if writer is not None:
                writers.append(writer)
        return writers

    async def _start_components(
        self,
        context: RunContext,
        links: TaskGroup,
        watchers: TaskGroup,
        task_status: TaskStatus[StartupError | None],
    ) -> None:
        self._failure = None
        async with anyio.create_task_group() as group:
            for component in self.local_components():
                error = await group.start(component.lifecycle, context)
                if error is not None:
                    failure = StartupError(
                        f"component {component.name!r} failed in setup(): "
                        f"{type(error).__name__}: {error}"
                    )
                    failure.__cause__ = error
                    self._failure = failure
                    links.cancel_scope.cancel()
                    return
            self.state = ServiceState.RUNNING
            context.go.set()
            if self._stop_requested_at is not None:
                self.state = ServiceState.STOPPING
                self._begin_stop(context)
            watchers.start_soon(self._watch_drain, context, links.cancel_scope)
            task_status.started(None)

    def _begin_stop(self, context: RunContext) -> None:
        self.log.info("stopping: ingress closed, draining what was accepted")
        for component in self.local_components():
            component.request_stop()
        context.stopping.set()

    def _carrier(self, source: str, target: str, transport: str) -> Carrier:
        """The service's carrier of ``transport``, made on first use."""
        carrier = self.carriers.get(transport)
        if carrier is None:
            try:
                factory = carrier_factory(transport)
            except KeyError:
                known = " or ".join(map(repr, transports()))
                raise WiringError(
                    f"connection {source} -> {target}: transport {transport!r} is "
                    f"not {known}"
                ) from None
            carrier = self.carriers[transport] = factory(
                self.name, self.settings, self.log
            )
        return carrier

    def _dedup(self) -> Dedup:
        shared = (d for c in self.carriers.values() if (d := c.dedup()) is not None)
        return next(shared, None) or MemoryDedup(self.settings.dedup_ttl_s)

    async def _watch_drain(
        self, context: RunContext, components: anyio.CancelScope
    ) -> None:
        await context.stopping.wait()
        await anyio.sleep(self.settings.drain_timeout_s)
        self._left = self._queued()
        components.cancel()

    def _queued(self) -> dict[str, int]:
        return {port.address: n for port in self._inputs() if (n := port.outstanding())}

    def _report(self) -> DrainReport:
        started = self._stop_requested_at
        seconds = 0.0 if started is None else monotonic() - started
        if self._left is None:
            self.log.info("stopped; drained in %.3f s", seconds)
            return DrainReport(completed=True, seconds=seconds)
        self.log.error(
            "drain timed out after %.1f s; abandoned %s",
            seconds,
            self._left or "messages in flight",
            extra={"left": self._left},
        )
        return DrainReport(completed=False, seconds=seconds, left=self._left)

    # -- helpers --------------------------------------------------------------

    def _require_state(self, state: ServiceState, action: str) -> None:
        if self.state is not state:
            raise ServiceError(
                f"service {self.name!r} is {self.state.value}; cannot {action}"
            )

    def _output(self, address: str) -> OutputPort:
        component, port = self._split(address)
        outputs = self.components[component].outputs
        if port not in outputs:
            raise WiringError(
                f"{address!r}: component {component!r} has no output port {port!r}; "
                f"its outputs are {sorted(outputs) or 'none'}"
            )
        return outputs[port]

    def _input(self, address: str) -> InputPort:
        component, port = self._split(address)
        inputs = self.components[component].inputs
        if port not in inputs:
            raise WiringError(
                f"{address!r}: component {component!r} has no input port {port!r}; "
                f"its inputs are {sorted(inputs) or 'none'}"
            )
        return inputs[port]

    def _split(self, address: str) -> tuple[str, str]:
        component, dot, port = address.partition(".")
        if not dot or not port:
            raise WiringError(f"{address!r} is not 'component.port'")
        if component not in self.components:
            raise WiringError(
                f"{address!r}: service {self.name!r} has no component {component!r}"
            )
        return component, port

    def _inputs(self) -> Iterator[InputPort]:
        for component in self.local_components():
            yield from component.inputs.values()

    def _free_name(self, kind: str, port: InputPort | OutputPort) -> str:
        base = f"{kind}_{port.component}_{port.name}"
        name, number = base, 1
        while name in self.components:
            number += 1
            name = f"{base}_{number}"
        return name

    def _check_startable(self) -> None:
        self._require_state(ServiceState.CREATED, "run")
        self.check()

    def check(self) -> None:
        """Raise now what would stop the start: unknown components or overrides in
        the settings, a memory connection between processes, a transport's bad
        settings (a Redis URL)."""
        settings = self.settings
        self._check_selection()
        for carrier in self.carriers.values():
            carrier.check()
        ports = {
            port.address
            for component in self.components.values()
            for port in component.inputs.values()
        }
        endpoints = {
            c.name for c in self.components.values() if isinstance(c, ApiEndpoint)
        }
        expected = (
            ("buffer", settings.buffer_overrides, ports, "input port"),
            ("overflow", settings.overflow_overrides, ports, "input port"),
            ("timeout", settings.timeout_overrides, endpoints, "api_endpoint"),
            ("payload", settings.payload_overrides, endpoints, "api_endpoint"),
            (
                "burst limit",
                settings.burst_overrides,
                set(self.components),
                "component",
            ),
        )
        for what, overrides, known, kind in expected:
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise SettingsError(
                    f"{what} override for {', '.join(unknown)}: no such {kind} in "
                    f"service {self.name!r}"
                )

    def _check_selection(self) -> None:
        """The components named exist, and no memory connection leaves the process."""
        chosen = self.selected()
        if chosen is None:
            return
        unknown = sorted(chosen - set(self.components))
        if unknown:
            raise SettingsError(
                f"no component {', '.join(map(repr, unknown))} in service "
                f"{self.name!r}; its components: {', '.join(self.components)}"
            )
        local = {c.name for c in self.local_components()}
        for connection in self.connections:
            ends = {connection.source.component, connection.target.component}
            if not connection.between_processes and len(ends & local) == 1:
                raise SettingsError(
                    f"connection {connection.source.address} -> "
                    f"{connection.target.address} is carried in memory, so "
                    f"{' and '.join(sorted(ends))} must run in the same process; "
                    "run both here, or carry the connection by redis"
                )


def _compatible(produced: Any, accepted: Any) -> bool:
    if produced is Any or accepted in (Any, object) or produced is accepted:
        return True
    return (
        isinstance(produced, type)
        and isinstance(accepted, type)
        and issubclass(produced, accepted)
    )


def _name(schema: Any) -> str:
    return getattr(schema, "__name__", repr(schema))
