"""How a message crosses the wire: one JSON document per Redis stream entry.

```json
{"id": "0190...", "correlation_id": "0190...", "causation_id": null,
 "event_time": 1714564800.123456, "sent_time": 1714564800.125,
 "schema": "Order", "payload": {"order_id": "o-1", ...}}
```

``event_time`` is the Unix time (seconds) at which the message was created,
``sent_time`` when it was handed to the connection: the receiver measures the
message's age from it with its own wall clock, so age spans processes (and includes
any clock difference between hosts). The payload is the item as pydantic writes it
to JSON; the whole document is encoded with orjson. With tracing on (``tracing.py``),
a ``traceparent`` field (W3C trace context) names the span the message was made in,
so that the receiver's span joins the same trace.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter

from .. import tracing
from ..envelope import (
    Entry,
    Envelope,
    Origin,
    monotonic_time,
    new_envelope,
    next_seq,
    wall_time,
)

__all__ = [
    "DLQ_SUFFIX",
    "FIELD",
    "TARGET",
    "WireError",
    "decode",
    "encode",
    "schema_name",
]

#: the stream entry's field that holds the message (this JSON document)
FIELD = b"e"
#: a replayed entry's field naming the one consumer group it is for
TARGET = b"to"
#: a stream ``S``'s dead-letter stream is ``S + DLQ_SUFFIX``
DLQ_SUFFIX = ".dlq"


class WireError(ValueError):
    """A stream entry that is not a message this port can read."""


def schema_name(item: Any) -> str:
    """The name of an item's schema: its class name."""
    return type(item).__name__


def encode(envelope: Envelope, enqueued: float) -> bytes:
    """The JSON document for ``envelope``, enqueued at monotonic time ``enqueued``."""
    item = envelope.item
    document = {
        "id": envelope.id,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "event_time": wall_time(envelope.created),
        "sent_time": wall_time(enqueued),
        "schema": type(item).__name__,
        "payload": orjson.Fragment(_json(item)),
    }
    if tracing.TRACER is not None and (parent := tracing.inject(envelope)):
        document["traceparent"] = parent
    return orjson.dumps(document)


def _json(item: Any) -> bytes:
    """The item as pydantic writes it to JSON."""
    if isinstance(item, BaseModel):
        return item.__pydantic_serializer__.to_json(item)
    kind = type(item)
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter.dump_json(item)


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def read(data: bytes) -> dict[str, Any]:
    """The JSON document as a dict; ``WireError`` when it is not one."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        raise WireError("not a message: a JSON object with an 'id' is expected")
    return document


def decode(data: bytes, schema: Any) -> Entry:
    """The entry (local enqueue time, envelope) for a document sent to ``schema``.

    The payload is validated against the schema the document names when that is
    ``schema`` or one of its subclasses (a port may carry a schema that extends its
    own), else against ``schema``. Raises ``WireError`` or pydantic's
    ``ValidationError``.
    """
    document = read(data)
    try:
        validate = _validator(schema, str(document.get("schema", "")))
        item = validate(document["payload"])
        created = monotonic_time(float(document["event_time"]))
        enqueued = monotonic_time(float(document.get("sent_time", created)))
        correlation = document.get("correlation_id") or document["id"]
        causation = document.get("causation_id")
    except (KeyError, TypeError) as exc:
        raise WireError(f"incomplete message: {exc!r}") from None
    origin = Origin(document["id"], causation if isinstance(causation, str) else None)
    envelope = new_envelope(
        Envelope, (item, next_seq(), created, str(correlation), origin)
    )
    if tracing.TRACER is not None:
        tracing.extract(envelope, document.get("traceparent"))
    return enqueued, envelope


@lru_cache(maxsize=256)
def _validator(schema: Any, name: str) -> Callable[[Any], Any]:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        model = _subclass_named(schema, name) or schema
        return model.model_validate
    return TypeAdapter(schema).validate_python


def _subclass_named(schema: type[BaseModel], name: str) -> type[BaseModel] | None:
    pending: list[type[BaseModel]] = [schema]
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model.__name__ == name:
            return model
        seen.add(model)
        pending.extend(m for m in model.__subclasses__() if m not in seen)
    return None
