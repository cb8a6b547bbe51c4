"""A window whose aggregate is user code (``aggregate: {custom: <type>}``): the
blueprint types its value and is refused at its line when misused; the emitted
project gives the user a class of three methods that works as generated (a count),
holds the user's code to the types (a misspelt field fails the gate at its line)
and to the JSON rule, tests it as written, and keeps it through a regenerate."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from generator.blueprint import WindowConf
from generator.loader import load_text
from tests.cli import generate_gated, run_cli
from tests.refusals import problems_of

NAME = "w.yaml"
PKG = "w"

BASE_LINES = [
    "portwright: 1",  # 1
    "name: w",  # 2
    "schemas:",  # 3
    "  Reading:",  # 4
    "    fields:",  # 5
    "      sensor: str",  # 6
    "      value: float",  # 7
    "      at: datetime",  # 8
    "  Spread:",  # 9
    "    fields: {low: float, high: float, readings: int}",  # 10
    "components:",  # 11
    "  api: {kind: api_endpoint, route: POST /r, output: Reading}",  # 12
    "  spans:",  # 13
    "    kind: window",  # 14
    "    input: Reading",  # 15
    "    window: {size: 1m, time: at}",  # 16
    "    aggregate: {custom: Spread}",  # 17
    "  store: {kind: sink, input: SpansWindow}",  # 18
    "connections:",  # 19
    "  - {from: api.out, to: spans.in, key: sensor}",  # 20
    "  - spans.out -> store.in",  # 21
]


def _with(changes: dict[int, str]) -> str:
    lines = list(BASE_LINES)
    for number, text in sorted(changes.items(), reverse=True):
        lines[number - 1 : number] = text.split("\n")
    return "\n".join(lines) + "\n"


def test_a_custom_aggregate_is_resolved_with_its_value_type() -> None:
    blueprint = load_text(_with({}), NAME)
    conf = blueprint.component("spans").window
    assert conf == WindowConf(
        type="tumbling",
        size=60.0,
        hop=None,
        count=None,
        time="at",
        grace=0.0,
        aggregate="custom",
        field=None,
        emit="final",
        key="sensor",
        value="Spread",
    )
    value = next(f for f in blueprint.schema("SpansWindow").fields if f.name == "value")
    assert str(value.type) == "Spread"


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("int", "int"),
        ("list[ float ]", "list[float]"),
        ("Spread | None", "Spread | None"),
        ("list[Spread]", "list[Spread]"),
    ],
)
def test_the_value_is_typed_as_written(written: str, value: str) -> None:
    blueprint = load_text(_with({17: f"    aggregate: {{custom: '{written}'}}"}), NAME)
    field = next(f for f in blueprint.schema("SpansWindow").fields if f.name == "value")
    assert str(field.type) == value
    assert blueprint.component("spans").window.value == value  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {17: "    aggregate: {custom: Spred}"},
            "17: components.spans.aggregate.custom: unknown schema 'Spred' in the "
            "custom aggregate of window 'spans' (did you mean 'Spread'?)",
        ),
        (
            {17: "    aggregate: {custom: 'list[Spred]'}"},
            "17: components.spans.aggregate.custom: unknown schema 'Spred'",
        ),
        (
            {17: "    aggregate: {custom: 'set[int]'}"},
            "17: components.spans.aggregate.custom: custom aggregate of window "
            "'spans': unknown type 'set[int]'",
        ),
        (
            {17: "    aggregate: {custom: Spread, field: value}"},
            "17: components.spans.aggregate: aggregate {'custom': 'Spread', "
            "'field': 'value'}: a custom aggregate is written {custom: <type>} "
            "alone",
        ),
        (
            {17: "    aggregate: {custom: 3}"},
            "17: components.spans.aggregate: aggregate {'custom': 3}: a custom "
            "aggregate is written {custom: <type>} alone",
        ),
        (
            {
                13: "  spread:",
                18: "  store: {kind: sink, input: SpreadWindow}",
                20: "  - {from: api.out, to: spread.in, key: sensor}",
                21: "  - spread.out -> store.in",
            },
            "13: components.spread: component 'spread' makes the class 'Spread', "
            "which schema 'Spread' makes too; rename one of them",
        ),
        (
            {
                12: "  api: {kind: api_endpoint, route: POST /r, output: Reading}\n"
                "  spans_base: {kind: sink, input: Reading}",
                20: "  - {from: api.out, to: spans.in, key: sensor}\n"
                "  - api.out -> spans_base.in",
            },
            "14: components.spans: component 'spans' makes the class 'SpansBase', "
            "which component 'spans_base' makes too; rename one of them",
        ),
    ],
    ids=[
        "unknown schema",
        "unknown item schema",
        "not a type",
        "field",
        "not text",
        "class clash",
        "class of another component",
    ],
)
def test_misuse_is_refused_at_its_line(changes: dict[int, str], expected: str) -> None:
    problems = problems_of(_with(changes), NAME)
    assert any(expected in problem for problem in problems), problems


def test_an_aggregate_of_no_form_names_the_custom_form() -> None:
    (problem,) = problems_of(_with({17: "    aggregate: median"}), NAME)
    assert problem.startswith("17: components.spans.aggregate: aggregate 'median'")
    assert "nor {custom: <type>} (your code)" in problem


# A custom window of each kind of value (a schema, scalars, lists, optional), on
# event and processing time, count windows, emit every: each placeholder as
# generated must pass the gate, and each window's emitted tests run it.
EVERY_VALUE = """\
portwright: 1
name: w
schemas:
  Reading:
    key: sensor
    fields:
      sensor: str
      value: float
      level: int
      at: datetime
  Spread:
    fields: {low: float, high: float, readings: int}
components:
  api: {kind: api_endpoint, route: POST /r, output: Reading}
  spans:
    kind: window
    input: Reading
    window: {size: 1m, time: at}
    aggregate: {custom: Spread}
  counts:
    kind: window
    input: Reading
    window: {type: hopping, size: 1m, hop: 30s}
    aggregate: {custom: int}
  means: {kind: window, input: Reading, window: {count: 3}, aggregate: {custom: float}, emit: every}
  names: {kind: window, input: Reading, window: {type: sliding, size: 5s, time: at}, aggregate: {custom: 'list[str]'}}
  maybe: {kind: window, input: Reading, window: {size: 10s}, aggregate: {custom: 'Spread | None'}}
  seen: {kind: window, input: Reading, window: {size: 10s}, aggregate: {custom: datetime}}
  flags: {kind: window, input: Reading, window: {size: 10s}, aggregate: {custom: bool}}
  ids: {kind: window, input: Reading, window: {size: 10s}, aggregate: {custom: uuid}}
  labels: {kind: window, input: Reading, window: {size: 10s}, aggregate: {custom: str}}
  bags: {kind: window, input: Reading, window: {size: 10s}, aggregate: {custom: dict}}
  days: {kind: window, input: Reading, window: {size: 10s}, aggregate: {custom: date}}
  s1: {kind: sink, inputs: {a: SpansWindow, b: CountsWindow, c: MeansWindow, d: NamesWindow}}
  s2: {kind: sink, inputs: {a: MaybeWindow, b: SeenWindow, c: FlagsWindow, d: IdsWindow}}
  s3: {kind: sink, inputs: {a: LabelsWindow, b: BagsWindow, c: DaysWindow}}
connections:
  - api.out -> spans.in
  - api.out -> counts.in
  - api.out -> means.in
  - api.out -> names.in
  - api.out -> maybe.in
  - api.out -> seen.in
  - api.out -> flags.in
  - api.out -> ids.in
  - api.out -> labels.in
  - api.out -> bags.in
  - api.out -> days.in
  - spans.out -> s1.a
  - counts.out -> s1.b
  - means.out -> s1.c
  - names.out -> s1.d
  - maybe.out -> s2.a
  - seen.out -> s2.b
  - flags.out -> s2.c
  - ids.out -> s2.d
  - labels.out -> s3.a
  - bags.out -> s3.b
  - days.out -> s3.c
"""

# What the user writes: a real aggregate (the lowest, the highest, how many) whose
# accumulator is JSON (a list of numbers)
SPREAD = '''\
"""The spread of a window's readings."""

from ..bases import SpansBase
from ..schemas import Reading, Spread


class Spans(SpansBase):
    """The lowest and highest value, and how many readings."""

    def initial(self) -> list[float]:
        """[low, high, readings]."""
        return [0.0, 0.0, 0.0]

    def add(self, acc: list[float], item: Reading) -> list[float]:
        """One more reading."""
        low, high, count = acc
        value = item.value  # USER: the field read
        if not count:
            low = high = value
        return [min(low, value), max(high, value), count + 1]

    def result(self, acc: list[float]) -> Spread:
        """The spread."""
        low, high, count = acc
        return Spread(low=low, high=high, readings=int(count))
'''


def _user_file(project: Path) -> Path:
    return project / PKG / "components" / "spans.py"


def _gate(project: Path) -> tuple[int, str]:
    done = run_cli("gate", str(project))
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_gated(tmp_path_factory.mktemp("custom"), "w.yaml", EVERY_VALUE)


def test_every_value_type_passes_its_gate_as_generated(project: Path) -> None:
    emitted = (project / "tests" / "test_windows.py").read_text()
    calls = [
        node
        for node in ast.walk(ast.parse(emitted))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "WindowCase"
    ]
    cases = {ast.literal_eval(c.args[0]): ast.literal_eval(c.args[10]) for c in calls}
    assert set(cases.values()) == {"custom"}
    assert len(cases) == 11
    user = _user_file(project).read_text()
    assert "class Spans(SpansBase):" in user
    assert "def add(self, acc: int, item: Reading) -> int:" in user
    assert "def result(self, acc: int) -> Spread:" in user
    assert "JSON" in user
    bases = (project / PKG / "bases.py").read_text()
    assert "class SpansBase(Window, Aggregate):" in bases
    assert "aggregate=self," in bases


def _write_user(project: Path, text: str) -> None:
    _user_file(project).write_text(text)


# A mistake the emitted test must catch: state kept on the component, not in the
# accumulator, so that one window's items leak into the next one's value
LEAKY = '''\
"""Counts kept on the component: wrong."""

from ..bases import SpansBase
from ..schemas import Reading, Spread


class Spans(SpansBase):
    """Every reading ever seen, whatever the window."""

    seen = 0

    def initial(self) -> int:
        """Nothing."""
        return 0

    def add(self, acc: int, item: Reading) -> int:
        """One more, on the component too."""
        self.seen += 1
        return acc + 1

    def result(self, acc: int) -> Spread:
        """How many the component saw."""
        return Spread(low=0.0, high=0.0, readings=self.seen)
'''


def test_the_users_aggregate_passes_and_is_tested_as_written(project: Path) -> None:
    _write_user(project, SPREAD)
    code, out = _gate(project)
    assert code == 0, out
    # each window's value must be result(add(...initial())) of its own items
    _write_user(project, LEAKY)
    code, out = _gate(project)
    assert code == 1, out
    assert "test_fixed_events_give_exactly_the_expected_windows[spans]" in out


def test_a_misspelt_field_in_add_fails_the_gate_at_its_line(project: Path) -> None:
    _write_user(project, SPREAD.replace("item.value  #", "item.valeu  #"))
    code, out = _gate(project)
    assert code == 1, out
    line = SPREAD.splitlines().index(
        "        value = item.value  # USER: the field read"
    )
    assert f"{PKG}/components/spans.py:{line + 1}:" in out
    assert "valeu" in out and "did you mean 'value'?" in out


def test_an_accumulator_that_is_not_json_fails_the_gate(project: Path) -> None:
    # a tuple comes back from JSON as a list: the window's state would change
    tuple_acc = (
        SPREAD.replace("-> list[float]:", "-> tuple[float, ...]:")
        .replace("acc: list[float]", "acc: tuple[float, ...]")
        .replace("return [0.0, 0.0, 0.0]", "return (0.0, 0.0, 0.0)")
        .replace(
            "return [min(low, value), max(high, value), count + 1]",
            "return (min(low, value), max(high, value), count + 1)",
        )
    )
    _write_user(project, tuple_acc)
    code, out = _gate(project)
    assert code == 1, out
    assert "test_each_accumulator_of_your_aggregate_is_json[spans]" in out


def test_regenerate_keeps_the_users_aggregate(project: Path) -> None:
    _write_user(project, SPREAD)
    blueprint = project / ".portwright" / "blueprint.yaml"
    text = blueprint.read_text()
    assert "    window: {size: 1m, time: at}\n    aggregate: {custom: Spread}" in text
    blueprint.write_text(
        text.replace(
            "    window: {size: 1m, time: at}\n    aggregate: {custom: Spread}",
            "    window: {size: 2m, time: at}\n    aggregate: {custom: Spread}\n"
            "    late: true",
        ).replace(
            "  s1: {kind: sink,",
            "  s4: {kind: sink, input: Reading}\n  s1: {kind: sink,",
        )
        + "  - spans.late -> s4.in\n"
    )
    done = run_cli("regenerate", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _user_file(project).read_text() == SPREAD
    assert "late=True" in (project / PKG / "bases.py").read_text()
    assert "size=120.0" in (project / PKG / "bases.py").read_text()


def test_a_renamed_window_keeps_the_users_aggregate(tmp_path: Path) -> None:
    text = _with({})
    project = generate_gated(tmp_path, NAME, text)
    old = project / PKG / "components" / "spans.py"
    skeleton = old.read_text()
    assert "        return acc + 1\n" in skeleton
    old.write_text(skeleton.replace("return acc + 1\n", "return acc + 2  # USER\n"))
    renamed = (
        text.replace("  spans:\n", "  spreads:\n    renamed_from: spans\n")
        .replace("SpansWindow", "SpreadsWindow")
        .replace("spans.", "spreads.")
    )
    (project / ".portwright" / "blueprint.yaml").write_text(renamed)
    done = run_cli("regenerate", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not old.exists()
    new = (project / PKG / "components" / "spreads.py").read_text()
    assert "class Spreads(SpreadsBase):" in new
    assert "        return acc + 2  # USER\n" in new
