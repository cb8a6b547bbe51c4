"""The join kind in a blueprint: resolved from its keys, interval and time; misuse
(what the runtime's Join would refuse at start, and an unkeyed, mistyped or Redis
input) refused at load with its line; the emitted project holds a typed base, a user
file, and tests derived from the blueprint that pass, with the whole gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generator.blueprint import JoinConf
from generator.join_plan import join_cases
from generator.loader import load_text
from generator.planner import entries_context, plan
from generator.render import template_names, templates_root
from tests.cli import generate_gated
from tests.refusals import problems_of

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "blueprints" / "order_payments.yaml"
NAME = "j.yaml"

BASE_LINES = [
    "portwright: 1",  # 1
    "name: j",  # 2
    "schemas:",  # 3
    "  Order:",  # 4
    "    key: order_id",  # 5
    "    fields: {order_id: str, placed_at: datetime, note: str}",  # 6
    "  Payment:",  # 7
    "    fields: {order_id: str, paid_at: datetime, amount: float}",  # 8
    "  Matched:",  # 9
    "    fields: {order_id: str, amount: float}",  # 10
    "components:",  # 11
    "  orders: {kind: api_endpoint, route: POST /o, output: Order}",  # 12
    "  payments: {kind: api_endpoint, route: POST /p, output: Payment}",  # 13
    "  paid:",  # 14
    "    kind: join",  # 15
    "    inputs: {left: Order, right: Payment}",  # 16
    "    output: Matched",  # 17
    "    within: 5m",  # 18
    "    time: {left: placed_at, right: paid_at}",  # 19
    "  store: {kind: sink, input: Matched}",  # 20
    "connections:",  # 21
    "  - orders.out -> paid.left",  # 22
    "  - {from: payments.out, to: paid.right, key: order_id}",  # 23
    "  - paid.out -> store.in",  # 24
]


def _with(changes: dict[int, str]) -> str:
    lines = list(BASE_LINES)
    for number, text in sorted(changes.items(), reverse=True):
        lines[number - 1 : number] = text.split("\n")
    return "\n".join(lines) + "\n"


def test_the_base_blueprint_loads_with_its_join_resolved() -> None:
    paid = load_text(_with({}), NAME).component("paid")
    assert paid.join == JoinConf(
        within=300.0,
        time_left="placed_at",
        time_right="paid_at",
        grace=0.0,
        key_left="order_id",  # the schema's key
        key_right="order_id",  # the connection's
    )
    assert [(p.name, p.schema) for p in paid.outputs] == [("out", "Matched")]


def test_unmatched_and_errors_are_made_outputs_of_their_schemas() -> None:
    text = _with(
        {
            19: "    time: placed_at\n    unmatched: true\n    errors: true\n"
            "    grace: 10s\n    max_buffered: 500",
            6: "    fields: {order_id: str, placed_at: datetime, note: str}",
            8: "    fields: {order_id: str, placed_at: datetime, amount: float}",
        }
    )
    paid = load_text(text, NAME).component("paid")
    assert [(p.name, p.schema) for p in paid.outputs] == [
        ("out", "Matched"),
        ("unmatched_left", "Order"),
        ("unmatched_right", "Payment"),
        ("errors", "ErrorRecord"),
    ]
    assert paid.join is not None
    assert (paid.join.time_left, paid.join.time_right) == ("placed_at", "placed_at")
    assert (paid.join.grace, paid.join.max_buffered) == (10.0, 500)


def test_processing_time_takes_no_time_field() -> None:
    paid = load_text(_with({19: ""}), NAME).component("paid")
    assert paid.join is not None
    assert paid.join.time_left is paid.join.time_right is None


def test_a_join_over_redis_loads_with_both_inputs_and_its_output_there() -> None:
    text = _with(
        {
            22: "  - {from: orders.out, to: paid.left, transport: redis, "
            "partitions: 4}",
            23: "  - {from: payments.out, to: paid.right, key: order_id, "
            "transport: redis, partitions: 4}",
            24: "  - {from: paid.out, to: store.in, transport: redis}",
        }
    )
    blueprint = load_text(text, NAME)
    into = [c for c in blueprint.connections if c.target.component == "paid"]
    assert [(c.transport, c.partitions) for c in into] == [("redis", 4)] * 2


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {23: "  - payments.out -> paid.right"},
            "23: connections[1]: join 'paid' takes keyed inputs (it pairs items of "
            "one key); connection payments.out -> paid.right has none: add 'key: "
            "<field>' to it, or a 'key' to schema 'Payment'",
        ),
        (
            {8: "    fields: {order_id: int, paid_at: datetime, amount: float}"},
            "16: components.paid.inputs: join 'paid': its left key 'order_id' is str "
            "and its right key 'order_id' is int; items pair on equal keys, so they "
            "must be of one type",
        ),
        (
            {19: "    time: {left: note, right: paid_at}"},
            "19: components.paid.time.left: join 'paid': time 'note' of its left "
            "input: field 'note' is str; event time is a datetime field (required, "
            "never null)",
        ),
        (
            {19: "    time: {left: placed_at, right: paid}"},
            "19: components.paid.time.right: join 'paid': time 'paid' of its right "
            "input: schema 'Payment' has no field 'paid'",
        ),
        (
            {19: "    time: placed_at"},
            "19: components.paid.time: join 'paid': time 'placed_at' of its right "
            "input: schema 'Payment' has no field 'placed_at'",
        ),
        (
            {19: "    grace: 10s"},
            "19: components.paid.grace: join 'paid': 'grace' is for event time (set "
            "'time'); items on processing time are never out of order",
        ),
        (
            {16: "    inputs: {left: Order, other: Payment}", 23: ""},
            "16: components.paid.inputs: join 'paid' takes two inputs named left and "
            "right ('inputs: {left: Schema, right: Schema}'), not left, other",
        ),
        (
            {17: "    outputs: {out: Matched}"},
            "17: components.paid.outputs: join 'paid' declares 'output: Schema' (what "
            "match returns, on its port out); its unmatched and errors ports are made "
            "from 'unmatched: true' and 'errors: true'",
        ),
        (
            {
                23: "  - {from: payments.out, to: paid.right, key: order_id, "
                "transport: redis}"
            },
            "22: connections[0]: join 'paid': an input over redis keeps its state "
            "in Redis, so both do; connection orders.out -> paid.left is carried by "
            "memory: carry both inputs over redis, or both in memory",
        ),
        (
            {
                22: "  - {from: orders.out, to: paid.left, transport: redis, "
                "partitions: 4}",
                23: "  - {from: payments.out, to: paid.right, key: order_id, "
                "transport: redis, partitions: 8}",
                24: "  - {from: paid.out, to: store.in, transport: redis}",
            },
            "23: connections[1].partitions: join 'paid': over redis its inputs need "
            "the same number of partitions (left 4, right 8): partition p of each "
            "holds the same keys, joined by one replica",
        ),
        (
            {
                19: "",
                22: "  - {from: orders.out, to: paid.left, transport: redis}",
                23: "  - {from: payments.out, to: paid.right, key: order_id, "
                "transport: redis}",
                24: "  - {from: paid.out, to: store.in, transport: redis}",
            },
            "14: components.paid: join 'paid': over redis it joins on event time "
            "only (set 'time')",
        ),
        (
            {
                22: "  - {from: orders.out, to: paid.left, transport: redis}",
                23: "  - {from: payments.out, to: paid.right, key: order_id, "
                "transport: redis}",
            },
            "24: connections[2]: join 'paid': over redis what it makes is written by "
            "the script that acknowledges its inputs, so connection paid.out -> "
            "store.in must be over redis too",
        ),
        (
            {18: "    within: soon"},
            "18: components.paid.within:",
        ),
    ],
    ids=[
        "unkeyed",
        "key-types",
        "time-not-datetime",
        "time-unknown",
        "one-time-missing-on-a-side",
        "grace-on-processing-time",
        "inputs-misnamed",
        "outputs-given",
        "redis-one-input",
        "redis-partitions-differ",
        "redis-processing-time",
        "redis-output-in-memory",
        "within-not-a-duration",
    ],
)
def test_misuse_is_refused_at_its_line(changes: dict[int, str], expected: str) -> None:
    problems = problems_of(_with(changes), NAME)
    assert any(p.startswith(expected) for p in problems), problems


def test_an_item_on_one_side_reaches_that_side_s_unmatched_sink_only() -> None:
    blueprint = load_text(EXAMPLE.read_text(), EXAMPLE.name)
    reaches = {e["component"]: e["reaches"] for e in entries_context(blueprint)}
    # alone it pairs with nothing; at the drain it leaves unmatched
    assert reaches == {
        "orders": {"unpaid_orders.in": 1},
        "payments": {"stray_payments.in": 1},
    }


def test_over_redis_an_item_alone_stays_held_by_the_drain() -> None:
    # the emitted pipeline test's run over Redis: the join keeps its state in
    # Redis (for the partitions' next holders), so the drain releases nothing
    text = EXAMPLE.read_text()
    for edge in (
        "orders.out -> paid.left",
        "payments.out -> paid.right",
        "paid.out -> paid_orders.in",
        "paid.unmatched_left -> unpaid_orders.in",
        "paid.unmatched_right -> stray_payments.in",
    ):
        source, target = edge.split(" -> ")
        text = text.replace(
            f"  - {edge}", f"  - {{from: {source}, to: {target}, transport: redis}}"
        )
    blueprint = load_text(text, EXAMPLE.name)
    entries = {e["component"]: e for e in entries_context(blueprint)}
    assert entries["orders"]["reaches"] == {"unpaid_orders.in": 1}
    assert entries["orders"]["reaches_on_redis"] == {}
    assert entries["payments"]["reaches_on_redis"] == {}


def test_only_a_project_with_joins_gets_the_join_tests() -> None:
    names = template_names(templates_root())
    with_join = load_text(EXAMPLE.read_text(), EXAMPLE.name)
    planned = {f.path for f in plan(with_join, "", names).files}
    assert "tests/test_joins.py" in planned
    assert "order_payments/components/paid.py" in planned
    without = load_text(
        (ROOT / "blueprints" / "order_pipeline.yaml").read_text(), "o.yaml"
    )
    assert "tests/test_joins.py" not in {f.path for f in plan(without, "", names).files}


def test_the_example_passes_its_gate(tmp_path: Path) -> None:
    project = generate_gated(tmp_path, "order_payments.yaml", EXAMPLE.read_text())
    bases = (project / "order_payments" / "bases.py").read_text()
    assert "class PaidBase(Join):" in bases
    # typed by the blueprint; an async def (a lookup) is awaited by the runtime
    signature = (
        "def match(self, left: Order, right: Payment) -> PaidOrder | None | "
        "Awaitable[PaidOrder | None]:"
    )
    assert "".join(signature.split()) in "".join(bases.split())  # black wraps it
    assert "within=300.0," in bases
    assert "time={'left': 'placed_at', 'right': 'paid_at'}," in bases.replace('"', "'")
    mine = (project / "order_payments" / "components" / "paid.py").read_text()
    assert "class Paid(PaidBase):" in mine
    assert "def match(self, left: Order, right: Payment) -> PaidOrder | None:" in mine
    # the emitted join tests ran in the gate; run them once more, by name
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "tests/test_joins.py"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout, done.stdout  # (-v undoes the project's -q)


def test_a_processing_time_join_without_unmatched_passes_its_gate(
    tmp_path: Path,
) -> None:
    text = _with({19: "    within: 500ms", 18: ""})
    generate_gated(tmp_path, NAME, text)


# one output feeds both sides: each item reaches the join twice and pairs with itself
BOTH_SIDES = """\
portwright: 1
name: twins
schemas:
  Order:
    key: order_id
    fields: {order_id: str, placed_at: datetime, note: str}
  Matched:
    fields: {order_id: str, note: str}
components:
  orders: {kind: api_endpoint, route: POST /o, output: Order}
  twin:
    kind: join
    inputs: {left: Order, right: Order}
    output: Matched
    within: 5m
    time: placed_at
    unmatched: true
  store: {kind: sink, input: Matched}
  lone_left: {kind: sink, input: Order}
  lone_right: {kind: sink, input: Order}
connections:
  - orders.out -> twin.left
  - orders.out -> twin.right
  - twin.out -> store.in
  - twin.unmatched_left -> lone_left.in
  - twin.unmatched_right -> lone_right.in
"""


def test_an_item_on_both_sides_pairs_with_itself_and_leaves_on_out() -> None:
    blueprint = load_text(BOTH_SIDES, "twins.yaml")
    reaches = {e["component"]: e["reaches"] for e in entries_context(blueprint)}
    assert reaches == {"orders": {"store.in": 1}}


def test_an_item_on_both_sides_of_other_keys_leaves_unmatched_on_both() -> None:
    # the two sides key on two fields, whose example values differ
    text = BOTH_SIDES.replace(
        "fields: {order_id: str, placed_at: datetime, note: str}",
        "fields: {order_id: str, placed_at: datetime, note: {type: str, "
        "max_length: 3}}",
    ).replace(
        "  - orders.out -> twin.right",
        "  - {from: orders.out, to: twin.right, key: note}",
    )
    blueprint = load_text(text, "twins.yaml")
    reaches = {e["component"]: e["reaches"] for e in entries_context(blueprint)}
    assert reaches == {"orders": {"lone_left.in": 1, "lone_right.in": 1}}


def test_a_join_fed_on_both_sides_by_one_output_passes_its_gate(
    tmp_path: Path,
) -> None:
    generate_gated(tmp_path, "twins.yaml", BOTH_SIDES)


def test_the_join_tests_key_both_sides_by_a_value_both_keys_allow(
    tmp_path: Path,
) -> None:
    # the left example's key ("example") breaks the right key's max_length
    text = _with(
        {
            8: "    fields: {order_id: {type: str, max_length: 3}, paid_at: datetime, "
            "amount: float}"
        }
    )
    (case,) = join_cases(load_text(text, NAME))
    assert case["left_example"]["order_id"] == case["right_example"]["order_id"]
    assert len(case["right_example"]["order_id"]) <= 3
    generate_gated(tmp_path, NAME, text)


def test_keys_no_value_satisfies_both_are_refused_at_load() -> None:
    text = _with(
        {
            6: "    fields: {order_id: {type: str, pattern: '^a+$'}, "
            "placed_at: datetime, note: str}",
            8: "    fields: {order_id: {type: str, pattern: '^b+$'}, "
            "paid_at: datetime, amount: float}",
        }
    )
    problems = problems_of(text, NAME)
    expected = (
        "16: components.paid.inputs: join 'paid': no value is allowed by both its "
        "left key 'order_id' and its right key 'order_id'"
    )
    assert any(p.startswith(expected) for p in problems), problems
