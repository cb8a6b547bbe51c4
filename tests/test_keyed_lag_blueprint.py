"""``max_lag`` in a blueprint (issue #15): on a redis connection only, checked at
load time, emitted into the wiring, and held by the emitted service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generator.loader import load_text
from tests.refusals import problems_of

NAME = "lag.yaml"

BASE = """\
portwright: 1
name: lag
transport: redis
schemas:
  Order:
    fields:
      order_id: str
components:
  api:
    kind: api_endpoint
    route: POST /orders
    output: Order
  store:
    kind: sink
    input: Order
connections:
  - from: api.out
    to: store.in
    max_lag: 20
"""


def problems(text: str) -> list[str]:
    return problems_of(text, NAME)


def test_max_lag_resolves_on_a_redis_connection() -> None:
    (connection,) = load_text(BASE, NAME).connections
    assert (connection.transport, connection.max_lag) == ("redis", 20)
    (plain,) = load_text(BASE.replace("    max_lag: 20\n", ""), NAME).connections
    assert plain.max_lag is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    max_lag: 20\n",
            "    max_lag: 20\n    transport: memory\n",
            "19: connections[0].max_lag: max_lag bounds what a Redis consumer group "
            "holds; connection api.out -> store.in is carried in memory, where "
            "buffer_size is the bound: use buffer_size, or 'transport: redis'",
        ),
        (
            "transport: redis\n",
            "",
            "18: connections[0].max_lag: max_lag bounds what a Redis consumer group "
            "holds; connection api.out -> store.in is carried in memory, where "
            "buffer_size is the bound: use buffer_size, or 'transport: redis'",
        ),
        (
            "max_lag: 20",
            "max_lag: 0",
            "19: connections[0].max_lag: must be >= 1, got 0",
        ),
        (
            "max_lag: 20",
            "max_lag: '20'",
            "19: connections[0].max_lag: expected an integer, got '20'",
        ),
    ],
    ids=["memory-connection", "memory-by-default", "zero", "a-string"],
)
def test_a_bad_max_lag_is_refused_at_its_line(
    old: str, new: str, expected: str
) -> None:
    assert old in BASE
    assert problems(BASE.replace(old, new, 1)) == [expected]


def test_the_emitted_service_is_wired_with_its_bound(tmp_path: Path) -> None:
    blueprint = tmp_path / NAME
    blueprint.write_text(BASE)
    dest = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "generator",
            "generate",
            str(blueprint),
            "-o",
            str(dest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate passed:" in done.stdout
    wiring = (dest / "lag/wiring.py").read_text().replace('"', "'")
    assert "('api.out', 'store.in', 1024, 'block', 'redis', None, 20, None)," in wiring
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lag.wiring import build_service\n"
            "service = build_service(defaults=True)\n"
            "print([c.max_lag for c in service.connections])",
        ],
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.stdout == "[20]\n", shown.stderr
