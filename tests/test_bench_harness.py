"""The benchmark harness runs and prints its whole table (quick mode).

No timing is asserted: only that every section produced its rows, that every
measured figure is a positive number, and that the printed table has its columns.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synthetic import blueprint_text, make
from bench.table import COLUMNS
from tests.redisenv import in_ci

REPO = Path(__file__).resolve().parents[1]
SECTIONS = (
    "1 generation",
    "2 gate",
    "3 pipeline",
    "4 http ingress",
    "5 redis transport",
    "6 batched sink",
    "7 enrichment",
    "8 blocking code",
    "9 keyed streams and redis cluster",
    "10 websocket",
    "11 windows",
    "16 windows over redis",
)


@pytest.mark.parametrize("components", [1, 2, 7, 8, 9, 10, 50, 200])
def test_synthetic_blueprints_are_valid_and_have_n_components(
    tmp_path: Path, components: int
) -> None:
    path, blueprint = make(components, tmp_path)
    assert len(blueprint.components) == components
    assert path.read_text(encoding="utf-8") == blueprint_text(components)


@pytest.mark.skipif(
    importlib.util.find_spec("copier") is None and not os.environ.get("CI"),
    reason="the bench extra is not installed: pip install -e '.[bench]'",
)
def test_quick_run_prints_every_section_with_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    header = next(
        line for line in done.stdout.splitlines() if line.startswith("figure")
    )
    assert header.split() == ["figure", "value", "baseline", "ratio", "goal", "met?"]

    report = json.loads(out.read_text(encoding="utf-8"))
    assert tuple(report["columns"]) == COLUMNS
    assert {"date", "nproc", "cpu", "memory", "python"} <= set(report["machine"])
    rows = report["rows"]
    assert {row["section"] for row in rows} == set(SECTIONS)
    for row in rows:
        assert row["figure"], row
        if row["value"] is None:
            # only the Redis section may lack what it needs, and only outside CI
            assert row["section"] in (
                "5 redis transport",
                "7 enrichment",
                "9 keyed streams and redis cluster",
                "16 windows over redis",
            ), row
            assert not redis_measurable(), row
            assert row["note"].startswith("not measured: "), row
            continue
        assert isinstance(row["value"], float | int) and row["value"] > 0, row
        if row["baseline"] is not None:
            assert row["baseline"] > 0, row
            assert row["ratio"] > 0, row
        if row["goal"] is not None:
            assert row["met"] in (True, False), row
    figures = {row["figure"] for row in rows}
    expected_figures = [
        "N=10: time per file",
        "N=200: wall time",
        "order_pipeline: whole gate",
        "order_pipeline: lint + guard",
        "runtime, every metric on, vs the limit",
        "runtime overhead per hop",
        "RSS after",
        "emitted api_endpoint: requests/s vs bare Starlette",
        "emitted api_endpoint: p99 latency vs idiomatic FastAPI",
        "/health p99, blocking sink busy vs idle",
        "/health p99, the same sink on the loop vs idle",
        "SQLite (default journal), batch max_items 500",
        "SQLite (WAL, synchronous=NORMAL), batch max_items 500",
        "websocket_out fan-out to",
        "websocket_in fan-in over",
        "p99 delivery to",
        "tumbling count per key: items/s vs the dict loop",
        "tumbling count per key: items/s vs Bytewax",
    ]
    if redis_measurable():
        expected_figures += REDIS_FIGURES
    for expected in expected_figures:
        assert any(f.startswith(expected) for f in figures), expected


REDIS_FIGURES = (
    "two hops with ack: items/s vs FastStream",
    "two hops with ack: items/s vs FastStream batched",
    "two hops with ack: CPU per item vs FastStream",
    "two hops with ack vs the XADD ceiling",
    "enrich, concurrency 64: items/s vs the limit",
    "enrich, concurrency 64: items/s vs FastStream",
    "two hops with ack on a 3-master cluster: items/s vs one Redis",
    "tumbling count per key over redis (",
    "tumbling count per key over a 3-master cluster (",
)


def redis_measurable() -> bool:
    """Whether the harness can measure the Redis section here: a Redis (the shared
    one, or a redis-server to start) and FastStream, its baseline. In CI: always."""
    has_redis = bool(os.environ.get("PORTWRIGHT_REDIS_URL")) or bool(
        shutil.which("redis-server")
    )
    has_faststream = importlib.util.find_spec("faststream") is not None
    return in_ci() or (has_redis and has_faststream)
