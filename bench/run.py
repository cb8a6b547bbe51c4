"""Every benchmark of issue #8, in one command, as one table.

    python -m bench [--quick] [--only generation,gate,pipeline,http,redis,keyed,...]
                    [--markdown FILE] [--json FILE]

Prints a table: figure, value, baseline, ratio (value / baseline), goal, met?. Each
baseline is measured in the same run as its figure, interleaved with it (alternate
rounds, the order flipping each round), and the figures are medians: the machines
are small and shared, so only same-minute ratios mean anything.

``--quick`` runs every section small (one round, fewer items, the Python load
generator instead of wrk) in well under a minute: CI runs it to prove the harness
works, and nothing reads its numbers. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import (
    batched_sink,
    blocking,
    enrichment,
    gate,
    generation,
    ingress,
    keyed,
    pipeline,
    redis_transport,
    websocket,
    window_redis,
    windows,
)
from .table import Row, machine, render_markdown, render_text, to_json

Section = Callable[..., list[Row]]
SECTIONS: dict[str, Section] = {
    "generation": generation.run,
    "gate": gate.run,
    "pipeline": pipeline.run,
    "http": ingress.run,
    "redis": redis_transport.run,
    "batched_sink": batched_sink.run,
    "enrichment": enrichment.run,
    "blocking": blocking.run,
    "keyed": keyed.run,
    "websocket": websocket.run,
    "windows": windows.run,
    "window_redis": window_redis.run,
}
ORDER = tuple(SECTIONS)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; print the table; write Markdown/JSON if asked."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small and fast (CI)")
    parser.add_argument(
        "--only",
        default=",".join(ORDER),
        help=f"comma-separated sections, of: {', '.join(ORDER)}",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--json", type=Path, help="also write every row as JSON here")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ORDER))
    if unknown:
        parser.error(
            f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}"
        )

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    info = machine()
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="portwright-bench-") as folder:
        for name in (n for n in ORDER if n in chosen):
            work = Path(folder) / name
            work.mkdir()
            log(f"{name}: start{' (quick)' if args.quick else ''}")
            rows += SECTIONS[name](work, quick=args.quick, log=log)
    info["seconds"] = f"{time.monotonic() - started:.0f}"
    info["mode"] = "quick" if args.quick else "full"
    print(render_text(rows))
    print(
        f"\n{info['date']}; {info['nproc']} cores, {info['cpu']}, {info['memory']}; "
        f"Python {info['python']}; commit {info['commit']} "
        f"(uncommitted: {info['uncommitted']}); {info['mode']} run, {info['seconds']} s"
    )
    if args.markdown:
        args.markdown.write_text(
            "\n".join(f"- {key}: {value}" for key, value in info.items())
            + "\n\n"
            + render_markdown(rows)
            + "\n",
            encoding="utf-8",
        )
    if args.json:
        args.json.write_text(to_json(rows, info) + "\n", encoding="utf-8")
    return 0
