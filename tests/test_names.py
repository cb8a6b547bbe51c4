"""The name rules: each keeps the emitted code valid, and none refuses a good name."""

from __future__ import annotations

import keyword

import pydantic
import pytest

from generator import names


@pytest.mark.parametrize("value", ["shop", "order_pipeline", "_internal", "a1", "x"])
def test_good_service_and_component_names(value: str) -> None:
    assert names.service_name_problem(value) is None
    assert names.component_name_problem(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Shop", "name 'Shop' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"),
        ("1shop", "name '1shop' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"),
        ("my-shop", "name 'my-shop' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"),
        ("", "name '' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"),
        ("shop\n", "name 'shop\\n' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"),
        ("import", "name 'import' is a Python keyword; choose another name"),
        ("s" * 65, f"name '{'s' * 65}' is longer than 64 characters"),
        ("asyncio", "name 'asyncio' would shadow the Python module of that name; choose another"),
        ("fastapi", "name 'fastapi' would shadow the Python module of that name; choose another"),
        ("runtime", "name 'runtime' would shadow the Python module of that name; choose another"),
    ],
)  # fmt: skip
def test_bad_service_names(value: str, problem: str) -> None:
    assert names.service_name_problem(value) == problem


def test_service_name_of_64_characters_is_fine() -> None:
    assert names.service_name_problem("s" * 64) is None


@pytest.mark.parametrize(
    "value", ["app", "settings", "main", "str", "len", "self", "build_service"]
)
def test_component_names_the_emitted_code_uses(value: str) -> None:
    assert names.component_name_problem(value) == (
        f"component name {value!r} shadows a name the emitted code uses; choose another"
    )


def test_every_python_keyword_is_refused_where_it_would_be_an_identifier() -> None:
    for word in keyword.kwlist:
        if names.SNAKE.match(word):
            assert names.component_name_problem(word) is not None, word
            assert names.field_name_problem(word) is not None, word
        if names.SCHEMA.match(word):  # None, True, False
            assert names.schema_name_problem(word) == (
                f"schema name {word!r} is a Python keyword; choose another name"
            )


@pytest.mark.parametrize("value", ["in", "out", "errors", "from", "class", "_x"])
def test_port_names_may_be_keywords(value: str) -> None:
    # ports appear in emitted code only as string literals
    assert names.port_name_problem(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("In", "port name 'In' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"),
        ("a.b", "port name 'a.b' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"),
        ("p" * 65, f"port name '{'p' * 65}' is longer than 64 characters"),
    ],
)  # fmt: skip
def test_bad_port_names(value: str, problem: str) -> None:
    assert names.port_name_problem(value) == problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("_id", "field name '_id' starts with '_', which pydantic treats as private"),
        ("__x", "field name '__x' starts with '_', which pydantic treats as private"),
        ("Id", "field name 'Id' is not a valid name: use snake_case (^[a-z][a-z0-9_]*$)"),
        ("lambda", "field name 'lambda' is a Python keyword; choose another name"),
        ("model_fields", "field name 'model_fields' shadows an attribute of pydantic's BaseModel"),
        ("model_anything", "field name 'model_anything' shadows an attribute of pydantic's BaseModel"),
        ("dict", "field name 'dict' shadows an attribute of pydantic's BaseModel"),
        ("json", "field name 'json' shadows an attribute of pydantic's BaseModel"),
    ],
)  # fmt: skip
def test_bad_field_names(value: str, problem: str) -> None:
    assert names.field_name_problem(value) == problem


def test_no_field_name_shadows_a_base_model_attribute() -> None:
    public = [n for n in dir(pydantic.BaseModel) if not n.startswith("_")]
    assert public
    for name in public:
        assert names.field_name_problem(name) is not None, name


@pytest.mark.parametrize("value", ["order_id", "id", "type", "kind", "from_"])
def test_good_field_names(value: str) -> None:
    assert names.field_name_problem(value) is None


@pytest.mark.parametrize("value", sorted(names.RESERVED_SCHEMAS))
def test_reserved_schema_names(value: str) -> None:
    assert names.schema_name_problem(value) == (
        f"schema name {value!r} is reserved by the emitted code; choose another"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("order", "schema name 'order' is not a valid name: use CamelCase (^[A-Z][A-Za-z0-9]*$)"),
        ("Scored_Order", "schema name 'Scored_Order' is not a valid name: use CamelCase (^[A-Z][A-Za-z0-9]*$)"),
        ("None", "schema name 'None' is a Python keyword; choose another name"),
        ("O" * 65, f"schema name '{'O' * 65}' is longer than 64 characters"),
    ],
)  # fmt: skip
def test_bad_schema_names(value: str, problem: str) -> None:
    assert names.schema_name_problem(value) == problem


@pytest.mark.parametrize(
    ("snake", "camel"),
    [("by_risk", "ByRisk"), ("score", "Score"), ("_x", "X"), ("a__b", "AB"), ("_", "Component")],
)  # fmt: skip
def test_class_name(snake: str, camel: str) -> None:
    assert names.class_name(snake) == camel
