"""Keyed state in a blueprint (``state: true``, issue #16): resolved on a transformer,
filter, router or sink, over memory or a keyed Redis connection; misuse (an unkeyed
input, a Redis input beside others, a batch, a state schema
a new key cannot be made of, settings without ``state: true``) refused at load
with its line; the emitted project types ``self.state``, tests it per key, passes
its gate, and a regenerate keeps the user's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generator.blueprint import StateConf
from generator.loader import load_text
from generator.planner import plan
from generator.render import template_names, templates_root
from tests.cli import generate_gated, run_cli
from tests.refusals import problems_of

NAME = "s.yaml"
PKG = "counts"

BASE_LINES = [
    "portwright: 1",  # 1
    "name: counts",  # 2
    "schemas:",  # 3
    "  Reading:",  # 4
    "    key: device",  # 5
    "    fields: {device: str, value: int}",  # 6
    "  Counted:",  # 7
    "    fields: {device: str, value: int}",  # 8
    "  Tally:",  # 9
    "    fields:",  # 10
    "      count: {type: int, default: 0}",  # 11
    "      total: {type: int, default: 0}",  # 12
    "components:",  # 13
    "  readings: {kind: api_endpoint, route: POST /r, output: Reading}",  # 14
    "  count:",  # 15
    "    kind: transformer",  # 16
    "    input: Reading",  # 17
    "    output: Counted",  # 18
    "    state: true",  # 19
    "    state_schema: Tally",  # 20
    "  seen:",  # 21
    "    kind: sink",  # 22
    "    input: Counted",  # 23
    "    state: true",  # 24
    "    max_keys: 1000",  # 25
    "connections:",  # 26
    "  - readings.out -> count.in",  # 27
    "  - {from: count.out, to: seen.in, key: device}",  # 28
]


def _with(changes: dict[int, str]) -> str:
    lines = list(BASE_LINES)
    for number, text in sorted(changes.items(), reverse=True):
        lines[number - 1 : number] = text.split("\n")
    return "\n".join(lines) + "\n"


def test_the_base_blueprint_loads_with_its_state_resolved() -> None:
    blueprint = load_text(_with({}), NAME)
    assert blueprint.component("count").state == StateConf("Tally", None)
    assert blueprint.component("seen").state == StateConf(None, 1000)
    assert blueprint.component("readings").state is None
    assert not any("Tally" in w for w in blueprint.warnings)  # used, as a state


@pytest.mark.parametrize("kind", ["filter", "router"])
def test_a_filter_and_a_router_keep_state_too(kind: str) -> None:
    text = _with({16: f"    kind: {kind}", 18: "    output: Reading"})
    text = text.replace("input: Counted", "input: Reading")
    assert load_text(text, NAME).component("count").state == StateConf("Tally", None)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {28: "  - count.out -> seen.in"},
            "28: connections[1]: component 'seen' keeps state per key (state: "
            "true); connection count.out -> seen.in has none: add 'key: <field>' "
            "to it, or a 'key' to schema 'Counted'",
        ),
        (
            {
                6: "    extends: Counted",  # so that readings.out may feed seen.in
                28: "  - {from: count.out, to: seen.in, key: device, transport: redis}"
                "\n  - {from: readings.out, to: seen.in, key: device}",
            },
            "28: connections[1].transport: component 'seen' keeps state per key in "
            "Redis, per partition of its input connection: it takes one input "
            "connection over Redis, and has 2",
        ),
        (
            {25: "    batch: {max_items: 10}"},
            "24: components.seen.state: component 'seen': state is kept per item, "
            "and a batch holds items of several keys; drop 'batch' (or 'state')",
        ),
        (
            {11: "      count: int"},
            "20: components.count.state_schema: component 'count': state_schema "
            "'Tally' has fields without a default (count); a new key's state is "
            "made from the defaults: give each one",
        ),
        (
            {20: "    state_schema: Tallies"},
            "20: components.count.state_schema: unknown schema 'Tallies'",
        ),
        (
            {19: "    state: false"},
            "20: components.count.state_schema: component 'count': 'state_schema' "
            "is for keyed state; add 'state: true', or drop it",
        ),
        (
            {24: ""},
            "25: components.seen.max_keys: component 'seen': 'max_keys' is for "
            "keyed state; add 'state: true', or drop it",
        ),
        (
            {25: "    max_keys: 0"},
            "25: components.seen.max_keys:",
        ),
        (
            {
                6: "    extends: Counted",  # so that readings.out may feed seen.in
                25: "    concurrency: 4",
                28: "  - {from: count.out, to: seen.in, key: device}\n"
                "  - {from: readings.out, to: seen.in, key: device}",
            },
            "24: components.seen.state: component 'seen' keeps state per key and has "
            "2 input connections, each read by a loop of its own",
        ),
    ],
    ids=[
        "unkeyed",
        "redis-beside-another",
        "batch",
        "state-schema-required-field",
        "state-schema-unknown",
        "state-schema-without-state",
        "max-keys-without-state",
        "max-keys-zero",
        "two-connections-at-once",
    ],
)
def test_misuse_is_refused_at_its_line(changes: dict[int, str], expected: str) -> None:
    problems = problems_of(_with(changes), NAME)
    assert any(p.startswith(expected) for p in problems), problems


def test_state_is_refused_on_a_kind_that_runs_no_method_of_its_own() -> None:
    text = _with({16: "    kind: merger", 17: "    inputs: {a: Reading}"})
    text = text.replace("readings.out -> count.in", "readings.out -> count.a")
    problems = problems_of(text, NAME)
    assert any("components.count.state" in p for p in problems), problems


def test_only_a_project_with_state_gets_the_state_tests() -> None:
    names = template_names(templates_root())
    planned = {f.path for f in plan(load_text(_with({}), NAME), "", names).files}
    assert "tests/test_state.py" in planned
    without = _with({19: "", 20: "", 24: "", 25: ""})
    assert "tests/test_state.py" not in {
        f.path for f in plan(load_text(without, NAME), "", names).files
    }


def test_the_project_types_self_state_and_passes_its_gate(tmp_path: Path) -> None:
    project = generate_gated(tmp_path, NAME, _with({}))
    bases = (project / PKG / "bases.py").read_text()
    assert "class CountBase(Stateful[Tally], Transformer):" in bases
    assert "    state_type = Tally\n" in bases
    assert "class SeenBase(Stateful[dict[str, Any]], Sink):" in bases
    assert "    max_keys = 1000\n" in bases
    mine = (project / PKG / "components" / "count.py").read_text()
    assert "``self.state`` in the method is the state of the current item's key" in mine
    # the emitted state tests ran in the gate; once more, by name
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "tests/test_state.py"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


USER_COUNT = '''"""Counts each device's readings."""

from ..bases import CountBase
from ..schemas import Counted, Reading, Tally


class Count(CountBase):
    """Numbers each reading of a device: value is its count so far."""

    def transform(self, item: Reading) -> Counted | None:
        """The reading, its value replaced by the device's count so far."""
        # a schema is frozen: the new state is a new Tally
        count, total = self.state.count + 1, self.state.total + item.value
        self.state = Tally(count=count, total=total)
        return Counted(device=item.device, value=count)
'''


def test_user_code_using_the_state_passes_the_gate_and_survives_regenerate(
    tmp_path: Path,
) -> None:
    project = generate_gated(tmp_path, NAME, _with({}))
    user = project / PKG / "components" / "count.py"
    user.write_text(USER_COUNT)
    done = run_cli("gate", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    blueprint = project / ".portwright" / "blueprint.yaml"
    blueprint.write_text(
        blueprint.read_text().replace("    max_keys: 1000", "    max_keys: 50")
    )
    done = run_cli("regenerate", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert user.read_text() == USER_COUNT
    assert "    max_keys = 50\n" in (project / PKG / "bases.py").read_text()


def test_state_over_a_keyed_redis_connection_loads_and_passes_its_gate(
    tmp_path: Path,
) -> None:
    text = _with(
        {28: "  - {from: count.out, to: seen.in, key: device, transport: redis}"}
    )
    blueprint = load_text(text, NAME)
    assert blueprint.component("seen").state == StateConf(None, 1000)
    project = generate_gated(tmp_path, NAME, text)
    assert (
        "class SeenBase(Stateful[dict[str, Any]], Sink):"
        in (project / PKG / "bases.py").read_text()
    )
