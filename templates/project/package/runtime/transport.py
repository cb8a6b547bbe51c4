"""How the core meets a transport: the ``Carrier`` protocol and the registry of them.

A transport carries connections: in this process's memory (package ``memory``) or
between processes (package ``redis``). Each is a package of the runtime that defines
``carrier``, a factory of ``Carrier``: one per service and transport, made when the
first connection asks for it. The core (ports, components, the service) knows only
this protocol and ``ports.Connection``; it never imports a transport's package, and
nothing in it asks which transport it has: a transport says what it needs through
the protocol (``Connection.per_message``, ``between_processes``, ``place``).

The registry maps a transport's name to its package, imported when a service first
uses it (so a service in memory never imports the Redis client). A third transport
is a package of the same shape, named in ``PACKAGES`` and in ``Transport``;
``register`` adds one at run time (tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Literal, Protocol, get_args

from .dedup import Dedup
from .logs import MaskedLogger
from .ports import Connection, InputPort, OutputPort, Overflow
from .settings import ServiceSettings

__all__ = [
    "PACKAGES",
    "Carrier",
    "CarrierFactory",
    "Transport",
    "carrier_factory",
    "register",
    "transports",
]

#: the transports a blueprint may name
Transport = Literal["memory", "redis"]
#: each transport's package, relative to the runtime's; it defines ``carrier``
PACKAGES: dict[str, str] = {name: f".{name}" for name in get_args(Transport)}


class Carrier(Protocol):
    """One transport's share of one service: its connections, health and client."""

    @property
    def problem(self) -> str | None:
        """Why it cannot carry messages now (``/ready`` says it); None: it can."""
        ...

    @property
    def shared_storage(self) -> str | None:
        """A store every replica of the service shares (rate limits); None: none."""
        ...

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
        """A new connection from ``source`` to ``target``, carried by this transport;
        keyed by ``key``, in ``partitions`` where the transport has partitions."""
        ...

    def check(self) -> None:
        """Raise ``SettingsError`` for settings this transport cannot start with."""
        ...

    def dedup(self) -> Dedup | None:
        """The keys ``Component.once`` shares across replicas; None: in memory."""
        ...

    async def monitor(self, url: str | None, components: list[str]) -> None:
        """Run while the service runs (health checks); ``url``: where it serves."""
        ...

    async def close(self) -> None:
        """Release what it holds, once the service has stopped."""
        ...


#: makes a service's carrier: ``factory(service_name, settings, log)``
CarrierFactory = Callable[[str, ServiceSettings, MaskedLogger], Carrier]
_factories: dict[str, CarrierFactory] = {}


def register(name: str, factory: CarrierFactory) -> None:
    """Make ``name`` a transport whose carriers ``factory`` makes."""
    _factories[name] = factory


def transports() -> list[str]:
    """The names of every transport known here."""
    return sorted(PACKAGES.keys() | _factories.keys())


def carrier_factory(name: str) -> CarrierFactory:
    """The factory of transport ``name``'s carriers; ``KeyError`` if unknown."""
    factory = _factories.get(name)
    if factory is None:
        module = importlib.import_module(PACKAGES[name], __package__)
        factory = _factories[name] = module.carrier
    return factory
