"""The component kinds of blueprint-v1: one row per kind, every fact about it.

The loader checks a component's ports against its row, the planner builds each
component's runtime call, user method and imports from it, and the templates print
what the planner made of it. A new kind is a row here, a model of the keys it takes
(``model.py``), its runtime class and whatever its templates print; nothing else
asks which kind a component is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Ports:
    """How many ports a kind has on one side, and how a blueprint declares them."""

    least: int
    most: int | None  # None: as many as the blueprint names
    hint: str  # the keys that declare them, quoted in messages


@dataclass(frozen=True)
class Method:
    """The one method a user overrides, with the default body both classes start with.

    ``$inputs`` (the input schemas, as a union), ``$output`` (the first output's
    schema), ``$port`` (the name of the alias of the output port names) and
    ``$first`` (the first output port, as a literal) are filled in per component;
    a custom window's also ``$acc`` (its accumulator's type: ``Any`` in the base,
    the placeholder's in the user file), ``$value`` (the type of its value) and
    ``$result`` (the placeholder's value, from a count ``acc``).
    """

    name: str
    params: str  # after ``self``
    returns: str
    body: tuple[str, ...]  # lines, indented relative to the method
    base_doc: str  # the generated base class's docstring: what the default does
    user_doc: str  # the user file's docstring: what to write
    is_async: bool = False
    imports: tuple[tuple[str, str], ...] = ()  # ``(module, name)`` the signature uses
    # what else the base's method may return (the user's starts with ``returns``),
    # and the imports that needs, in the base only
    admits: str = ""
    admits_imports: tuple[tuple[str, str], ...] = ()
    # called inline by the runtime (a window's aggregate): a plain ``def`` only,
    # never ``async def`` nor an awaitable
    plain: bool = False
    # the methods the user overrides with this one, printed after it in both classes
    then: tuple[Method, ...] = ()
    # more of the user file's docstring (lines as printed): what the methods make
    about: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    """A kind as a component that sets one of ``when`` runs it: another method
    (say, one that takes a list), maybe another runtime class, more arguments."""

    when: tuple[str, ...]  # settings of the resolved component; any one set selects it
    method: Method
    runtime_class: str | None = None  # None: the kind's own
    arguments: tuple[str, ...] = ()  # after the kind's own
    imports: tuple[tuple[str, str], ...] = ()  # what those arguments' code uses
    # instead of the kind's call_imports (None: the kind's, then ``imports``)
    call_imports: tuple[tuple[str, str], ...] | None = None
    mixins: tuple[str, ...] = ()  # runtime classes the base subclasses besides


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component."""

    name: str
    runtime_class: str  # the class of the emitted runtime that runs it
    inputs: Ports | None  # None: it takes no input (items enter the service here)
    outputs: Ports | None  # data outputs, 'errors' aside; None: it ends a path
    # The runtime call's keyword arguments, in order; one that is None is left out.
    arguments: tuple[str, ...]
    errors_output: bool = True  # may declare the 'errors' output
    # items leave as they came: each input's schema is the output's or extends it
    forwards: bool = False
    method: Method | None = None  # None: no user code, no user file
    port_alias: bool = False  # its outputs' names as a ``Literal`` alias (``XPort``)
    carry_over: bool = False  # its default builds the output from the input's fields
    variants: tuple[Variant, ...] = ()  # the first one a component selects applies
    # what the runtime call's arguments use besides the runtime class
    call_imports: tuple[tuple[str, str], ...] = ()
    # runtime classes (of ``.runtime``) the generated base subclasses after
    # ``runtime_class`` (a custom window is its own ``Aggregate``)
    mixins: tuple[str, ...] = ()

    def shaped(self, setting: Callable[[str], object]) -> ComponentKind:
        """The kind as a component with these settings (``setting(name)``, None
        when unset) runs it: the first variant it selects applied, else itself."""
        for variant in self.variants:
            if any(setting(key) is not None for key in variant.when):
                return replace(
                    self,
                    method=variant.method,
                    runtime_class=variant.runtime_class or self.runtime_class,
                    arguments=self.arguments + variant.arguments,
                    call_imports=(
                        self.call_imports
                        if variant.call_imports is None
                        else variant.call_imports
                    )
                    + variant.imports,
                    mixins=self.mixins + variant.mixins,
                    variants=(),
                )
        return self

    @property
    def user_owned(self) -> bool:
        """Whether a component of this kind runs user code, in a file the user owns."""
        return self.method is not None

    @property
    def article(self) -> str:
        """``a`` or ``an``, as messages say it before the kind's name."""
        return "an" if self.name[0] in "aeiou" else "a"


_ONE_IN = Ports(1, 1, "'input: Schema'")
_ONE_OUT = Ports(1, 1, "'output: Schema'")
_PORTS = ("inputs", "outputs", "burst_limit")
# How a kind that takes items runs its user method (model._RunsWork)
_WORK = ("concurrency", "ordering", "blocking")

# A window's aggregate in user code: the three methods of runtime/aggregates.py's
# Aggregate, typed by the blueprint (the item, the value) and by the user (the
# accumulator); the placeholder counts, so that the emitted tests pass as generated.
_ANY = (("typing", "Any"),)
_CUSTOM_INITIAL = Method(
    "initial",
    "",
    "$acc",
    ("return 0",),
    "The accumulator of a window with no item yet (this default counts).",
    "The accumulator of a window that has no item yet: JSON data (see above).",
    admits_imports=_ANY,
    plain=True,
    about=(
        "Your class is the window's aggregate: ``initial()`` starts a window's",
        "accumulator, ``add(acc, item)`` takes each item in, ``result(acc)`` makes",
        "the window's ``value``. Each window has its own accumulator; pick its type",
        "by changing the three ``int`` annotations of the placeholder (a count).",
        "",
        "The accumulator must be JSON data that round-trips unchanged: dicts with",
        "str keys, lists, str, int, float, bool, None (no tuple, set, datetime or",
        "object). The window's state is stored as JSON (over Redis, in Redis), and",
        "``tests/test_windows.py`` checks every accumulator your code makes.",
    ),
    then=(
        Method(
            "add",
            "acc: $acc, item: $inputs",
            "$acc",
            ("return acc + 1",),
            "The accumulator once ``item`` is in the window (this default counts).",
            "The accumulator once ``item`` is in the window: a new one, or ``acc`` "
            "changed in place (each window has its own).",
            plain=True,
        ),
        Method(
            "result",
            "acc: $acc",
            "$value",
            ("return $result",),
            "The window's value, from its accumulator.",
            "The window's value (``value`` of $output), from its accumulator.",
            plain=True,
        ),
    ),
)

COMPONENT_KINDS: dict[str, ComponentKind] = {
    kind.name: kind
    for kind in (
        ComponentKind(
            "source",
            "Source",
            inputs=None,
            outputs=Ports(1, None, "'outputs'"),
            arguments=_PORTS,
            method=Method(
                "generate",
                "",
                "AsyncIterator[$output]",
                ("items: list[$output] = []", "for item in items:", "    yield item"),
                "Yield the items this source produces; by default it produces none.",
                "Yield the items to send; ``await self.emit(port, item)`` picks "
                "another output.",
                is_async=True,
                imports=(("collections.abc", "AsyncIterator"),),
            ),
            variants=(
                Variant(
                    ("every_ms", "schedule"),
                    Method(
                        "tick",
                        "",
                        "$output | list[$output] | None",
                        ("return []",),
                        "The item(s) to send on each tick; by default none.",
                        "Return the item(s) to send on this tick: one, a list, or "
                        "None (or ``yield`` them).",
                        admits="Iterator[$output]",
                        admits_imports=(("collections.abc", "Iterator"),),
                    ),
                    runtime_class="Timer",
                    arguments=("every", "schedule"),
                ),
            ),
        ),
        ComponentKind(
            "api_endpoint",
            "ApiEndpoint",
            inputs=None,
            outputs=_ONE_OUT,
            arguments=(
                "route",
                "method",
                "schema",
                "timeout_ms",
                "max_payload_kb",
                "auth",
                "rate_limit",
            ),
            errors_output=False,
        ),
        ComponentKind(
            "transformer",
            "Transformer",
            inputs=_ONE_IN,
            outputs=_ONE_OUT,
            arguments=_PORTS + _WORK,
            method=Method(
                "transform",
                "item: $inputs",
                "$output | None",
                ("return self.carry_over(item)",),
                "Return the new item for ``item``, or None to drop it (counted); a "
                "list (or ``yield``) sends several.",
                "Return the $output for ``item``, or None to drop it (a list of "
                "them, or ``yield``, sends several).",
                admits="list[$output] | Iterator[$output]",
                admits_imports=(("collections.abc", "Iterator"),),
            ),
            carry_over=True,
            variants=(
                Variant(
                    ("batch_max_items",),
                    Method(
                        "transform",
                        "items: list[$inputs]",
                        "list[$output]",
                        ("return [self.carry_over(item) for item in items]",),
                        "Return the new items for a batch of ``items``; by default "
                        "one for each.",
                        "Return the $output items for a batch of ``items`` (one for "
                        "each: each is caused by its input; [] drops the batch).",
                    ),
                    arguments=("batch",),
                    imports=((".runtime", "Batch"),),
                ),
            ),
        ),
        ComponentKind(
            "filter",
            "Filter",
            inputs=_ONE_IN,
            outputs=_ONE_OUT,
            arguments=_PORTS + _WORK,
            forwards=True,
            method=Method(
                "keep",
                "item: $inputs",
                "bool",
                ("return True",),
                "Whether ``item`` goes on; by default every item does.",
                "Whether ``item`` goes on to the next component.",
            ),
        ),
        ComponentKind(
            "router",
            "Router",
            inputs=_ONE_IN,
            outputs=Ports(1, None, "'outputs'"),
            arguments=_PORTS + _WORK,
            method=Method(
                "route",
                "item: $inputs",
                "$port | list[$port] | None",
                ("return $first",),
                "The output port(s) for ``item``, or None to drop it; by default the "
                "first.",
                "The output port(s) for ``item`` (any of $port), or None to drop it.",
            ),
            port_alias=True,
        ),
        ComponentKind(
            "merger",
            "Merger",
            inputs=Ports(1, None, "'inputs'"),
            outputs=_ONE_OUT,
            arguments=_PORTS,
            forwards=True,
        ),
        ComponentKind(
            "sink",
            "Sink",
            inputs=Ports(1, None, "'input' or 'inputs'"),
            outputs=None,
            arguments=_PORTS + _WORK,
            method=Method(
                "consume",
                "item: $inputs",
                "None",
                ('self.log.info("consumed", extra={"item": item})',),
                "Keep ``item``; by default it is logged (personal data masked).",
                "Keep ``item`` (store it, call an API, ...).",
            ),
            variants=(
                Variant(
                    ("batch_max_items",),
                    Method(
                        "consume",
                        "items: list[$inputs]",
                        "None",
                        (
                            "for item in items:",
                            '    self.log.info("consumed", extra={"item": item})',
                        ),
                        "Keep a batch of ``items``; by default each is logged "
                        "(personal data masked).",
                        "Keep a batch of ``items`` at once (one insert, one request).",
                    ),
                    arguments=("batch",),
                    imports=((".runtime", "Batch"),),
                ),
            ),
        ),
        # live clients (runtime/websocket.py): no user code, the runtime class does
        # it all; the route is served by create_app like an api_endpoint's
        ComponentKind(
            "websocket_out",
            "WebSocketOut",
            inputs=Ports(1, None, "'input' or 'inputs'"),
            outputs=None,
            arguments=(
                "inputs",
                "burst_limit",
                "route",
                "max_connections",
                "heartbeat_s",
                "auth",
                "queue_size",
                "slow_client",
                "subscribe_by",
                "page",
            ),
            errors_output=False,
        ),
        ComponentKind(
            "websocket_in",
            "WebSocketIn",
            inputs=None,
            outputs=_ONE_OUT,
            arguments=(
                "route",
                "schema",
                "max_frame_bytes",
                "max_connections",
                "heartbeat_s",
                "auth",
                "rate_limit",
            ),
            errors_output=False,
        ),
        # per key and window, an aggregate of the items (runtime/windows.py): a
        # built-in, or user code (the component is its own Aggregate); its outputs
        # are made by the resolver (out: <Name>Window, late, errors)
        ComponentKind(
            "window",
            "Window",
            inputs=Ports(1, 1, "'input: Schema'"),
            outputs=Ports(1, 2, "made from 'late' and 'errors'"),
            arguments=(
                "inputs",
                "burst_limit",
                "type",
                "size",
                "hop",
                "count",
                "time",
                "grace",
                "aggregate",
                "emit",
                "schema",
                "late",
                "errors",
                "max_open",
            ),
            call_imports=((".runtime.aggregates", "builtin"),),
            variants=(
                Variant(
                    ("custom_aggregate",),
                    _CUSTOM_INITIAL,
                    call_imports=(),
                    mixins=("Aggregate",),
                ),
            ),
        ),
        # two keyed inputs, left and right; user code pairs the items of one key
        # near in time (runtime/joins.py); unmatched_* and errors are made by the
        # resolver from 'unmatched' and 'errors'; its method's $left and $right
        # are the schemas of those inputs
        ComponentKind(
            "join",
            "Join",
            # two, named left and right: resolve/joins.py says so when not
            inputs=Ports(1, 2, "'inputs: {left: Schema, right: Schema}'"),
            outputs=Ports(1, 3, "'output: Schema'"),
            arguments=(
                "inputs",
                "burst_limit",
                "within",
                "time",
                "grace",
                "schema",
                "unmatched",
                "errors",
                "max_buffered",
            ),
            method=Method(
                "match",
                "left: $left, right: $right",
                "$output | None",
                ("return self.combine(left, right, $output)",),
                "The item of a pair of one key near in time, or None to drop the "
                "pair; by default $output of the fields the two have by its names.",
                "Return the $output for ``left`` and ``right`` (the same key, times "
                "at most ``within`` apart), or None to drop the pair.",
            ),
        ),
    )
}
# The kinds whose component runs the user's code: each gets a user file and classes.
LOGIC_KINDS = tuple(name for name, kind in COMPONENT_KINDS.items() if kind.user_owned)
