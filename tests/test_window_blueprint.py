"""The window kind in a blueprint: its output schema is made from the blueprint and
typed as precisely as it allows, misuse (what the runtime's Window would refuse at
start, and an unkeyed or Redis input) is refused at load with its line, and the
emitted project runs a window of every shape through its tests and its gate."""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from generator.blueprint import WindowConf
from generator.loader import load_blueprint, load_text
from generator.planner import plan
from generator.render import template_names, templates_root
from generator.window_plan import windows_per_item
from tests.cli import generate_gated
from tests.refusals import problems_of

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "blueprints" / "sensor_counts.yaml"
NAME = "w.yaml"

BASE_LINES = [
    "portwright: 1",  # 1
    "name: w",  # 2
    "schemas:",  # 3
    "  Reading:",  # 4
    "    fields:",  # 5
    "      sensor: str",  # 6
    "      value: float",  # 7
    "      label: str",  # 8
    "      tags: list[str]",  # 9
    "      at: datetime",  # 10
    "      seen: {type: datetime | None, default: null}",  # 11
    "components:",  # 12
    "  api: {kind: api_endpoint, route: POST /r, output: Reading}",  # 13
    "  counts:",  # 14
    "    kind: window",  # 15
    "    input: Reading",  # 16
    "    window: {size: 1m, time: at}",  # 17
    "    aggregate: count",  # 18
    "  store: {kind: sink, input: CountsWindow}",  # 19
    "connections:",  # 20
    "  - {from: api.out, to: counts.in, key: sensor}",  # 21
    "  - counts.out -> store.in",  # 22
]


def _with(changes: dict[int, str]) -> str:
    lines = list(BASE_LINES)
    for number, text in sorted(changes.items(), reverse=True):
        lines[number - 1 : number] = text.split("\n")
    return "\n".join(lines) + "\n"


def _value_type(changes: dict[int, str]) -> str:
    blueprint = load_text(_with(changes), NAME)
    value = next(
        f for f in blueprint.schema("CountsWindow").fields if f.name == "value"
    )
    return str(value.type)


def test_the_base_blueprint_loads_with_its_window_resolved() -> None:
    blueprint = load_text(_with({}), NAME)
    counts = blueprint.component("counts")
    assert counts.window == WindowConf(
        type="tumbling",
        size=60.0,
        hop=None,
        count=None,
        time="at",
        grace=0.0,
        aggregate="count",
        field=None,
        emit="final",
        key="sensor",
    )
    assert [(p.name, p.schema) for p in counts.outputs] == [("out", "CountsWindow")]
    made = blueprint.schema("CountsWindow")
    assert [(f.name, str(f.type), f.required) for f in made.fields] == [
        ("key", "str", True),
        ("start", "datetime", True),
        ("end", "datetime", True),
        ("value", "int", True),
    ]


@pytest.mark.parametrize(
    ("aggregate", "value"),
    [
        ("count", "int"),
        ("{sum: value}", "float"),
        ("{mean: value}", "float"),
        ("{min: label}", "str"),
        ("{max: at}", "datetime"),
        ("{last: seen}", "datetime | None"),
        ("last", "Reading"),
        ("collect", "list[Reading]"),
        ("{collect: tags}", "list[list[str]]"),
    ],
)
def test_the_value_is_typed_by_the_aggregate(aggregate: str, value: str) -> None:
    assert _value_type({18: f"    aggregate: {aggregate}"}) == value


def test_the_key_is_typed_as_the_key_field_nested_or_of_the_schema() -> None:
    text = _with(
        {
            4: "  Reading:\n    key: where.id",
            10: "      at: datetime\n      where: Place",
            12: "  Place:\n    fields: {id: int}\ncomponents:",
            21: "  - api.out -> counts.in",
        }
    )
    blueprint = load_text(text, NAME)
    key = next(f for f in blueprint.schema("CountsWindow").fields if f.name == "key")
    assert str(key.type) == "int"
    assert blueprint.component("counts").window.key == "where.id"  # type: ignore[union-attr]


def test_late_and_errors_are_outputs_of_their_schemas() -> None:
    text = _with({18: "    aggregate: count\n    late: true\n    errors: true"})
    outputs = load_text(text, NAME).component("counts").outputs
    assert [(p.name, p.schema) for p in outputs] == [
        ("out", "CountsWindow"),
        ("late", "Reading"),
        ("errors", "ErrorRecord"),
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {21: "  - api.out -> counts.in"},
            "21: connections[0]: window 'counts' takes a keyed input (its windows are "
            "per key); connection api.out -> counts.in has none: add 'key: <field>' "
            "to it, or a 'key' to schema 'Reading'",
        ),
        (
            {
                21: "  - {from: api.out, to: counts.in, key: sensor, "
                "transport: redis}"
            },
            "22: connections[1]: window 'counts': its input comes over "
            "redis, so its results are written in the script that acknowledges it; "
            "carry connection counts.out -> store.in over redis too",
        ),
        (
            {17: "    window: {size: 1m, hop: 30s}"},
            "17: components.counts.window.hop: window 'counts': a tumbling window "
            "has no 'hop' (only hopping windows do)",
        ),
        (
            {17: "    window: {type: sliding, size: 1m, hop: 30s}"},
            "17: components.counts.window.hop: window 'counts': a sliding window "
            "has no 'hop' (only hopping windows do)",
        ),
        (
            {17: "    window: {type: hopping, size: 1m}"},
            "17: components.counts.window: window 'counts': a hopping window needs "
            "'hop', at most its size (60s)",
        ),
        (
            {17: "    window: {type: hopping, size: 1m, hop: 2m}"},
            "17: components.counts.window.hop: window 'counts': a hopping window "
            "needs 'hop', at most its size (60s)",
        ),
        (
            {17: "    window: {count: 10, size: 1m}"},
            "17: components.counts.window.count: window 'counts': count windows are "
            "tumbling and take no size or hop; give either 'count' or 'size'",
        ),
        (
            {17: "    window: {type: sliding, count: 10}"},
            "17: components.counts.window.count: window 'counts': count windows are "
            "tumbling and take no size or hop; give either 'count' or 'size'",
        ),
        (
            {17: "    window: {time: at}"},
            "17: components.counts.window: window 'counts': give 'size' (a "
            "duration) or 'count'",
        ),
        (
            {17: "    window: {size: 1m, grace: 5s}"},
            "17: components.counts.window.grace: window 'counts': 'grace' is for "
            "event time (set 'time'); items on processing time are never out of "
            "order",
        ),
        (
            {17: "    window: {size: 1m, time: label}"},
            "17: components.counts.window.time: time 'label': field 'label' is str; "
            "event time is a datetime field (required, never null)",
        ),
        (
            {17: "    window: {size: 1m, time: seen}"},
            "17: components.counts.window.time: time 'seen': field 'seen' may be "
            "left out or null; event time is a required datetime field",
        ),
        (
            {17: "    window: {size: 1m, time: when}"},
            "17: components.counts.window.time: time 'when': schema 'Reading' has "
            "no field 'when'",
        ),
        (
            {18: "    aggregate: {sum: label}"},
            "18: components.counts.aggregate.sum: sum 'label': field 'label' is "
            "str; sum takes a field of int, float, never null",
        ),
        (
            {18: "    aggregate: {max: tags}"},
            "18: components.counts.aggregate.max: max 'tags': field 'tags' is "
            "list[str]; max takes a field of int, float, str, datetime, date, "
            "never null",
        ),
        (
            {18: "    aggregate: {mean: seen}"},
            "18: components.counts.aggregate.mean: mean 'seen': field 'seen' is "
            "datetime | None; mean takes a field of int, float, never null",
        ),
        (
            {18: "    aggregate: {last: nothing}"},
            "18: components.counts.aggregate.last: last 'nothing': schema "
            "'Reading' has no field 'nothing'",
        ),
        (
            {12: "  CountsWindow:\n    fields: {n: int}\ncomponents:"},
            "16: components.counts: window 'counts' makes the schema 'CountsWindow' "
            "of its output, which the blueprint declares too; rename the schema or "
            "the component",
        ),
    ],
    ids=[
        "unkeyed",
        "redis-out-in-memory",
        "tumbling hop",
        "sliding hop",
        "hopping without hop",
        "hop past size",
        "count and size",
        "sliding count",
        "no size",
        "grace on processing time",
        "time not a datetime",
        "time optional",
        "time unknown",
        "sum of text",
        "max of a list",
        "mean of a nullable",
        "unknown field",
        "schema clash",
    ],
)
def test_misuse_is_refused_at_its_line(changes: dict[int, str], expected: str) -> None:
    assert expected in problems_of(_with(changes), NAME)


@pytest.mark.parametrize("shape", ["", "type: sliding, "])
def test_a_window_over_redis_keyed_with_its_out_over_redis_loads(shape: str) -> None:
    # tumbling, and sliding (its windows and recent items kept in Redis too)
    text = _with(
        {
            17: "    window: {" + shape + "size: 1m, time: at}",
            21: "  - {from: api.out, to: counts.in, key: sensor, transport: redis}",
            22: "  - {from: counts.out, to: store.in, transport: redis}",
        }
    )
    conf = load_text(text, NAME).component("counts").window
    assert (
        conf is not None
        and conf.key == "sensor"
        and conf.type == ("sliding" if shape else "tumbling")
    )


def test_two_input_connections_with_different_keys_are_refused() -> None:
    text = _with(
        {
            21: "  - {from: api.out, to: counts.in, key: sensor}\n"
            "  - {from: api2.out, to: counts.in, key: label}",
            13: "  api: {kind: api_endpoint, route: POST /r, output: Reading}\n"
            "  api2: {kind: api_endpoint, route: POST /s, output: Reading}",
        }
    )
    assert any(
        "its input connections have different keys (label, sensor)" in problem
        for problem in problems_of(text, NAME)
    )


@pytest.mark.parametrize("aggregate", ["median", "{sum: 3}", "{sum: a, mean: b}"])
def test_an_aggregate_of_neither_form_is_one_problem_at_its_line(
    aggregate: str,
) -> None:
    assert problems_of(_with({18: f"    aggregate: {aggregate}"}), NAME) == [
        f"18: components.counts.aggregate: aggregate {_shown(aggregate)} is not one "
        "of count, last, collect, nor a mapping {sum|mean|min|max|last|collect: "
        "<field>} (e.g. {mean: temperature}), nor {custom: <type>} (your code)"
    ]


def _shown(aggregate: str) -> str:
    return {
        "median": "'median'",
        "{sum: 3}": "{'sum': 3}",
        "{sum: a, mean: b}": "{'sum': 'a', 'mean': 'b'}",
    }[aggregate]


def test_a_shape_key_misspelt_is_reported_under_window_not_as_the_kind() -> None:
    # 'window' is both the kind (pydantic's tag in the location) and a key
    assert problems_of(_with({17: "    window: {size: 1m, tme: at}"}), NAME) == [
        "17: components.counts.window.tme: unknown key 'tme' in component 'counts' "
        "(did you mean 'time'?)"
    ]


def _conf(**changes: object) -> WindowConf:
    base = WindowConf("hopping", 7.0, 3.0, None, "at", 0.0, "count", None, "final", "k")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_an_item_is_in_as_many_windows_as_hold_its_time() -> None:
    at = datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC).isoformat()
    # [3, 10) and [0, 7) hold 4s; [6, 13) does not: two windows
    assert windows_per_item(_conf(), {"at": at}) == 2
    at = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC).isoformat()  # [0,7) [3,10) [6,13)
    assert windows_per_item(_conf(), {"at": at}) == 3
    assert windows_per_item(_conf(size=9.0), None) == 3  # a multiple: any time
    assert windows_per_item(_conf(time=None), {"at": at}) is None  # processing
    assert windows_per_item(_conf(type="tumbling", hop=None), None) == 1


def test_only_a_project_with_windows_gets_the_window_tests() -> None:
    names = template_names(templates_root())
    with_windows = plan(load_text(_with({}), NAME), "", names)
    assert "tests/test_windows.py" in {f.path for f in with_windows.files}
    plain = load_blueprint(ROOT / "blueprints" / "order_pipeline.yaml")
    assert "tests/test_windows.py" not in {f.path for f in plan(plain, "", names).files}


def test_the_example_passes_its_gate(tmp_path: Path) -> None:
    project = generate_gated(tmp_path, "sensor_counts.yaml", EXAMPLE.read_text())
    assert (project / "tests" / "test_windows.py").is_file()


# A window of every shape: time (event, processing), type, count, emit, late,
# errors, each aggregate; the emitted tests hold each to a reference of its own.
EVERY_SHAPE = """\
portwright: 1
name: shapes
schemas:
  Tick:
    key: venue.code
    fields:
      venue: Venue
      symbol: str
      price: float
      qty: {type: int, ge: 1}
      at: datetime
  Venue:
    fields:
      code: int
components:
  api: {kind: api_endpoint, route: POST /ticks, output: Tick}
  bag: {kind: window, inputs: {ticks: Tick}, window: {size: 30s}, aggregate: collect}
  running:
    kind: window
    input: Tick
    window: {type: sliding, size: 10s, time: at}
    aggregate: {sum: price}
    emit: every
    late: true
  chunks:
    kind: window
    input: Tick
    window: {count: 2, time: at}
    aggregate: last
    late: true
    errors: true
  highs:
    kind: window
    input: Tick
    window: {type: hopping, size: 7s, hop: 3s, time: at, grace: 2s}
    aggregate: {max: qty}
    late: true
    max_open: 1000
  lows:
    kind: window
    input: Tick
    window: {type: hopping, size: 1m, hop: 20s}
    aggregate: {min: symbol}
    emit: every
  odd:
    kind: window
    input: Tick
    window: {type: hopping, size: 50s, hop: 20s}
    aggregate: {mean: price}
  firsts:
    kind: window
    input: Tick
    window: {count: 3}
    aggregate: {collect: price}
    emit: every
  avg: {kind: window, input: Tick, window: {type: sliding, size: 5s}, aggregate: last}
  s1: {kind: sink, inputs: {bag: BagWindow, running: RunningWindow, chunks: ChunksWindow}}
  s2: {kind: sink, inputs: {highs: HighsWindow, lows: LowsWindow, odd: OddWindow}}
  s3: {kind: sink, inputs: {firsts: FirstsWindow, avg: AvgWindow}}
  s4: {kind: sink, inputs: {late: Tick, late2: Tick, late3: Tick}}
  s5: {kind: sink, input: ErrorRecord}
connections:
  - api.out -> bag.ticks
  - api.out -> running.in
  - api.out -> chunks.in
  - api.out -> highs.in
  - api.out -> lows.in
  - api.out -> odd.in
  - api.out -> firsts.in
  - api.out -> avg.in
  - bag.out -> s1.bag
  - running.out -> s1.running
  - chunks.out -> s1.chunks
  - highs.out -> s2.highs
  - lows.out -> s2.lows
  - odd.out -> s2.odd
  - firsts.out -> s3.firsts
  - avg.out -> s3.avg
  - chunks.late -> s4.late
  - highs.late -> s4.late2
  - running.late -> s4.late3
  - chunks.errors -> s5.in
"""


def _calls(text: str, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == name
    ]


def test_a_window_of_every_shape_passes_its_gate(tmp_path: Path) -> None:
    project = generate_gated(tmp_path, "shapes.yaml", EVERY_SHAPE)
    emitted = (project / "tests" / "test_windows.py").read_text()
    shapes = [ast.literal_eval(c.args[0]) for c in _calls(emitted, "WindowCase")]
    assert shapes == [
        "bag",
        "running",
        "chunks",
        "highs",
        "lows",
        "odd",
        "firsts",
        "avg",
    ]
    pipeline = ast.parse((project / "tests" / "test_pipeline.py").read_text())
    entries = next(
        node.value
        for node in pipeline.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "ENTRIES"
    )
    assert entries is not None
    ((*_, reaches),) = ast.literal_eval(entries)
    # one item: a window of bag, 3 of lows (1m every 20s), 2 or 3 of odd (50s
    # every 20s on processing time: not fixed), none on the late ports
    assert reaches["s1.bag"] == 1
    assert reaches["s2.lows"] == 3
    assert reaches["s2.odd"] is None
    assert "s4.late" not in reaches


OVER_REDIS = _with(
    {
        21: "  - {from: api.out, to: counts.in, key: sensor, transport: redis}",
        22: "  - {from: counts.out, to: store.in, transport: redis}",
    }
)


@pytest.mark.parametrize(
    "window",
    [
        "{size: 1m, time: at}",
        "{count: 3, time: at}",
        "{type: sliding, size: 1m, time: at}",
    ],
)
def test_a_window_over_redis_passes_its_gate(tmp_path: Path, window: str) -> None:
    # its pipeline test, run over Redis, expects nothing behind the window by the
    # drain: a window fed over Redis keeps its open windows there (run in memory,
    # the drain closes them: one); a count window and a sliding one too (issue #16)
    blueprint = OVER_REDIS.replace("{size: 1m, time: at}", window)
    project = generate_gated(tmp_path, NAME, blueprint)
    module = ast.parse((project / "tests" / "test_pipeline.py").read_text())
    values = {
        node.target.id: ast.literal_eval(node.value)
        for node in module.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.value is not None
        and node.target.id in ("ENTRIES", "REACHES_ON_REDIS")
    }
    assert [entry[5] for entry in values["ENTRIES"]] == [{"store.in": 1}]
    assert values["REACHES_ON_REDIS"] == {"api.out": {}}
