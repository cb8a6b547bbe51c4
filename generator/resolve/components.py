"""Components: their ports, the port rules of their kind, routes, renames, class names."""

from __future__ import annotations

from typing import Any

from ..blueprint import ERROR_SCHEMA, ERRORS_PORT, Component, Port, RateLimit
from ..durations import parse_duration
from ..kinds import COMPONENT_KINDS, LOGIC_KINDS, ComponentKind
from ..model import (
    ApiEndpointSpec,
    ComponentSpec,
    CustomAggregateSpec,
    JoinSpec,
    RateLimitSpec,
    WebSocketInSpec,
    WindowSpec,
    _Batches,
    _KeepsState,
    _Live,
    _RunsWork,
    _Ticks,
)
from ..names import component_classes
from ..yaml_source import Loc
from .checks import Checks
from .joins import JoinRules
from .live import LiveRules
from .operations import OperationRules
from .state import StateRules
from .windows import WindowRules


class ComponentRules(
    OperationRules, LiveRules, WindowRules, JoinRules, StateRules, Checks
):
    """Resolve each component: its ports and the settings it inherits."""

    def components(self) -> dict[str, Component]:
        out: dict[str, Component] = {}
        routes: dict[tuple[str, str], str] = {}
        defaults = self.spec.defaults
        for name, spec in self.spec.components.items():
            inputs = self.ports(name, spec, "in")
            outputs = self.ports(name, spec, "out")
            extra: dict[str, Any] = {}
            if isinstance(spec, WindowSpec):  # its outputs are made, not declared
                outputs, extra = self.window(name, spec, inputs)
            if isinstance(spec, JoinSpec):  # out declared, the others made
                outputs, extra = self.join(name, spec, inputs, outputs)
            self.check_port_counts(
                name, spec, COMPONENT_KINDS[spec.kind], inputs, outputs
            )
            if isinstance(spec, ApiEndpointSpec):
                method, path = spec.route.split(" ", 1)
                key = (method, path.rstrip("/") or "/")
                if key in routes:
                    self.error(
                        ("components", name, "route"),
                        f"route {spec.route!r} is already used by component {routes[key]!r}",
                    )
                routes.setdefault(key, name)
                extra = {
                    "method": method,
                    "path": path,
                    "timeout_ms": spec.timeout_ms or defaults.timeout_ms,
                    "max_payload_kb": spec.max_payload_kb or defaults.max_payload_kb,
                    "auth": spec.auth,
                    "rate_limit": self.rate_limit(name, spec.auth, spec.rate_limit),
                }
            if isinstance(spec, _Live):
                extra.update(self.live(name, spec, inputs))
            if isinstance(spec, WebSocketInSpec):
                extra["rate_limit"] = self.rate_limit(name, spec.auth, spec.rate_limit)
            if isinstance(spec, _RunsWork):
                extra.update(self.work(name, spec))
            if isinstance(spec, _Batches):
                extra.update(self.batching(name, spec, extra.get("concurrency", 1)))
            if isinstance(spec, _KeepsState):
                extra.update(self.keyed_state(name, spec))
            if isinstance(spec, _Ticks):
                extra.update(self.ticking(name, spec))
            extra.update(self.operations(name, spec))
            burst = getattr(spec, "burst_limit", None) or defaults.burst_limit
            out[name] = Component(
                name=name,
                kind=spec.kind,
                description=spec.description,
                inputs=inputs,
                outputs=outputs,
                burst_limit=burst,
                renamed_from=spec.renamed_from,
                **extra,
            )
        self.check_renames()
        self.check_class_names()
        self.check_live_routes()
        return out

    def work(self, name: str, spec: _RunsWork) -> dict[str, Any]:
        """How the component runs its user method; ``ordering`` needs items to order."""
        concurrency = spec.concurrency or 1
        if spec.ordering is not None and concurrency == 1:
            self.error(
                ("components", name, "ordering"),
                f"'ordering' says in which order results leave when several items are "
                f"in the user method at once; component {name!r} takes one at a time: "
                "set 'concurrency' above 1, or drop 'ordering'",
            )
        return {
            "concurrency": concurrency,
            "ordering": spec.ordering or "input",
            "blocking": bool(spec.blocking),
        }

    def batching(self, name: str, spec: _Batches, concurrency: int) -> dict[str, Any]:
        """A batch is one call of the user method: it is not split across several."""
        batch = spec.batch
        if batch is None:
            return {}
        if concurrency > 1:
            self.error(
                ("components", name, "batch"),
                f"component {name!r} has both 'batch' and 'concurrency': a batch is "
                "one call of the user method; drop 'concurrency' (or 'batch')",
            )
        return {
            "batch_max_items": batch.max_items,
            "batch_max_wait_ms": batch.max_wait_ms,
        }

    def ticking(self, name: str, spec: _Ticks) -> dict[str, Any]:
        """A timer ticks ``every`` so often or on a ``schedule``, not both."""
        if spec.every is not None and spec.schedule is not None:
            self.error(
                ("components", name, "schedule"),
                f"source {name!r} has both 'every' and 'schedule'; a timer ticks on "
                "one of them: keep 'every' (a period) or 'schedule' (cron fields)",
            )
        every = None if spec.every is None else parse_duration(spec.every)
        return {
            "every_ms": None if every is None else every.milliseconds,
            "schedule": spec.schedule,
        }

    def check_class_names(self) -> None:
        """Each class the emitted code makes from a name is made once.

        Schemas are classes, and a component with user code makes ``Name``,
        ``NameBase`` and ``NamePort``; the modules import them side by side, so one
        name made twice would shadow the other (``score`` and schema ``Score``,
        ``a_b`` and ``a__b``, ``score`` and ``score_base``).
        """
        owners = {name: f"schema {name!r}" for name in self.spec.schemas}
        for name, spec in self.spec.components.items():
            custom = isinstance(spec, WindowSpec) and isinstance(
                spec.aggregate, CustomAggregateSpec
            )
            if spec.kind not in LOGIC_KINDS and not custom:  # no user code
                continue
            for made in component_classes(name):
                if made in owners:
                    self.error(
                        ("components", name),
                        f"component {name!r} makes the class {made!r}, which "
                        f"{owners[made]} makes too; rename one of them",
                    )
                    break
            else:
                for made in component_classes(name):
                    owners[made] = f"component {name!r}"

    def rate_limit(
        self, name: str, auth: str | None, spec: RateLimitSpec | None
    ) -> RateLimit | None:
        """The endpoint's limit; counting per API key needs API keys to count."""
        if spec is None:
            return None
        if spec.key == "api_key" and auth != "api_key":
            self.error(
                ("components", name, "rate_limit", "key"),
                f"rate_limit key 'api_key' counts per API key, but component {name!r} "
                f"{'has no auth' if auth is None else f'uses auth {auth!r}'}; add "
                "'auth: api_key' or use key 'client'",
            )
        return RateLimit(spec.requests, spec.per_seconds, spec.key)

    def check_renames(self) -> None:
        """A former name must be free and claimed by one component only."""
        claimed: dict[str, str] = {}
        for name, spec in self.spec.components.items():
            old = spec.renamed_from
            if old is None:
                continue
            loc: Loc = ("components", name, "renamed_from")
            if old == name:
                self.error(loc, f"component {name!r} cannot be renamed from itself")
            elif old in self.spec.components:
                self.error(
                    loc,
                    f"{old!r} is still a component; a renamed component's old name must be gone",
                )
            elif old in claimed:
                self.error(
                    loc, f"{old!r} is already claimed by component {claimed[old]!r}"
                )
            claimed.setdefault(old, name)

    def ports(self, name: str, spec: ComponentSpec, direction: str) -> tuple[Port, ...]:
        single_key, many_key = (
            ("input", "inputs") if direction == "in" else ("output", "outputs")
        )
        single: str | None = getattr(spec, single_key, None)
        many: dict[str, str] | None = getattr(spec, many_key, None)
        if single is not None and many is not None:
            self.error(
                ("components", name, many_key),
                f"give either '{single_key}' or '{many_key}', not both",
            )
        declared: dict[str, str] = {}
        if single is not None:
            declared = {
                direction: single
            }  # the shorthands name their port 'in' / 'out'
        elif many is not None:
            declared = dict(many)
        ports = []
        for port, schema in declared.items():
            loc = self.port_loc(name, spec, direction, port)
            self.schema_ref(
                loc, schema, f"port {name}.{port}"
            )  # kept either way: no cascade
            if direction == "out" and port == ERRORS_PORT and schema != ERROR_SCHEMA:
                self.error(
                    loc,
                    f"the 'errors' output carries the built-in ErrorRecord, not {schema!r}",
                )
                continue
            ports.append(Port(name, port, schema, direction))
        return tuple(ports)

    def check_port_counts(
        self,
        name: str,
        spec: ComponentSpec,
        kind: ComponentKind,
        inputs: tuple[Port, ...],
        outputs: tuple[Port, ...],
    ) -> None:
        data_out = tuple(p for p in outputs if p.name != ERRORS_PORT)
        self.check_count(name, kind, "in", inputs)
        self.check_count(name, kind, "out", data_out)
        if not kind.errors_output and len(data_out) < len(outputs):
            self.error(
                ("components", name),
                f"{kind.article} {kind.name} answers bad requests itself; it has no "
                "'errors' output",
            )
        if kind.forwards and data_out:
            out = data_out[0].schema
            if kind.inputs is not None and kind.inputs.most == 1:
                if inputs and not self.is_subschema(inputs[0].schema, out):
                    self.error(
                        self.port_loc(name, spec, "out", data_out[0].name),
                        f"{kind.article} {kind.name} passes items through unchanged: "
                        f"its output schema {out!r} must be its input schema "
                        f"{inputs[0].schema!r} or one it extends",
                    )
                return
            for port in inputs:
                if not self.is_subschema(port.schema, out):
                    self.error(
                        self.port_loc(name, spec, "in", port.name),
                        f"{kind.name} input {port.name!r} carries {port.schema!r}, which "
                        f"is not the output schema {out!r} nor extends it",
                    )

    def check_count(
        self, name: str, kind: ComponentKind, direction: str, ports: tuple[Port, ...]
    ) -> None:
        """Report ports too few or too many for ``kind`` (the 'errors' output aside)."""
        rule = kind.inputs if direction == "in" else kind.outputs
        if rule is None:  # the model has no key to declare them
            return
        # An output with a wrong schema is dropped, and reported; inputs never are.
        if (direction == "out" or rule.most is not None) and self._port_errors(name):
            return
        noun = "input" if direction == "in" else "output"
        if rule.most == 1 and len(ports) != 1:
            besides = "" if direction == "in" else " besides 'errors'"
            self.error(
                ("components", name),
                f"{kind.article} {kind.name} has exactly one {noun}{besides} "
                f"({rule.hint})",
            )
        elif len(ports) < rule.least:
            self.error(
                ("components", name),
                f"{kind.article} {kind.name} needs at least one {noun} ({rule.hint})",
            )

    def _port_errors(self, name: str) -> bool:
        """Whether a port of ``name`` was already reported (its counts would mislead)."""
        prefix = f"components.{name}."
        return any(p.key.startswith(prefix) for p in self.problems)
