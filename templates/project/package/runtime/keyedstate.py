"""Keyed state for user code: ``self.state`` is the state of the current item's key.

A transformer, filter, router or sink whose class also subclasses ``Stateful``
(the blueprint's ``state: true``) keeps one value per key of its input: a pydantic
model (``state_type``, made from its defaults for a new key) or a ``dict`` of JSON
values. Inside the user method ``self.state`` is a copy of the current key's value;
what the method leaves in it (changed in place, or assigned) is kept when the method
returns; when it raises, the item failed and its change is dropped, so a failed item
never counts. A transformer's generator is run to its end inside the method, so
that what it changes happens while ``self.state`` is its key's.

Each item's key is its input connection's ``key``: a stateful component refuses, at
start, an input that is not keyed. Over a keyed Redis connection (its only input
connection) the states live per partition in Redis, each written by the script
that acknowledges its item, under the partition's lease, with the outputs the item
made over Redis (``redis/statestore``: exactly once for the state, and for those
outputs on one Redis; outputs in memory go on at once, at least once). One key is never in the method twice at once: one at a time
without ``concurrency``, and with it ``concurrency.Window`` holds an item back while
another of its key is inside; different keys may be inside together, each task
seeing its own key's state (a context variable, copied into each task and thread).
Each input connection has its own loop, so with several of them the method must be a
plain ``def`` without ``concurrency`` or ``blocking`` (one runs at a time): the
component refuses anything else at start.

Memory is bounded: at most ``max_keys`` keys are kept; a new key past the cap drops
the key used least recently (counted in ``evicted``; one warning); an evicted key
that comes back starts again from its initial state.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from .errors import WiringError
from .keystates import KeyedState

if TYPE_CHECKING:
    from .concurrency import Work
    from .ports import Connection, InputPort

__all__ = ["DEFAULT_MAX_KEYS", "KeyedState", "Stateful"]

S = TypeVar("S")
#: keys a stateful component keeps when its blueprint says nothing
DEFAULT_MAX_KEYS = 100_000

# the current key's state, in a one-item list so that ``self.state = x`` in the
# method replaces what the wrapper keeps
_current: ContextVar[list[Any]] = ContextVar("portwright_state")


class Stateful(Generic[S]):
    """A mixin, before the runtime class: ``self.state`` in the user method.

    ``state_type``: the pydantic model of a key's state (None: a ``dict``);
    ``max_keys``: how many keys are kept (see the module's docstring).
    """

    state_type: type[BaseModel] | None = None
    max_keys: int = DEFAULT_MAX_KEYS
    if TYPE_CHECKING:  # what the runtime class it is mixed into has
        name: str
        log: Any
        inputs: dict[str, InputPort]
        work: Work
        _call: Callable[[Any], Any] | None
        _call_is_async: bool
        batching: Any

    @property
    def state(self) -> S:
        """The current item's key's state (only inside the user method)."""
        try:
            holder = _current.get()
        except LookupError:
            raise RuntimeError(
                f"component {self.name!r}: self.state is the state of the item "
                "being handled; it exists only inside the user method"
            ) from None
        return holder[0]  # type: ignore[no-any-return]

    @state.setter
    def state(self, value: S) -> None:
        try:
            _current.get()[0] = value
        except LookupError:
            raise RuntimeError(
                f"component {self.name!r}: self.state can be set only inside the "
                "user method"
            ) from None

    @property
    def states(self) -> KeyedState:
        """Every key's state kept by this component."""
        store: KeyedState | None = self.__dict__.get("_states")
        if store is None:
            if self.max_keys < 1:
                raise WiringError(
                    f"component {self.name!r}: max_keys must be at least 1"
                )
            made = self.state_type
            store = KeyedState(made if made is not None else dict, self.max_keys)
            self.__dict__["_states"] = store
        return store

    def check_inputs(self) -> None:
        """Refuse, before the service starts, what state per key cannot serve."""
        if self.batching is not None:
            raise WiringError(
                f"component {self.name!r}: state is per item; it cannot take batches"
            )
        if inspect.isasyncgenfunction(self._call):
            raise WiringError(
                f"component {self.name!r}: an async generator runs after its method "
                "returned, without its key's state; return a list instead"
            )
        self.states  # noqa: B018 (max_keys checked now, not at the first item)
        connections = [c for port in self.inputs.values() for c in port.connections]
        if len(connections) > 1 and (self._call_is_async or self.work.windowed):
            # each connection has a loop of its own: a key could be in the method
            # from two of them at once, one change overwriting the other
            raise WiringError(
                f"component {self.name!r} keeps state per key and has "
                f"{len(connections)} input connections: its method must then be a "
                "plain def, one item at a time (no concurrency, no blocking)"
            )
        for port in self.inputs.values():
            for connection in port.connections:
                if connection.key is None:
                    raise WiringError(
                        f"component {self.name!r} keeps state per key: its input "
                        f"{port.address} must be keyed (connect it with key=)"
                    )
                if connection.settled is not None:
                    self._keep_in_redis(port, connection, len(connections))

    def _keep_in_redis(
        self, port: InputPort, connection: Connection, connections: int
    ) -> None:
        """Over a keyed Redis connection the key states live per partition in Redis
        (``redis/statestore``), written by the script acknowledging each item."""
        keep_state = getattr(connection, "keep_state", None)
        if keep_state is None:
            raise WiringError(
                f"component {self.name!r} keeps state per key: over Redis its input "
                f"{port.address} must be keyed (connect it with key=)"
            )
        if connections > 1:
            raise WiringError(
                f"component {self.name!r} keeps state per key in Redis: it takes one "
                f"input connection over Redis, and has {connections}"
            )
        # the connection makes the store (``redis/statestore``): the core never
        # imports a transport
        made = self.state_type
        self.__dict__["_states"] = keep_state(
            made if made is not None else dict, self.max_keys, made
        )

    def _method(self, connection: Connection) -> Callable[[Any], Any] | None:
        """The user method for items of ``connection``, run with their key's state."""
        call, key = self._call, connection.key
        if call is None or key is None:  # check_inputs refused a key of None
            return call
        if self._call_is_async:
            return self._async_with_state(call, key)
        return self._with_state(call, key)

    def _with_state(
        self, call: Callable[[Any], Any], key: Callable[[Any], object]
    ) -> Callable[[Any], Any]:
        states, current = self.states, _current

        def with_state(item: Any) -> Any:
            which = key(item)
            holder = [states.checkout(which)]
            token = current.set(holder)
            try:
                result = call(item)
                if isinstance(result, Iterator):  # its body runs as it is read
                    result = list(result)
            finally:
                current.reset(token)
            if states.keep(which, holder[0], item):
                self._evicted()
            return result

        return with_state

    def _async_with_state(
        self, call: Callable[[Any], Any], key: Callable[[Any], object]
    ) -> Callable[[Any], Any]:
        states, current = self.states, _current

        async def with_state(item: Any) -> Any:
            which = key(item)
            holder = [states.checkout(which)]
            token = current.set(holder)
            try:
                result = call(item)
                if inspect.isawaitable(result):
                    result = await result
                if isinstance(result, AsyncIterator):  # its body runs as it is read
                    result = [each async for each in result]
                elif isinstance(result, Iterator):
                    result = list(result)
            finally:
                current.reset(token)
            if states.keep(which, holder[0], item):
                self._evicted()
            return result

        return with_state

    def _evicted(self) -> None:
        if self.states.evicted == 1:
            self.log.warning(
                "component %s: %d keys hold state, the cap (max_keys); the key used "
                "least recently is dropped for each new one from now on (counted in "
                "portwright_state_evicted_keys)",
                self.name,
                self.max_keys,
            )
