"""The JSON Schema of blueprint-v1, generated from the models, for editors and CI."""

from __future__ import annotations

import json
from typing import Any

from .model import INDEX_URL, LIVE_ROUTE, PORTWRIGHT_REQUIREMENT, ROUTE, BlueprintSpec
from .names import FIELD, SCHEMA, SNAKE

SCHEMA_ID = "https://portwright.dev/schema/blueprint-v1.json"
CONNECTION_TEXT = (
    r"^\s*[A-Za-z0-9_]+\.[A-Za-z0-9_]+\s*->\s*[A-Za-z0-9_]+\.[A-Za-z0-9_]+\s*$"
)


def blueprint_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a blueprint file."""
    schema = BlueprintSpec.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    props = schema["properties"]
    # The shorthands the models accept before validation: bare field types and
    # 'a.out -> b.in' connections.
    defs["SchemaSpec"]["properties"]["fields"]["additionalProperties"] = {
        "anyOf": [
            {"type": "string", "description": "a bare type"},
            {"$ref": "#/$defs/FieldSpec"},
        ]
    }
    defs["SchemaSpec"]["properties"]["fields"]["propertyNames"] = {
        "pattern": FIELD.pattern
    }
    props["connections"]["items"] = {
        "anyOf": [
            {
                "type": "string",
                "pattern": CONNECTION_TEXT,
                "description": "a.out -> b.in",
            },
            {"$ref": "#/$defs/ConnectionSpec"},
        ]
    }
    # Names and routes are checked by validators the generated schema cannot see.
    props["name"]["pattern"] = SNAKE.pattern
    defs["ApiEndpointSpec"]["properties"]["route"]["pattern"] = ROUTE.pattern
    for live in ("WebSocketOutSpec", "WebSocketInSpec"):
        defs[live]["properties"]["route"]["pattern"] = LIVE_ROUTE.pattern
    defs["WebSocketOutSpec"]["properties"]["subscribe_by"]["items"][
        "pattern"
    ] = FIELD.pattern
    for key, pattern in (
        ("portwright", PORTWRIGHT_REQUIREMENT),
        ("index_url", INDEX_URL),
    ):
        for option in defs["CiSpec"]["properties"][key]["anyOf"]:
            if option.get("type") == "string":
                option["pattern"] = pattern.pattern
    props["schemas"]["propertyNames"] = {"pattern": SCHEMA.pattern}
    props["components"]["propertyNames"] = {"pattern": SNAKE.pattern}
    for definition in defs.values():
        renamed_from = definition.get("properties", {}).get("renamed_from")
        for option in renamed_from.get("anyOf", []) if renamed_from else []:
            if option.get("type") == "string":
                option["pattern"] = SNAKE.pattern
    for name in ("inputs", "outputs"):
        for definition in defs.values():
            port_map = definition.get("properties", {}).get(name)
            if port_map is not None:
                for option in port_map.get("anyOf", []):
                    if option.get("type") == "object":
                        option["propertyNames"] = {"pattern": SNAKE.pattern}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "portwright blueprint, version 1",
    }


def blueprint_schema_text() -> str:
    """The schema as stable, sorted JSON text ending in a newline."""
    return (
        json.dumps(blueprint_schema(), indent=2, sort_keys=True, ensure_ascii=False)
        + "\n"
    )
