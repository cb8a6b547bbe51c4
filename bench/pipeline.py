"""Pipeline throughput of the runtime, in-process, with ``bench/pipeline_throughput.py``.

That module (kept by its own author; called here, never edited) wires source ->
transformer -> router (even/odd) -> sink with the runtime every emitted project
carries (``templates/project/package/runtime``, copied verbatim into each project),
every metric on, and the two baselines of the same shape on anyio memory streams:

- the limit (``nowait``): ``send_nowait``/``receive_nowait``, awaiting only on a full
  or empty stream, no metrics, no envelopes;
- the naive pattern (``naive``): ``await send()`` / ``async for``, a prometheus_client
  histogram observation per message per hop.

Rates are items per second of CPU time (its ``measure``), medians of interleaved
rounds. The per-hop overhead is the runtime's extra CPU time per item over the
limit's, divided by the three hops an item makes (source -> transformer ->
router -> sink).

Memory: a child process pushes 1,000,000 items through one running service and
reads its RSS after the warm-up (the first 100,000) and at the end: flat means no
leak.
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .table import REPO, Goal, Row, median

SECTION = "3 pipeline"
HOPS = 3
Log = Callable[[str], None]


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """The throughput, per-hop and memory rows."""
    from . import pipeline_throughput as pt

    items = 20_000 if quick else 200_000
    rounds = 1 if quick else 7
    pipelines = {
        "runtime": (pt.runtime, items),
        "nowait": (pt.nowait, items),
        # the naive pattern is ~40x slower: fewer items keep a round short
        "naive": (pt.naive, max(items // 10, 1)),
    }
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for pipeline, count in pipelines.values():  # warm-up, not counted
        pt.measure(pipeline, max(count // 10, 1))
    for r in range(rounds):
        order = list(pipelines.items())
        if r % 2:
            order.reverse()
        for name, (pipeline, count) in order:
            rates[name].append(pt.measure(pipeline, count))
        log(f"pipeline: round {r + 1}/{rounds} done")
    rate = {name: median(values) for name, values in rates.items()}
    total = 100_000 if quick else 1_000_000
    memory = _memory(total, warm=total // 10)
    return _rows(rate, memory, total)


def _rows(rate: dict[str, float], memory: dict[str, float], total: int) -> list[Row]:
    per_hop = (1 / rate["runtime"] - 1 / rate["nowait"]) / HOPS * 1e6
    limit_hop = 1 / rate["nowait"] / HOPS * 1e6
    return [
        Row(
            SECTION,
            "runtime, every metric on, vs the limit",
            rate["runtime"],
            "items/s",
            rate["nowait"],
            "nowait streams, no metrics",
            Goal(">=", 0.5, text="ratio >= 0.5"),
        ),
        Row(
            SECTION,
            "runtime, every metric on, vs the naive pattern",
            rate["runtime"],
            "items/s",
            rate["naive"],
            "await send + prometheus observe",
            Goal(">=", 20, text="ratio >= 20"),
        ),
        Row(
            SECTION,
            "runtime overhead per hop (over the limit)",
            per_hop,
            "us",
            limit_hop,
            "the limit's own cost per hop",
            # overhead <= the limit's own cost per hop <=> at least 0.5 of the limit
            Goal("<=", 1.0, text="ratio <= 1 (= 0.5 of the limit)"),
        ),
        Row(
            SECTION,
            f"RSS after {total:,} items",
            memory["end"],
            "MiB",
            memory["warm"],
            f"after the first {memory['warm_items']:,.0f} (warm-up)",
            Goal("<=", 1.05, text="ratio <= 1.05 (flat)"),
        ),
    ]


def _memory(total: int, warm: int) -> dict[str, float]:
    """RSS of a child process that runs ``total`` items through one service."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", str(total), str(warm)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _rss_child(total: int, warm: int) -> dict[str, float]:
    """Run ``total`` items through one service; RSS after ``warm`` and at the end."""
    import anyio

    from . import pipeline_throughput as pt

    samples: dict[int, float] = {}

    class Sampling(pt.Count):
        """Counts what arrives, and reads RSS at the warm-up mark and at the end."""

        def consume(self, item: int) -> None:
            self.received += 1
            if self.received == warm or self.received == total:
                gc.collect()
                samples[self.received] = _rss_mib()

    async def main() -> int:
        rt = pt.rt
        service = rt.Service("rss")
        service.add(pt.Numbers("numbers", total))
        service.add(pt.AddOne("add_one", inputs={"in": int}, outputs={"out": int}))
        service.add(
            pt.EvenOdd(
                "even_odd", inputs={"in": int}, outputs={"even": int, "odd": int}
            )
        )
        sink = service.add(Sampling("count", inputs={"even": int, "odd": int}))
        for source, target in [
            ("numbers.out", "add_one.in"),
            ("add_one.out", "even_odd.in"),
            ("even_odd.even", "count.even"),
            ("even_odd.odd", "count.odd"),
        ]:
            service.connect(source, target, buffer_size=pt.BUFFER)
        await service.run()
        return sink.received

    received = anyio.run(main)
    if received != total:
        raise SystemExit(f"{received} of {total} items arrived")
    return {"warm": samples[warm], "end": samples[total], "warm_items": warm}


if __name__ == "__main__":
    print(json.dumps(_rss_child(int(sys.argv[1]), int(sys.argv[2]))))
