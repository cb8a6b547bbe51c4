"""``concurrency``, ``ordering`` and ``blocking`` in a blueprint: validated, planned,
emitted, and the emitted project's own tests run (issue #14, part A)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from generator.loader import load_text
from generator.model import MAX_CONCURRENCY
from generator.planner import plan
from generator.render import template_names
from tests.cli import generate_gated, run_cli
from tests.refusals import problems_of

ROOT = Path(__file__).parent.parent
RUNTIME = ROOT / "templates/project/package/runtime"
NAME = "work.yaml"
TESTS = "tests/test_work.py"

BASE = """\
portwright: 1
name: work
schemas:
  Order:
    fields:
      order_id: str
      amount: float
components:
  api:
    kind: api_endpoint
    route: POST /orders
    output: Order
  enrich:
    kind: transformer
    input: Order
    output: Order
    concurrency: 8
  picky:
    kind: filter
    input: Order
    output: Order
    concurrency: 3
    ordering: none
  pick:
    kind: router
    input: Order
    outputs: {fast: Order, slow: Order}
    concurrency: 2
  store:
    kind: sink
    inputs: {fast: Order, slow: Order}
    blocking: true
    concurrency: 4
connections:
  - api.out -> enrich.in
  - enrich.out -> picky.in
  - picky.out -> pick.in
  - pick.fast -> store.fast
  - pick.slow -> store.slow
"""


def problems(text: str) -> list[str]:
    return problems_of(text, NAME)


def test_the_keys_resolve_with_their_defaults() -> None:
    blueprint = load_text(BASE, NAME)
    got = {
        c.name: (c.concurrency, c.ordering, c.blocking) for c in blueprint.components
    }
    assert got == {
        "api": (1, "input", False),
        "enrich": (8, "input", False),
        "picky": (3, "none", False),
        "pick": (2, "input", False),
        "store": (4, "input", True),
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    concurrency: 8\n",
            "    concurrency: 0\n",
            "17: components.enrich.concurrency: must be >= 1, got 0",
        ),
        (
            "    concurrency: 8\n",
            f"    concurrency: {MAX_CONCURRENCY + 1}\n",
            "17: components.enrich.concurrency: must be <= 1024, got 1025",
        ),
        (
            "    concurrency: 8\n",
            "    concurrency: '8'\n",
            "17: components.enrich.concurrency: expected an integer, got '8'",
        ),
        (
            "    concurrency: 3\n    ordering: none\n",
            "    ordering: none\n",
            "22: components.picky.ordering: 'ordering' says in which order results "
            "leave when several items are in the user method at once; component "
            "'picky' takes one at a time: set 'concurrency' above 1, or drop "
            "'ordering'",
        ),
        (
            "    ordering: none\n",
            "    ordering: random\n",
            "23: components.picky.ordering: 'random' is not one of: input, none",
        ),
        (
            "    blocking: true\n",
            "    blocking: 'yes'\n",
            "32: components.store.blocking: expected true or false, got 'yes'",
        ),
        (
            "    route: POST /orders\n",
            "    route: POST /orders\n    concurrency: 4\n",
            "12: components.api.concurrency: unknown key 'concurrency' in component "
            "'api'",
        ),
    ],
    ids=[
        "zero",
        "above-the-bound",
        "a-string",
        "ordering-one-at-a-time",
        "ordering-unknown",
        "blocking-not-a-boolean",
        "no-user-method",
    ],
)
def test_a_bad_setting_is_refused_with_its_line(
    old: str, new: str, expected: str
) -> None:
    assert old in BASE
    assert problems(BASE.replace(old, new, 1)) == [expected]


def test_the_bound_is_the_runtimes() -> None:
    text = (RUNTIME / "concurrency.py").read_text()
    assert f"MAX_CONCURRENCY = {MAX_CONCURRENCY}\n" in text


def test_the_work_tests_are_planned_only_where_a_component_uses_them() -> None:
    names = template_names()
    planned = {f.path for f in plan(load_text(BASE, NAME), BASE, names).files}
    assert "tests/test_work.py" in planned
    plain = re.sub(r"    (concurrency|ordering|blocking): .*\n", "", BASE)
    planned = {f.path for f in plan(load_text(plain, NAME), plain, names).files}
    assert "tests/test_work.py" not in planned


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blueprint generated, its gate (emitted tests included) passed."""
    return generate_gated(tmp_path_factory.mktemp("work"), NAME, BASE)


def test_the_emitted_project_runs_its_components_as_written(project: Path) -> None:
    bases = (project / "work/bases.py").read_text()
    assert "concurrency=8,\n" in bases
    assert "concurrency=3,\n            ordering='none'" in bases.replace('"', "'")
    assert "concurrency=4,\n            blocking=True,\n" in bases
    # Threads run a plain def; elsewhere an async one may override the default.
    assert "    def consume(self, item: Order) -> None:\n" in bases
    assert "| Awaitable[Order | None | list[Order] | Iterator[Order]]" in bases
    # The user files start as the settings want them: async where items wait
    # together, a plain def where they run in threads.
    enrich = (project / "work/components/enrich.py").read_text()
    assert "    async def transform(self, item: Order) -> Order | None:" in enrich
    store = (project / "work/components/store.py").read_text()
    assert "    def consume(self, item: Order) -> None:" in store
    tests = (project / "tests/test_work.py").read_text()
    for name in ("enrich", "picky", "pick", "store"):
        assert f'"{name}"' in tests


def test_the_emitted_work_tests_pass_and_cover_each_component(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", TESTS],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for test in (
        "test_component_runs_as_the_blueprint_says[store]",
        "test_items_in_flight_and_the_order_results_leave_in[enrich]",
        "test_items_in_flight_and_the_order_results_leave_in[picky]",
        "test_items_in_flight_and_the_order_results_leave_in[pick]",
        "test_blocking_code_leaves_health_answering[store]",
    ):
        assert f"PASSED {TESTS}::{test}" in done.stdout, done.stdout


def test_the_gate_refuses_an_async_method_where_threads_run_it(
    project: Path, tmp_path: Path
) -> None:
    store = project / "work/components/store.py"
    original = store.read_text()
    store.write_text(
        original.replace("    def consume(", "    async def consume(")
        .replace("-> None:", "-> None:\n        await anyio.sleep(0)", 1)
        .replace("\nfrom ", "\nimport anyio\n\nfrom ", 1)
    )
    try:
        done = run_cli("gate", str(project))
    finally:
        store.write_text(original)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "work/components/store.py" in done.stdout
    assert "consume" in done.stdout
