"""Before/after for the hot-path fixes the benchmark points at, as prototypes.

The fixes belong in files this harness does not own (``generator/``, the
runtime), so this script applies each one only inside its own process or to a
temporary generated project, and measures before and after in the same run,
interleaved (medians). Nothing in the repository changes.

    python -m bench.prototypes [--only generation,gate,http] [--markdown FILE]

- generation: run ruff's binary (``ruff.find_ruff_bin()``) instead of
  ``python -m ruff``, which starts a Python interpreter only to exec that binary
  (``generator/formatting.py``, ``ruff_command``); and a Jinja bytecode cache, so a
  new process does not compile the templates again (``generator/render.py``).
- gate: the same ruff change, and pytest without third-party plugin autoload
  (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, then ``-p anyio.pytest_plugin``, the
  only plugin the emitted tests use): portwright's own environment brings
  hypothesis, pytest-benchmark and others, whose import every gate run pays for
  (``generator/gate.py``).
- http: requests to an ingest route dispatched before FastAPI's middleware stack
  (``runtime/app.py``): the emitted app already serves them with a plain
  Starlette route, but every request still crosses FastAPI's telemetry, body
  limit and exception middlewares and the route scan.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jinja2
from starlette.routing import request_response

import generator.formatting as formatting
import generator.render as render
from generator.gate import run_gate
from generator.generation import generate

from . import generation, ingress
from .table import REPO, Goal, Row, machine, median, render_markdown, render_text

Log = Callable[[str], None]


@contextmanager
def ruff_binary() -> Iterator[None]:
    """``ruff_command`` runs the binary directly."""
    from ruff import find_ruff_bin

    binary = find_ruff_bin()
    original = formatting.ruff_command
    formatting.ruff_command = lambda *args: [binary, *args]
    import generator.gate as gate_module

    gate_module.ruff_command = formatting.ruff_command
    try:
        yield
    finally:
        formatting.ruff_command = original
        gate_module.ruff_command = original


@contextmanager
def template_cache(folder: Path) -> Iterator[None]:
    """``environment()`` gets a Jinja bytecode cache in ``folder``."""
    original = render.environment
    uncached = original.__wrapped__
    folder.mkdir(parents=True, exist_ok=True)

    def cached(root: Path) -> jinja2.Environment:
        env = uncached(root)
        env.bytecode_cache = jinja2.FileSystemBytecodeCache(str(folder))
        return env

    cached.cache_clear = lambda: None  # type: ignore[attr-defined]
    render.environment = cached  # type: ignore[assignment]
    try:
        yield
    finally:
        render.environment = original


@contextmanager
def lean_pytest() -> Iterator[None]:
    """The gate's pytest loads no plugin but anyio's."""
    saved = {
        k: os.environ.get(k)
        for k in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS")
    }
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    os.environ["PYTEST_ADDOPTS"] = "-p anyio.pytest_plugin"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def generation_rows(work: Path, log: Log) -> list[Row]:
    """Generation at N=10 and N=200: now, with each fix, and copier."""
    section = "prototype: generation"
    rows: list[Row] = []
    for n in (10, 200):
        case = generation._Case.prepare(n, work / f"n{n}")
        variants: dict[str, Callable[[], Any]] = {
            "now": case.run_portwright,
            "ruff binary": lambda c=case: _with(ruff_binary(), c.run_portwright),
            "ruff binary + template cache": lambda c=case, n=n: _with(
                ruff_binary(),
                lambda: _with(template_cache(work / f"jinja-{n}"), c.run_portwright),
            ),
            "copier": case.run_copier,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(7):
            names = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in names:
                started = time.perf_counter()
                variants[name]()
                times[name].append(time.perf_counter() - started)
        log(f"prototype generation N={n} done")
        m = {name: median(values) for name, values in times.items()}
        for name in ("ruff binary", "ruff binary + template cache"):
            rows.append(
                Row(
                    section,
                    f"N={n}: wall time, {name}",
                    m[name],
                    "s",
                    m["now"],
                    "portwright now",
                )
            )
            rows.append(
                Row(
                    section,
                    f"N={n}: time per file, {name}",
                    m[name] / case.files * 1000,
                    "ms",
                    m["copier"] / case.files * 1000,
                    "copier",
                    Goal("<=", 0.2, text="ratio <= 0.2 (5x faster)"),
                )
            )
    return rows


def gate_rows(work: Path, log: Log) -> list[Row]:
    """The order_pipeline gate: now, and with the ruff and pytest changes."""
    section = "prototype: gate"
    blueprint = REPO / "blueprints" / "order_pipeline.yaml"
    totals: dict[str, list[float]] = {"now": [], "after": []}
    pytest_step: dict[str, list[float]] = {"now": [], "after": []}
    count = 0
    for r in range(5):
        for variant in ("now", "after") if r % 2 == 0 else ("after", "now"):
            count += 1
            project = work / f"gate-{count}"
            generate(blueprint, project, gate=False)
            os.environ["BLACK_CACHE_DIR"] = str(work / f"black-{count}")
            try:
                if variant == "now":
                    result = run_gate(project)
                else:
                    with ruff_binary(), lean_pytest():
                        result = run_gate(project)
            finally:
                del os.environ["BLACK_CACHE_DIR"]
            if not result.ok:
                raise RuntimeError(f"gate failed ({variant}): {result.steps}")
            totals[variant].append(result.seconds)
            pytest_step[variant].append(
                next(s.seconds for s in result.steps if s.name == "pytest")
            )
            shutil.rmtree(project)
        log(f"prototype gate: round {r + 1}/5 done")
    return [
        Row(
            section,
            "order_pipeline: whole gate, ruff binary + lean pytest",
            median(totals["after"]),
            "s",
            median(totals["now"]),
            "the gate now",
            Goal("<", 5.0, on="value", text="< 5 s"),
        ),
        Row(
            section,
            "order_pipeline: pytest step, lean pytest",
            median(pytest_step["after"]),
            "s",
            median(pytest_step["now"]),
            "the pytest step now",
        ),
    ]


def http_rows(work: Path, log: Log) -> list[Row]:
    """The emitted endpoint now and with the dispatch fast path, against both baselines."""
    section = "prototype: http"
    project = ingress.prepare(work)
    commands = {
        "emitted": ingress.server_command("emitted", project),
        "fast path": (
            [sys.executable, "-m", "bench.prototypes", "serve-fast-path", str(project)],
            REPO,
        ),
        "fastapi": ingress.server_command("fastapi", project),
        "starlette": ingress.server_command("starlette", project),
    }
    wrk = shutil.which("wrk")
    results = ingress.measure(commands, work, wrk, 5, 5.0, log)
    m = {
        name: {k: median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
        for name, runs in results.items()
    }
    tool = ("wrk -t1 -c50" if wrk else "bench/load.py -c50") + (
        f"; uvicorn {ingress.uvicorn_stack()}"
    )
    fast = m["fast path"]
    return [
        Row(
            section,
            "fast path: requests/s vs the emitted endpoint now",
            fast["rps"],
            "req/s",
            m["emitted"]["rps"],
            "emitted now",
            note=tool,
        ),
        Row(
            section,
            "fast path: requests/s vs bare Starlette",
            fast["rps"],
            "req/s",
            m["starlette"]["rps"],
            "Starlette",
            Goal(">=", 0.7, text="ratio >= 0.7"),
            tool,
        ),
        Row(
            section,
            "fast path: requests/s vs idiomatic FastAPI",
            fast["rps"],
            "req/s",
            m["fastapi"]["rps"],
            "FastAPI",
            Goal(">=", 2.0, text="ratio >= 2"),
            tool,
        ),
        Row(
            section,
            "fast path: p99 latency vs idiomatic FastAPI",
            fast["p99_ms"],
            "ms",
            m["fastapi"]["p99_ms"],
            "FastAPI",
            Goal("<=", 1.0, text="ratio <= 1"),
            tool,
        ),
    ]


def serve_fast_path(project: Path, argv: list[str]) -> None:
    """Serve the emitted service through its own ``__main__``, ingest dispatched first."""
    import importlib

    import uvicorn

    sys.path.insert(0, str(project))
    original = uvicorn.Config.__init__

    def config(self: uvicorn.Config, app: Any, *args: Any, **kwargs: Any) -> None:
        original(self, _FastPath(app), *args, **kwargs)

    uvicorn.Config.__init__ = config  # type: ignore[method-assign]
    main = importlib.import_module(f"{ingress.PACKAGE}.__main__").main
    sys.exit(main(["--host", "127.0.0.1", *argv]))


class _FastPath:
    """Ingest routes first (exact method and path), everything else to FastAPI."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.routes = {
            (e.method, e.route): request_response(e.handle)
            for e in app.state.service.endpoints
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
            if route is not None:
                scope["app"] = self.app
                await route(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _with(context: Any, run: Callable[[], Any]) -> Any:
    with context:
        return run()


async def _drain_local_sums(self: Any, port: Any, connection: Any) -> None:
    """``Component._drain`` with the histogram sums kept in locals.

    They are written back to the histograms before every ``await`` and at the
    end, so anything that reads them on the event loop (a scrape, a snapshot)
    sees the same numbers as with the original loop. The age histogram also
    skips its bucket search under the first bound, as latency already does.
    """
    from bisect import bisect_left
    from time import monotonic

    from anyio import EndOfStream, WouldBlock
    from anyio.lowlevel import checkpoint

    receiver = connection.receiver
    receive_nowait = receiver.receive_nowait
    call, call_is_async, deliver = self._call, self._call_is_async, self._deliver
    age, latency = port.age, port.latency
    age_bounds, age_counts = age.bounds, age.counts
    latency_bounds, latency_counts = latency.bounds, latency.counts
    fastest, youngest = latency_bounds[0], age_bounds[0]
    burst_limit = self.burst_limit
    clock, bucket = monotonic, bisect_left
    handled = 0
    age_sum = latency_sum = 0.0
    with receiver:
        now = clock()
        try:
            while True:
                try:
                    enqueued, envelope = receive_nowait()
                except WouldBlock:
                    age.sum += age_sum
                    latency.sum += latency_sum
                    age_sum = latency_sum = 0.0
                    try:
                        enqueued, envelope = await receiver.receive()
                    except EndOfStream:
                        return
                    now = clock()
                    handled = 0
                except EndOfStream:
                    return
                waited = now - enqueued
                if waited <= youngest:
                    age_counts[0] += 1
                else:
                    age_counts[bucket(age_bounds, waited)] += 1
                age_sum += waited
                try:
                    if call is None:
                        result = envelope.item
                    elif call_is_async:
                        age.sum += age_sum
                        latency.sum += latency_sum
                        age_sum = latency_sum = 0.0
                        result = await call(envelope.item)
                    else:
                        result = call(envelope.item)
                except Exception as exc:
                    age.sum += age_sum
                    latency.sum += latency_sum
                    age_sum = latency_sum = 0.0
                    await self.fail(port, envelope, exc)
                    now = clock()
                    continue
                done = clock()
                took = done - now
                if took <= fastest:
                    latency_counts[0] += 1
                else:
                    latency_counts[bucket(latency_bounds, took)] += 1
                latency_sum += took
                if (
                    deliver is None
                    or (pending := deliver(port, envelope, result, done)) is None
                ):
                    now = done
                else:
                    age.sum += age_sum
                    latency.sum += latency_sum
                    age_sum = latency_sum = 0.0
                    await pending
                    now = clock()
                handled += 1
                if handled >= burst_limit:
                    handled = 0
                    age.sum += age_sum
                    latency.sum += latency_sum
                    age_sum = latency_sum = 0.0
                    await checkpoint()
                    now = clock()
        finally:
            age.sum += age_sum
            latency.sum += latency_sum


def pipeline_rows(work: Path, log: Log) -> list[Row]:
    """The runtime's loop now and with local histogram sums, against the limit."""
    from . import pipeline_throughput as pt

    section = "prototype: pipeline"
    original = pt.rt.Component._drain
    items = 200_000

    def patched(count: int) -> Any:
        pt.rt.Component._drain = _drain_local_sums
        try:
            return pt.runtime(count)
        finally:
            pt.rt.Component._drain = original

    patched.__name__ = "runtime"
    variants: dict[str, Callable[[int], Any]] = {
        "now": pt.runtime,
        "local sums": patched,
        "limit": pt.nowait,
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(7):
        for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
            rates[name].append(pt.measure(variants[name], items))
    log("prototype pipeline done")
    m = {name: median(values) for name, values in rates.items()}
    return [
        Row(
            section,
            "runtime with local histogram sums vs the runtime now",
            m["local sums"],
            "items/s",
            m["now"],
            "runtime now",
        ),
        Row(
            section,
            "runtime with local histogram sums vs the limit",
            m["local sums"],
            "items/s",
            m["limit"],
            "nowait streams, no metrics",
            Goal(">=", 0.5, text="ratio >= 0.5"),
        ),
    ]


SECTIONS = {
    "generation": generation_rows,
    "gate": gate_rows,
    "pipeline": pipeline_rows,
    "http": http_rows,
}


def main(argv: list[str] | None = None) -> int:
    """Measure the prototypes; print (and optionally write) their table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-fast-path"]:
        serve_fast_path(Path(argv[1]), argv[2:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.prototypes")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="portwright-prototypes-") as folder:
        for name in args.only.split(","):
            work = Path(folder) / name
            work.mkdir()
            rows += SECTIONS[name](work, log)
    print(render_text(rows))
    if args.markdown:
        info = machine()
        args.markdown.write_text(
            "\n".join(f"- {k}: {v}" for k, v in info.items())
            + "\n\n"
            + render_markdown(rows)
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
