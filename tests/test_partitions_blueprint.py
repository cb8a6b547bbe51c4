"""``partitions`` in a blueprint (issue #15): a keyed Redis connection's count, from
the connection or ``defaults``, checked at load time, emitted into the wiring, and
fixed for the life of its streams (``regenerate`` refuses a change unless told)."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.loader import load_text
from tests.cli import run_cli
from tests.refusals import problems_of

NAME = "parts.yaml"

BASE = """\
portwright: 1
name: parts
transport: redis
schemas:
  Trade:
    key: symbol
    fields:
      symbol: str
      qty: int
  Note:
    fields:
      text: str
components:
  api:
    kind: api_endpoint
    route: POST /trades
    output: Trade
  book:
    kind: transformer
    input: Trade
    output: Trade
  store:
    kind: sink
    input: Trade
  notes:
    kind: api_endpoint
    route: POST /notes
    output: Note
  log:
    kind: sink
    input: Note
connections:
  - from: api.out
    to: book.in
    partitions: 4
  - book.out -> store.in
  - notes.out -> log.in
"""


def problems(text: str) -> list[str]:
    return problems_of(text, NAME)


def test_a_keyed_connection_takes_its_own_count_else_the_defaults() -> None:
    first, second, unkeyed = load_text(BASE, NAME).connections
    assert (first.key, first.partitions) == ("symbol", 4)
    assert (second.key, second.partitions) == ("symbol", 8)
    assert (unkeyed.key, unkeyed.partitions) == (None, None)
    text = BASE.replace("connections:\n", "defaults:\n  partitions: 16\nconnections:\n")
    first, second, unkeyed = load_text(text, NAME).connections
    assert (first.partitions, second.partitions, unkeyed.partitions) == (4, 16, None)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  - notes.out -> log.in\n",
            "  - from: notes.out\n    to: log.in\n    partitions: 2\n",
            "39: connections[2].partitions: partitions split a keyed connection by "
            "its key; connection notes.out -> log.in has none: add 'key: <field>' "
            "(or a key on its schema), or leave partitions out",
        ),
        (
            "    partitions: 4\n",
            "    partitions: 4\n    transport: memory\n",
            "35: connections[0].partitions: partitions split a keyed Redis "
            "connection into streams; connection api.out -> book.in is carried in "
            "memory, where each key keeps its order already: leave partitions out, "
            "or 'transport: redis'",
        ),
        (
            "partitions: 4",
            "partitions: 0",
            "35: connections[0].partitions: must be >= 1, got 0",
        ),
        (
            "partitions: 4",
            "partitions: 2000",
            "35: connections[0].partitions: must be <= 1024, got 2000",
        ),
    ],
)
def test_a_misused_partitions_is_refused_at_its_line(
    old: str, new: str, expected: str
) -> None:
    assert problems(BASE.replace(old, new)) == [expected]


def _generate(tmp_path: Path, text: str) -> Path:
    blueprint = tmp_path / NAME
    blueprint.write_text(text)
    project = tmp_path / "out"
    done = run_cli("generate", str(blueprint), "-o", str(project), "--no-gate")
    assert done.returncode == 0, done.stdout + done.stderr
    return project


def test_the_wiring_says_each_connections_count(tmp_path: Path) -> None:
    wiring = (_generate(tmp_path, BASE) / "parts" / "wiring.py").read_text()
    for edge in (
        '("api.out", "book.in", 1024, "block", "redis", "symbol", None, 4)',
        '("book.out", "store.in", 1024, "block", "redis", "symbol", None, 8)',
        '("notes.out", "log.in", 1024, "block", "redis", None, None, None)',
    ):
        assert edge in wiring


def test_regenerate_refuses_a_changed_count_unless_told_it_was_drained(
    tmp_path: Path,
) -> None:
    project = _generate(tmp_path, BASE)
    changed = tmp_path / "changed.yaml"
    changed.write_text(BASE.replace("partitions: 4", "partitions: 2"))
    refused = run_cli(
        "regenerate", str(project), "--blueprint", str(changed), "--no-gate"
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert (
        f"{changed}:35: connections[0].partitions: connection api.out -> book.in was "
        "split into 4 partitions and would now be 2: a key's new items would go to "
        "another partition than its unread old ones and could be processed before "
        "them, and the partitions past the new count would never be read again. "
        "Drain it first"
    ) in refused.stderr
    assert "then regenerate with --repartition; or keep partitions: 4" in (
        refused.stderr
    )
    wiring = project / "parts" / "wiring.py"
    assert '"symbol", None, 4)' in wiring.read_text()  # nothing written
    done = run_cli(
        "regenerate",
        str(project),
        "--blueprint",
        str(changed),
        "--no-gate",
        "--repartition",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"symbol", None, 2)' in wiring.read_text()


def test_a_default_count_changed_is_refused_at_the_defaults(tmp_path: Path) -> None:
    project = _generate(tmp_path, BASE)
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        BASE.replace("connections:\n", "defaults:\n  partitions: 16\nconnections:\n")
    )
    refused = run_cli(
        "regenerate", str(project), "--blueprint", str(changed), "--no-gate"
    )
    assert refused.returncode == 2
    assert (
        f"{changed}:33: defaults.partitions: connection book.out -> store.in was "
        "split into 8 partitions and would now be 16:"
    ) in refused.stderr
    # growing loses no partition: the message does not say it does
    assert "never be read again" not in refused.stderr


def test_a_connection_that_becomes_keyed_is_not_a_change_of_count(
    tmp_path: Path,
) -> None:
    text = BASE.replace("    key: symbol\n", "")
    project = _generate(tmp_path, text.replace("    partitions: 4\n", ""))
    changed = tmp_path / "changed.yaml"
    changed.write_text(BASE)
    done = run_cli("regenerate", str(project), "--blueprint", str(changed), "--no-gate")
    assert done.returncode == 0, done.stdout + done.stderr
