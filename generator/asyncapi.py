"""The AsyncAPI 3.0 document of a service: resolved blueprint in, plain data out.

Every project carries it twice, byte-for-byte the same document: ``asyncapi.yaml`` at
its root (for people and tools) and ``<package>/asyncapi.json`` (served at
``GET /asyncapi.json``). Channels: one per Redis stream (an output port with a Redis
connection), one per in-process memory connection (``address: null``, marked
``x-portwright-transport: memory``), one per dead-letter stream. Operations: each
component port sends to or receives from each of its channels. Messages: one per
schema that crosses a port, its payload the JSON Schema pydantic produces for the
emitted model and its headers the envelope (ids and times) the runtime carries.

The payload schemas are pydantic's own: the emitted models are rebuilt here from the
scalar table (the same annotations, ``Field`` arguments, configuration and
docstrings that ``schemas.py`` prints), never imported, and each emitted project's
tests hold the two equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from .blueprint import ERROR_SCHEMA, Blueprint, Connection, Schema, TypeRef
from .filters import inert
from .scalars import SCALARS

VERSION = "3.0.0"
#: where ``$ref`` points: pydantic writes ``#/$defs/X``, AsyncAPI keeps schemas here
REF_TEMPLATE = "#/components/schemas/{model}"
# Keys of components that a blueprint schema cannot take (schema names are
# ``[A-Z][A-Za-z0-9]*``), so nothing a blueprint names collides with them.
HEADERS = "envelope-headers"
DEAD_LETTER = "dead-letter"
DLQ_SUFFIX = ".dlq"
TRANSPORT = "x-portwright-transport"


class ErrorRecord(BaseModel):
    """What is sent to a component's ``errors`` port when its user code fails.

    Every text and the item are PII-masked before they are put here.
    """

    # the runtime's ErrorRecord (runtime/errors.py), field for field and docstring for
    # docstring: every emitted project's tests compare the two schemas
    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str
    port: str
    error_type: str
    message: str
    item: dict[str, Any] | None
    message_id: str | None
    correlation_id: str | None
    time: datetime


# -- payloads: the emitted models, rebuilt --------------------------------------------


def _annotation(ref: TypeRef, models: dict[str, type[BaseModel]]) -> Any:
    """The Python type ``schemas.py`` annotates a field of type ``ref`` with."""
    if ref.kind == "list":
        assert ref.item is not None
        core: Any = list[_annotation(ref.item, models)]  # type: ignore[misc]
    elif ref.kind == "schema":
        core = models[ref.name]
    else:
        core = SCALARS[ref.name].python
    return core | None if ref.optional else core


def _docstring(schema: Schema) -> str:
    """The class docstring as Python reads the one ``schemas.py`` prints.

    The template prints ``description|docstring``: ``inert`` text whose backslashes
    are doubled (Python reads them back single) and whose double quotes become single.
    """
    return inert(schema.description or f"The {schema.name} message.").replace('"', "'")


def _model(schema: Schema, models: dict[str, type[BaseModel]]) -> type[BaseModel]:
    """The pydantic model ``schemas.py`` declares for ``schema``."""
    fields: dict[str, Any] = {}
    for field in schema.fields:
        if field.declared_in != schema.name:
            continue
        arguments: dict[str, Any] = dict(field.constraints)
        if not field.required:
            arguments["default"] = field.default
        if field.description:
            arguments["description"] = field.description
        if field.pii:
            arguments["json_schema_extra"] = {"x-pii": True}
        fields[field.name] = (_annotation(field.type, models), Field(**arguments))
    base = models[schema.extends] if schema.extends else BaseModel
    config = ConfigDict(
        extra="forbid", frozen=True, regex_engine="python-re", validate_default=True
    )
    model: type[BaseModel] = create_model(
        schema.name,
        __base__=base,
        __doc__=_docstring(schema),
        __config__=None if schema.extends else config,
        **fields,
    )
    return model


def payload_schemas(blueprint: Blueprint) -> dict[str, Any]:
    """Each schema's JSON Schema, as pydantic writes it for the emitted model."""
    models: dict[str, type[BaseModel]] = {ERROR_SCHEMA: ErrorRecord}
    for schema in blueprint.schemas:  # in dependency order: referred ones first
        models[schema.name] = _model(schema, models)
    _, definitions = models_json_schema(
        [(model, "validation") for model in models.values()],
        ref_template=REF_TEMPLATE,
    )
    found: dict[str, Any] = definitions.get("$defs", {})
    return {name: found[name] for name in sorted(found)}


# -- the document -------------------------------------------------------------------


def channel_ids(connection: Connection) -> tuple[str, str]:
    """``(the channel id, the operation suffix)`` of ``connection``.

    Names hold no ``-`` (they are snake_case), so ids joined with it never collide:
    ``score-out`` is the Redis stream of ``score.out``, ``score-out--rank-in`` the
    memory connection from it to ``rank.in``.
    """
    source = f"{connection.source.component}-{connection.source.name}"
    target = f"{connection.target.component}-{connection.target.name}"
    if connection.transport == "redis" and not _partitioned(connection):
        return source, ""
    return f"{source}--{target}", f"--{target}"


def _partitioned(connection: Connection) -> bool:
    """A keyed Redis connection: streams of its own, one per partition."""
    return connection.transport == "redis" and connection.partitions is not None


def _text(value: str | None, fallback: str) -> str:
    return inert(value) if value else fallback


def _ref(*parts: str) -> dict[str, str]:
    """A ``$ref`` to ``#/parts/...`` (ids hold no ``/`` or ``~``: no escaping)."""
    return {"$ref": "#/" + "/".join(parts)}


def _servers(blueprint: Blueprint) -> dict[str, Any]:
    """The Redis server, as the blueprint names it; never its password."""
    url = urlsplit(blueprint.redis_url)
    host = url.hostname or "localhost"
    if url.port is not None:
        host = f"{host}:{url.port}"
    server: dict[str, Any] = {
        "host": host,
        "protocol": "redis",
        "description": (
            f"The Redis that carries the streams ({url.scheme}://); "
            f"{blueprint.name.upper()}_REDIS_URL replaces it at run time, "
            f"and {blueprint.name.upper()}_REDIS_PREFIX is put before every "
            "stream name."
        ),
    }
    if url.path and url.path != "/":
        server["pathname"] = url.path
    return {"redis": server}


def _channels(blueprint: Blueprint) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every channel: Redis streams (with their dead-letter streams), memory hops."""
    streams: dict[str, list[Connection]] = {}
    for connection in blueprint.connections:
        channel, _ = channel_ids(connection)
        if _partitioned(connection):
            yield from _partition_channels(blueprint, channel, connection)
            continue
        if connection.transport == "redis":
            streams.setdefault(channel, []).append(connection)
            continue
        source, target = connection.source, connection.target
        yield channel, {
            "address": None,
            "title": f"{source.ref} -> {target.ref} (in process)",
            "description": _text(
                connection.description,
                f"An in-process memory stream from {source.ref} to {target.ref}: "
                "not reachable from outside the service.",
            ),
            "messages": {source.schema: _ref("components", "messages", source.schema)},
            TRANSPORT: "memory",
            "x-portwright-buffer-size": connection.buffer_size,
            "x-portwright-overflow": connection.overflow,
            "x-portwright-feedback": connection.feedback,
        }
    for channel, connections in streams.items():
        source = connections[0].source
        address = f"{blueprint.name}.{source.component}.{source.name}"
        groups = {
            c.target.ref: {"buffer_size": c.buffer_size, "feedback": c.feedback}
            for c in connections
        }
        yield channel, {
            "address": address,
            "title": f"{source.ref} (Redis stream)",
            "description": (
                f"The Redis stream {source.ref} writes; each input port reading it "
                "is a consumer group named after it (" + ", ".join(groups) + ")."
            ),
            "servers": [_ref("servers", "redis")],
            "messages": {source.schema: _ref("components", "messages", source.schema)},
            TRANSPORT: "redis",
            "x-portwright-consumer-groups": groups,
        }
        yield channel + "-dlq", {
            "address": address + DLQ_SUFFIX,
            "title": f"{source.ref} dead letters",
            "description": (
                f"Items of {address} that failed {blueprint.max_retries} deliveries "
                f"to a group; python -m {blueprint.name} dlq replay puts them back."
            ),
            "servers": [_ref("servers", "redis")],
            "messages": {DEAD_LETTER: _ref("components", "messages", DEAD_LETTER)},
            TRANSPORT: "redis",
        }


def _partition_channels(
    blueprint: Blueprint, channel: str, connection: Connection
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A keyed Redis connection's partition streams and their dead letters: one
    channel each, its address naming the partition (``{partition}``)."""
    source, target = connection.source, connection.target
    address = (
        f"{blueprint.name}.{source.component}.{source.name}."
        f"{target.component}.{target.name}.p{{partition}}"
    )
    count = connection.partitions
    parameters = {
        "partition": {
            "description": (
                f"The partition, 0 to {count - 1 if count else 0}: CRC-32 of the "
                f"key's canonical bytes (field {connection.key}), modulo {count}."
            ),
            "examples": ["0"],
        }
    }
    servers = [_ref("servers", "redis")]
    yield channel, {
        "address": address,
        "title": f"{source.ref} -> {target.ref} (Redis streams, keyed)",
        "description": _text(
            connection.description,
            f"The {count} partition streams of the keyed connection from "
            f"{source.ref} to {target.ref}, each read by one replica of "
            f"{target.component} at a time (group {target.ref}), each key's items "
            "in order.",
        ),
        "parameters": parameters,
        "servers": servers,
        "messages": {source.schema: _ref("components", "messages", source.schema)},
        TRANSPORT: "redis",
        "x-portwright-key": connection.key,
        "x-portwright-partitions": count,
        "x-portwright-consumer-groups": {
            target.ref: {
                "buffer_size": connection.buffer_size,
                "feedback": connection.feedback,
            }
        },
    }
    yield channel + "-dlq", {
        "address": address + DLQ_SUFFIX,
        "title": f"{source.ref} -> {target.ref} dead letters",
        "description": (
            f"Items of a partition stream of {source.ref} -> {target.ref} that "
            f"failed {blueprint.max_retries} deliveries; python -m {blueprint.name} "
            "dlq replay puts them back."
        ),
        "parameters": parameters,
        "servers": servers,
        "messages": {DEAD_LETTER: _ref("components", "messages", DEAD_LETTER)},
        TRANSPORT: "redis",
    }


def _operations(blueprint: Blueprint) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each port's send or receive on each of its channels, and the dead-lettering."""
    sent: set[str] = set()
    for connection in blueprint.connections:
        channel, suffix = channel_ids(connection)
        source, target = connection.source, connection.target
        message = [_ref("channels", channel, "messages", source.schema)]
        if channel not in sent:  # a Redis stream is written once, whatever the fan-out
            sent.add(channel)
            yield f"{source.component}-{source.name}-send{suffix}", {
                "action": "send",
                "channel": _ref("channels", channel),
                "title": f"{source.ref} sends {source.schema}",
                "messages": message,
            }
        origin = f"{source.component}-{source.name}"
        yield f"{target.component}-{target.name}-receive--{origin}", {
            "action": "receive",
            "channel": _ref("channels", channel),
            "title": f"{target.ref} receives {source.schema} from {source.ref}",
            "messages": message,
        }
        if connection.transport == "redis":
            yield f"{target.component}-{target.name}-dead-letter--{origin}", {
                "action": "send",
                "channel": _ref("channels", channel + "-dlq"),
                "title": f"{target.ref} dead-letters what it failed on",
                "messages": [
                    _ref("channels", channel + "-dlq", "messages", DEAD_LETTER)
                ],
            }


def _messages(blueprint: Blueprint) -> dict[str, Any]:
    """One message per schema that crosses a port, and the dead-letter record."""
    carried = sorted({c.source.schema for c in blueprint.connections})
    messages: dict[str, Any] = {
        name: {
            "name": name,
            "title": name,
            "contentType": "application/json",
            "headers": _ref("components", "schemas", HEADERS),
            "payload": _ref("components", "schemas", name),
            "correlationId": {
                "description": "Shared by every message of one conversation.",
                "location": "$message.header#/correlation_id",
            },
        }
        for name in carried
    }
    messages[DEAD_LETTER] = {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "contentType": "application/json",
        "payload": _ref("components", "schemas", DEAD_LETTER),
    }
    return messages


def _nullable(kind: str, description: str) -> dict[str, Any]:
    return {"anyOf": [{"type": kind}, {"type": "null"}], "description": description}


def envelope_headers() -> dict[str, Any]:
    """The envelope around every item: the JSON document of the runtime's ``wire``."""
    return {
        "type": "object",
        "title": "Envelope",
        "description": (
            "The ids and times every message carries. Over Redis, one JSON document "
            "per stream entry (field 'e') holds these keys and the item under "
            "'payload'; in process they travel with the item."
        ),
        "required": ["id", "correlation_id", "causation_id", "event_time"],
        "properties": {
            "id": {"type": "string", "description": "The message id (UUID v7)."},
            "correlation_id": {
                "type": "string",
                "description": "The id of the message (or request) that started "
                "the conversation: the client's X-Correlation-ID, or a new id.",
            },
            "causation_id": _nullable(
                "string", "The id of the message this one was made from."
            ),
            "event_time": {
                "type": "number",
                "description": "When the message was created (Unix seconds).",
            },
            "sent_time": {
                "type": "number",
                "description": "When it was handed to the stream (Unix seconds).",
            },
            "schema": {
                "type": "string",
                "description": "The name of the payload's schema.",
            },
        },
    }


def dead_letter_record() -> dict[str, Any]:
    """An entry of a dead-letter stream, as the runtime writes it."""
    number = {"type": "number"}
    return {
        "type": "object",
        "title": "DeadLetter",
        "description": "An item that failed every delivery, with why (masked).",
        "required": ["stream", "group", "entry_id", "envelope", "error", "attempts"],
        "properties": {
            "stream": {"type": "string", "description": "The stream it came from."},
            "group": {"type": "string", "description": "The group that failed it."},
            "entry_id": {"type": "string", "description": "Its id in the stream."},
            "envelope": {
                "type": "object",
                "description": "The message as it was sent (envelope and payload).",
            },
            "error": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
            "attempts": {"type": "integer", "minimum": 1},
            "enqueued_at": number,
            "dead_lettered_at": number,
            "consumer": {"type": "string", "description": "The replica that gave up."},
            "reason": {
                "type": "string",
                "description": (
                    "Why it was not delivered again, when not for max_retries "
                    "failures: a keyed item that failed in place, or an entry "
                    "taken over max_takeovers times in a row."
                ),
            },
        },
    }


def asyncapi_document(blueprint: Blueprint) -> dict[str, Any]:
    """The service's AsyncAPI 3.0 document."""
    schemas = payload_schemas(blueprint)
    schemas[HEADERS] = envelope_headers()
    schemas[DEAD_LETTER] = dead_letter_record()
    document: dict[str, Any] = {
        "asyncapi": VERSION,
        "info": {
            "title": blueprint.name,
            "version": blueprint.version,
            "description": _text(
                blueprint.description, f"The {blueprint.name} service."
            ),
        },
        "defaultContentType": "application/json",
    }
    if blueprint.uses_redis:
        document["servers"] = _servers(blueprint)
    document["channels"] = dict(sorted(_channels(blueprint)))
    document["operations"] = dict(sorted(_operations(blueprint)))
    document["components"] = {
        "schemas": dict(sorted(schemas.items())),
        "messages": dict(sorted(_messages(blueprint).items())),
    }
    return document


def asyncapi_yaml(document: dict[str, Any]) -> str:
    """The document as YAML: keys in the document's order, ASCII, stable."""
    text: str = yaml.safe_dump(
        document, sort_keys=False, allow_unicode=False, width=88, indent=2
    )
    return text


def asyncapi_json(document: dict[str, Any]) -> str:
    """The document as the emitted package serves it."""
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"
