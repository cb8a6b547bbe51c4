"""``batch``, one-to-many transformers and timers (``every``, ``schedule``) in a
blueprint: validated, planned, emitted, and the emitted project's own tests run
(issue #14, part B). Also the duration scalar (``500ms``, ``30s``, ``5m``, ``1h``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from generator.durations import DurationError, parse_duration
from generator.loader import load_text
from generator.planner import plan
from generator.render import template_names
from tests.cli import generate_gated, run_cli
from tests.refusals import problems_of

NAME = "metering.yaml"

BASE = """\
portwright: 1
name: metering
schemas:
  Reading:
    fields:
      meter: str
      value: float
  Row:
    fields:
      meter: str
      value: float
components:
  poll:
    kind: source
    every: 500ms
    output: Reading
  nightly:
    kind: source
    schedule: "30 3 * * 1-5"
    output: Reading
  split:
    kind: transformer
    input: Reading
    output: Row
  pack:
    kind: transformer
    input: Row
    output: Row
    batch: {max_items: 10, max_wait_ms: 200}
  store:
    kind: sink
    inputs: {rows: Row}
    batch: {max_items: 50}
connections:
  - poll.out -> split.in
  - nightly.out -> split.in
  - split.out -> pack.in
  - pack.out -> store.rows
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("168h", 604800.0)],
)
def test_a_duration_is_a_whole_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text).seconds == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "one unit of ms, s, m, h"),
        ("1.5s", "one unit of ms, s, m, h"),
        ("5 min", "one unit of ms, s, m, h"),
        ("-5s", "one unit of ms, s, m, h"),
        ("0s", "must be more than zero"),
        ("169h", "longer than a week"),
        (5, "is not a duration"),
    ],
)
def test_anything_else_is_not_a_duration(text: object, message: str) -> None:
    with pytest.raises(DurationError, match=message):
        parse_duration(text)


def problems(text: str) -> list[str]:
    return problems_of(text, NAME)


def test_the_keys_resolve() -> None:
    blueprint = load_text(BASE, NAME)
    got = {
        c.name: (c.every_ms, c.schedule, c.batch_max_items, c.batch_max_wait_ms)
        for c in blueprint.components
    }
    assert got == {
        "poll": (500, None, None, 0),
        "nightly": (None, "30 3 * * 1-5", None, 0),
        "split": (None, None, None, 0),
        "pack": (None, None, 10, 200),
        "store": (None, None, 50, 0),
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "every: 500ms",
            "every: 5 seconds",
            "15: components.poll.every: '5 seconds' is not a duration: write a whole "
            "number and one unit of ms, s, m, h (e.g. '500ms', '30s', '5m', '1h')",
        ),
        (
            'schedule: "30 3 * * 1-5"',
            'schedule: "30 3 * *"',
            "19: components.nightly.schedule: schedule '30 3 * *' has 4 fields, not 5 "
            "(minute hour day-of-month month day-of-week)",
        ),
        (
            'schedule: "30 3 * * 1-5"',
            'schedule: "0 0 30 2 *"',
            "19: components.nightly.schedule: schedule '0 0 30 2 *' never matches a "
            "date",
        ),
        (
            "every: 500ms",
            'every: 500ms\n    schedule: "* * * * *"',
            "16: components.poll.schedule: source 'poll' has both 'every' and "
            "'schedule'; a timer ticks on one of them: keep 'every' (a period) or "
            "'schedule' (cron fields)",
        ),
        (
            "batch: {max_items: 50}",
            "batch: {max_items: 50}\n    concurrency: 4",
            "33: components.store.batch: component 'store' has both 'batch' and "
            "'concurrency': a batch is one call of the user method; drop "
            "'concurrency' (or 'batch')",
        ),
        (
            "batch: {max_items: 50}",
            "batch: {max_items: 0}",
            "33: components.store.batch.max_items: must be >= 1, got 0",
        ),
        (
            "batch: {max_items: 50}",
            "batch: {max_items: 5, wait: 3}",
            "33: components.store.batch.wait: unknown key 'wait' in component 'store'",
        ),
    ],
)
def test_a_bad_setting_is_refused_with_its_line(
    old: str, new: str, expected: str
) -> None:
    assert old in BASE
    found = problems(BASE.replace(old, new, 1))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_batch_and_timer_keys_belong_to_their_kinds() -> None:
    text = BASE.replace(
        "    input: Row\n    output: Row\n    batch:",
        "    input: Row\n    output: Row\n    every: 5s\n    batch:",
    )
    assert any("unknown key 'every'" in p for p in problems(text))


def test_their_tests_are_planned_only_where_a_component_uses_them() -> None:
    names = template_names()
    planned = {f.path for f in plan(load_text(BASE, NAME), BASE, names).files}
    assert {"tests/test_batches.py", "tests/test_timers.py"} <= planned
    plain = re.sub(r"    (batch|every|schedule): .*\n", "", BASE)
    planned = {f.path for f in plan(load_text(plain, NAME), plain, names).files}
    assert not {"tests/test_batches.py", "tests/test_timers.py"} & planned


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blueprint generated, its gate (emitted tests included) passed."""
    return generate_gated(tmp_path_factory.mktemp("metering"), NAME, BASE)


def test_the_emitted_code_takes_lists_and_ticks(project: Path) -> None:
    bases = (project / "metering/bases.py").read_text()
    assert "class PollBase(Timer):" in bases
    assert "every=0.5,\n" in bases
    assert "schedule='30 3 * * 1-5'" in bases.replace('"', "'")
    assert "batch=Batch(10, 0.2),\n" in bases
    assert "batch=Batch(50, 0.0),\n" in bases
    # a plain transformer may return a list or yield; its user file starts narrow
    assert "| list[Row]\n        | Iterator[Row]" in bases
    split = (project / "metering/components/split.py").read_text()
    assert "def transform(self, item: Reading) -> Row | None:" in split
    pack = (project / "metering/components/pack.py").read_text()
    assert "def transform(self, items: list[Row]) -> list[Row]:" in pack
    store = (project / "metering/components/store.py").read_text()
    assert "def consume(self, items: list[Row]) -> None:" in store
    poll = (project / "metering/components/poll.py").read_text()
    assert "def tick(self) -> Reading | list[Reading] | None:" in poll


def test_the_emitted_batch_and_timer_tests_pass(project: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-rA",
            "-p",
            "no:cacheprovider",
            "tests/test_batches.py",
            "tests/test_timers.py",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for test in (
        "test_batches.py::test_a_full_batch_is_handed_over_without_waiting[pack]",
        "test_batches.py::test_a_full_batch_is_handed_over_without_waiting[store]",
        "test_batches.py::test_a_partial_batch_is_handed_over_max_wait_after_its_"
        "first_item[pack]",
        "test_timers.py::test_a_periodic_timer_ticks_at_start_then_once_a_period[poll]",
        "test_timers.py::test_ticks_a_long_tick_ran_past_are_skipped_and_counted[poll]",
        "test_timers.py::test_a_scheduled_timer_ticks_at_its_next_matching_minute"
        "[nightly]",
    ):
        assert f"PASSED tests/{test}" in done.stdout, done.stdout


def test_a_user_transformer_that_yields_passes_the_gate(
    project: Path,
) -> None:
    split = project / "metering/components/split.py"
    original = split.read_text()
    split.write_text(
        original.replace("-> Row | None:", "-> Iterator[Row]:")
        .replace(
            "        return self.carry_over(item)",
            "        yield self.carry_over(item)\n        yield self.carry_over(item)",
        )
        .replace("\nfrom ", "\nfrom collections.abc import Iterator\n\nfrom ", 1)
    )
    try:
        done = run_cli("gate", str(project))
    finally:
        split.write_text(original)
    assert done.returncode == 0, done.stdout + done.stderr
