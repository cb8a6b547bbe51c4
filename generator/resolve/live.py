"""Live (WebSocket) components: their route, limits and the fields clients filter by.

A live route shares the path space of the HTTP routes: the same path for a WebSocket
and a POST would work (the scope types differ), but a reader, a proxy rule or a log
search could not tell them apart, so a path is one component's.
"""

from __future__ import annotations

from typing import Any

from ..blueprint import ERROR_SCHEMA, Live, Port
from ..durations import parse_duration
from ..field_types import TypeSyntaxError, parse_type
from ..model import ApiEndpointSpec, WebSocketOutSpec, _Live
from ..yaml_source import Loc
from .checks import Checks, did_you_mean

#: what a live component takes when the blueprint does not say (runtime/websocket.py)
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HEARTBEAT_MS = 30_000
DEFAULT_SEND_QUEUE = 1024
#: the query parameter that asks a websocket_out for one key's items
KEY_PARAMETER = "key"


class LiveRules(Checks):
    """Resolve each live component's settings; check routes and ``subscribe_by``."""

    def live(self, name: str, spec: _Live, inputs: tuple[Port, ...]) -> dict[str, Any]:
        """The component's ``Live`` settings, and its ``auth``."""
        heartbeat = (
            DEFAULT_HEARTBEAT_MS
            if spec.heartbeat is None
            else parse_duration(spec.heartbeat).milliseconds
        )
        settings: dict[str, Any] = {
            "route": spec.route,
            "max_connections": spec.max_connections or DEFAULT_MAX_CONNECTIONS,
            "heartbeat_ms": heartbeat,
        }
        if isinstance(spec, WebSocketOutSpec):
            self.check_subscribe_by(name, spec, inputs)
            settings["slow_client"] = spec.slow_client or "disconnect"
            settings["send_queue"] = spec.send_queue or DEFAULT_SEND_QUEUE
            settings["subscribe_by"] = tuple(spec.subscribe_by)
            settings["page"] = spec.page is not False
        else:
            settings["max_frame_bytes"] = getattr(spec, "max_frame_bytes", None) or (
                self.spec.defaults.max_payload_kb * 1024
            )
        return {"live": Live(**settings), "auth": spec.auth}

    def check_subscribe_by(
        self, name: str, spec: WebSocketOutSpec, inputs: tuple[Port, ...]
    ) -> None:
        """Each field is a scalar field of every input's schema, named once."""
        seen: set[str] = set()
        for index, field in enumerate(spec.subscribe_by):
            loc: Loc = ("components", name, "subscribe_by", index)
            if loc not in self.doc.lines:
                loc = ("components", name, "subscribe_by")
            if field in seen:
                self.error(loc, f"subscribe_by names {field!r} twice")
                continue
            seen.add(field)
            if field == KEY_PARAMETER:
                self.error(
                    loc,
                    f"subscribe_by field {field!r} would be the query parameter "
                    "'?key=', which asks for one key of a keyed input; a client "
                    "filters by the connection's key with it already",
                )
                continue
            for port in inputs:
                problem = self._field_problem(port, field)
                if problem is not None:
                    self.error(loc, problem)
                    break

    def _field_problem(self, port: Port, field: str) -> str | None:
        if port.schema == ERROR_SCHEMA or port.schema not in self.spec.schemas:
            return (
                f"subscribe_by field {field!r}: input {port.name!r} takes "
                f"{port.schema!r}, whose fields a blueprint does not declare"
            )
        fields = self._fields(port.schema)
        if field not in fields:
            return (
                f"subscribe_by field {field!r} is not a field of {port.schema!r} "
                f"(input {port.name!r}){did_you_mean(field, fields)}"
            )
        try:
            ref = parse_type(fields[field])
        except TypeSyntaxError:
            return None  # reported where the field is declared
        if ref.kind != "scalar" or ref.name == "dict":
            return (
                f"subscribe_by field {field!r} of {port.schema!r} is a "
                f"{fields[field]!r}; a client filters by a value written in the "
                "query (a str, number, bool, date, ...), not a list or a schema"
            )
        return None

    def _fields(self, schema: str) -> dict[str, str]:
        """Field name -> type text of ``schema``, inherited fields included."""
        found: dict[str, str] = {}
        current: str | None = schema
        seen: set[str] = set()
        while current is not None and current in self.spec.schemas:
            if current in seen:
                break  # a cycle of extends is reported by the schema rules
            seen.add(current)
            spec = self.spec.schemas[current]
            for field, field_spec in spec.fields.items():
                found.setdefault(field, field_spec.type)
            current = spec.extends
        return found

    def check_live_routes(self) -> None:
        """A path is served by one component: HTTP routes and live routes alike."""
        owners: dict[str, str] = {}
        for name, spec in self.spec.components.items():
            if isinstance(spec, ApiEndpointSpec):
                path = spec.route.split(" ", 1)[-1]
                owners.setdefault(path.rstrip("/") or "/", name)
        for name, spec in self.spec.components.items():
            if not isinstance(spec, _Live):
                continue
            path = spec.route.rstrip("/") or "/"
            owner = owners.get(path)
            if owner is not None:
                self.error(
                    ("components", name, "route"),
                    f"route {spec.route!r} is already used by component {owner!r}; "
                    "give the WebSocket a path of its own (e.g. "
                    f"'{path}/live')",
                )
            owners.setdefault(path, name)
