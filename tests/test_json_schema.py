"""The JSON Schema editors use says what the loader says, as far as a schema can.

Editors must never flag a blueprint portwright accepts, and should flag the shape
mistakes (unknown keys, wrong types, bad values and names) that it refuses. Rules that
need the whole graph (ports, cycles, schemas that refer to each other) are the loader's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from generator.json_schema import SCHEMA_ID, blueprint_schema, blueprint_schema_text
from generator.yaml_source import read_source

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).parent.parent
COMMITTED = ROOT / "docs" / "blueprint.schema.json"
FIXTURES = Path(__file__).parent / "blueprints"
VALID = [
    *sorted((ROOT / "blueprints").glob("*.yaml")),
    *sorted((FIXTURES / "ok").glob("*.yaml")),
    *sorted((FIXTURES / "warn").glob("*.yaml")),
]
# Fixtures whose every problem is one of shape, which the schema can see too.
SHAPE_ERRORS = [
    "bad_connection_text",
    "bad_names",
    "bad_routes",
    "bad_sizes",
    "feedback_string",
    "missing_kind",
    "missing_required",
    "renamed_from_shape",
    "sink_outputs",
    "unknown_keys",
    "unknown_kind",
    "wrong_types",
]


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _data(path: Path) -> Any:
    # the same plain data the loader sees (timestamps stay text, as editors see them)
    return read_source(path).data


def test_committed_schema_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == blueprint_schema_text(), (
        "docs/blueprint.schema.json is stale; refresh it with: "
        "portwright schema > docs/blueprint.schema.json"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    schema = blueprint_schema()

    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert blueprint_schema_text().endswith("}\n")
    assert blueprint_schema_text() == blueprint_schema_text()


def test_examples_point_editors_at_the_schema() -> None:
    for path in sorted((ROOT / "blueprints").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../docs/blueprint.schema.json"
        assert (path.parent / "../docs/blueprint.schema.json").resolve() == COMMITTED


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_what_portwright_accepts_the_schema_accepts(path: Path, validator: Any) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_data(path))]
    assert errors == []


@pytest.mark.parametrize("name", SHAPE_ERRORS)
def test_shape_mistakes_are_flagged_by_the_schema(name: str, validator: Any) -> None:
    assert not validator.is_valid(_data(FIXTURES / "bad" / f"{name}.yaml"))


MINIMAL: dict[str, Any] = {
    "portwright": 1,
    "name": "shop",
    "schemas": {"Order": {"fields": {"order_id": "str"}}},
    "components": {
        "api": {"kind": "api_endpoint", "route": "POST /orders", "output": "Order"},
        "store": {"kind": "sink", "input": "Order"},
    },
    "connections": ["api.out -> store.in"],
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("portwright",), 2),
        (("name",), "My-Shop"),
        (("name",), 3),
        (("components", "api", "route"), "GET /orders"),
        (("components", "api", "kind"), "endpoint"),
        (("components", "api", "rout"), "POST /orders"),
        (("components", "store", "buffer_size"), 0),
        (("components", "store", "overflow"), "drop"),
        (("components", "store", "inputs"), {"In": "Order"}),
        (("schemas", "order"), {"fields": {}}),
        (("schemas", "Order", "fields", "Order_id"), "str"),
        (("schemas", "Order", "fields", "amount"), {"type": "float", "gt": "0"}),
        (("connections",), ["api.out => store.in"]),
        (("connections",), [{"from": "api.out"}]),
        (("defaults",), {"pii_fields": "email"}),
    ],
)
def test_single_mistakes_are_flagged(
    path: tuple[str, ...], value: Any, validator: Any
) -> None:
    assert validator.is_valid(MINIMAL)
    data = json.loads(json.dumps(MINIMAL))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value

    assert not validator.is_valid(data)
