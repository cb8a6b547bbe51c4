"""The resolved blueprint: what the planner reads is explicit and right.

Effective settings follow one precedence, connection > receiving component > defaults;
ingresses get their timeout and body cap; schemas list inherited fields first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.blueprint import Blueprint, TypeRef
from generator.loader import load_blueprint, load_text
from generator.model import DEFAULT_PII_FIELDS

EXAMPLES = Path(__file__).parent.parent / "blueprints"


@pytest.fixture(scope="module")
def orders() -> Blueprint:
    return load_blueprint(EXAMPLES / "order_pipeline.yaml")


@pytest.fixture(scope="module")
def sensors() -> Blueprint:
    return load_blueprint(EXAMPLES / "sensor_alerts.yaml")


def _settings(blueprint: Blueprint) -> dict[str, tuple[int, str]]:
    return {
        f"{c.source.ref} -> {c.target.ref}": (c.buffer_size, c.overflow)
        for c in blueprint.connections
    }


def test_order_pipeline_connections_and_their_effective_settings(
    orders: Blueprint,
) -> None:
    assert _settings(orders) == {
        "orders_api.out -> score.in": (1024, "block"),
        "score.out -> by_risk.in": (1024, "block"),
        "by_risk.high -> review_queue.in": (1024, "block"),
        "by_risk.low -> ledger.accepted": (64, "drop_oldest"),  # the connection's own
    }
    assert not any(c.feedback for c in orders.connections)


def test_sensor_alerts_precedence_connection_then_component_then_defaults(
    sensors: Blueprint,
) -> None:
    settings = _settings(sensors)

    assert settings["intake.out -> plausible.in"] == (512, "block")  # defaults
    # pager says buffer_size: 128; its connection says only overflow
    assert settings["by_severity.critical -> pager.in"] == (128, "block")
    # the connection's buffer_size and overflow beat the defaults
    assert settings["by_severity.routine -> archive.routine"] == (2048, "drop_oldest")


def test_precedence_when_every_level_speaks() -> None:
    blueprint = load_text("""\
portwright: 1
name: shop
defaults: {buffer_size: 10, overflow: drop_newest}
schemas:
  Job: {fields: {job_id: str}}
components:
  src: {kind: source, outputs: {a: Job, b: Job, c: Job}, buffer_size: 99}
  quiet: {kind: sink, inputs: {a: Job, b: Job, c: Job}}
  loud: {kind: sink, input: Job, buffer_size: 20, overflow: block}
connections:
  - src.a -> quiet.a
  - {from: src.b, to: quiet.b, buffer_size: 30}
  - {from: src.c, to: quiet.c, overflow: drop_oldest}
  - {from: src.a, to: loud.in, buffer_size: 40}
""")

    # the sending component's settings play no part: src's buffer_size is ignored
    assert _settings(blueprint) == {
        "src.a -> quiet.a": (10, "drop_newest"),
        "src.b -> quiet.b": (30, "drop_newest"),
        "src.c -> quiet.c": (10, "drop_oldest"),
        "src.a -> loud.in": (40, "block"),
    }


def test_built_in_defaults_when_the_blueprint_gives_none() -> None:
    blueprint = load_text("""\
portwright: 1
name: shop
schemas:
  Job: {fields: {job_id: str, owner_token: {type: str, pii: true}}}
components:
  api: {kind: api_endpoint, route: POST /jobs, output: Job}
  store: {kind: sink, input: Job}
connections: [api.out -> store.in]
""")

    assert _settings(blueprint) == {"api.out -> store.in": (1024, "block")}
    api = blueprint.component("api")
    assert (api.timeout_ms, api.max_payload_kb, api.burst_limit) == (2000, 64, 256)
    assert blueprint.version == "0.1.0"
    assert blueprint.pii_fields == tuple(sorted({*DEFAULT_PII_FIELDS, "owner_token"}))


def test_ingress_timeout_and_payload_cap(sensors: Blueprint, orders: Blueprint) -> None:
    live, backfill = sensors.component("readings_api"), sensors.component(
        "backfill_api"
    )

    assert (live.method, live.path, live.timeout_ms, live.max_payload_kb) == (
        "POST",
        "/readings",
        1000,
        16,
    )
    assert (
        backfill.method,
        backfill.path,
        backfill.timeout_ms,
        backfill.max_payload_kb,
    ) == ("PUT", "/readings/backfill", 5000, 256)
    api = orders.component("orders_api")
    assert (api.timeout_ms, api.max_payload_kb) == (500, 64)
    # only ingresses have routes and timeouts
    assert sensors.component("intake").timeout_ms is None
    assert sensors.component("intake").method is None


def test_merger_burst_limit_overrides_the_default(sensors: Blueprint) -> None:
    assert sensors.component("intake").burst_limit == 32
    assert sensors.component("classify").burst_limit == 64


def test_ports_shorthands_and_error_ports(sensors: Blueprint) -> None:
    classify = sensors.component("classify")

    assert [(p.name, p.schema, p.direction) for p in classify.inputs] == [
        ("in", "Reading", "in")
    ]
    assert [(p.name, p.schema) for p in classify.outputs] == [
        ("out", "Alert"),
        ("errors", "ErrorRecord"),
    ]
    assert [p.name for p in classify.data_outputs] == ["out"]
    assert [p.name for p in sensors.component("intake").inputs] == [
        "live",
        "backfill",
        "polled",
    ]
    assert sensors.component("dead_letters").input("in") is not None
    assert [c.name for c in sensors.components][:3] == [
        "readings_api",
        "backfill_api",
        "poller",
    ]


def test_inherited_fields_come_first(orders: Blueprint, sensors: Blueprint) -> None:
    scored = orders.schema("ScoredOrder")

    assert scored.extends == "Order"
    assert [f.name for f in scored.fields] == [
        "order_id",
        "customer_email",
        "amount",
        "currency",
        "event_time",
        "risk",
    ]
    assert scored.own_fields == ("risk",)
    assert {f.declared_in for f in scored.fields[:-1]} == {"Order"}
    assert scored.fields[-1].declared_in == "ScoredOrder"
    alert = sensors.schema("Alert")
    assert [f.name for f in alert.fields][-3:] == ["severity", "score", "raised_on"]
    assert len(alert.fields) == len(sensors.schema("Reading").fields) + 3


def test_schemas_come_after_what_they_refer_to(sensors: Blueprint) -> None:
    order = [s.name for s in sensors.schemas]

    assert order.index("Location") < order.index("Reading") < order.index("Alert")


def test_fields_types_defaults_and_constraints(
    orders: Blueprint, sensors: Blueprint
) -> None:
    order = {f.name: f for f in orders.schema("Order").fields}
    reading = {f.name: f for f in sensors.schema("Reading").fields}
    floor = sensors.schema("Location").fields[1]

    assert order["amount"].constraints == (("gt", 0),)
    assert order["currency"].required is False
    assert order["currency"].default == "USD"
    assert order["currency"].constraints == (("pattern", "^[A-Z]{3}$"),)
    assert order["event_time"].type == TypeRef("scalar", "datetime")
    assert order["order_id"].required is True
    assert reading["location"].type == TypeRef("schema", "Location", optional=True)
    assert reading["location"].required is True  # optional type, but no default
    assert str(reading["tags"].type) == "list[str]"
    assert reading["tags"].default == []
    assert reading["sensor_id"].description == "Hardware id, lower case"
    assert (floor.name, str(floor.type), floor.required, floor.default) == (
        "floor",
        "int | None",
        False,
        None,
    )
    assert floor.constraints == (("ge", -5), ("le", 200))


def test_pii_fields_are_the_defaults_plus_fields_marked_pii(
    orders: Blueprint, sensors: Blueprint
) -> None:
    assert orders.pii_fields == (
        "api_key",
        "credit_card",
        "customer_email",
        "email",
        "password",
        "phone",
        "secret",
        "ssn",
        "token",
    )
    assert sensors.pii_fields == ("email", "owner_email", "phone", "token")


def test_pii_field_names_are_lower_cased() -> None:
    blueprint = load_text("""\
portwright: 1
name: shop
defaults: {pii_fields: [Email, IBAN]}
components: {}
""")

    assert blueprint.pii_fields == ("email", "iban")


def test_feedback_connection_is_kept_and_marked() -> None:
    blueprint = load_blueprint(
        Path(__file__).parent / "blueprints" / "ok" / "feedback_loop.yaml"
    )

    loop = [c for c in blueprint.connections if c.feedback]
    assert [(c.source.ref, c.target.ref, c.buffer_size) for c in loop] == [
        ("work.retry", "intake.retried", 16)
    ]


def test_yaml_merge_keys_may_override_what_they_merge() -> None:
    blueprint = load_text("""\
portwright: 1
name: shop
schemas:
  Job: {fields: {job_id: str}}
components:
  src: {kind: source, outputs: {a: Job, b: Job, c: Job}}
  first: &sink
    kind: sink
    input: Job
    buffer_size: 4
  second:
    <<: *sink
    buffer_size: 8
  third:
    buffer_size: 16
    <<: *sink
connections: [src.a -> first.in, src.b -> second.in, src.c -> third.in]
""")

    assert [c.buffer_size for c in blueprint.connections] == [4, 8, 16]
