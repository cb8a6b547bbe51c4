"""The gate on each example blueprint: before and after the type check, cold and warm.

Each round generates the example afresh (``gate=False``) into a new folder and runs
``generator.gate.run_gate`` on it, as ``portwright generate`` does on its staging
folder: a new path and an empty black cache (``BLACK_CACHE_DIR``), so black checks
every file as on a first generation (cold; pyrefly keeps no cache between runs, so
every check of it is cold). Then the gate runs again on the same folder (warm: black's
cache filled, the files in the OS cache). "before" is the gate without the type check
(``types=False``), "after" with it; each has a folder of its own. The baseline, in the
same rounds, is ``python -m pytest`` on a folder holding one trivial test: what any
pytest run costs before the first emitted test.

The type check runs first, alone; then ruff, black and pytest side by side (and the
import guard meanwhile), so "whole gate" is its wall time, start to end, less than the
sum of the steps; each step's own time is measured as it runs in ``generate``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from generator.gate import GateResult, pytest_command, run_gate, step_env
from generator.generation import generate

from .table import REPO, Goal, Row, median

SECTION = "2 gate"
STEPS = ("ruff", "black", "import guard", "types", "pytest")
#: (label, with the type check, warm)
RUNS = (
    ("before, cold", False, False),
    ("before, warm", False, True),
    ("after, cold", True, False),
    ("after, warm", True, True),
)
Log = Callable[[str], None]


def examples(*, quick: bool = False) -> list[Path]:
    """Every example blueprint (``blueprints/*.yaml``); quick: order_pipeline only."""
    found = sorted((REPO / "blueprints").glob("*.yaml"))
    return [b for b in found if b.stem == "order_pipeline"] if quick else found


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """The gate rows of every example."""
    rounds = 1 if quick else 5
    bare = _bare_pytest_project(work / "bare")
    chosen = examples(quick=quick)
    times: dict[str, dict[str, list[float]]] = {
        b.stem: {name: [] for name in (*STEPS, *(r[0] for r in RUNS))} for b in chosen
    }
    tests: dict[str, int] = {}
    startup: list[float] = []
    count = 0
    for r in range(rounds):
        startup.append(_pytest_startup(bare))
        for blueprint in chosen:
            for label, types, warm in RUNS:
                if not warm:
                    count += 1
                    project = work / f"{blueprint.stem}-{count}"
                    cache = work / f"black-cache-{count}"
                    generate(blueprint, project, gate=False)
                result = _gate(project, cache, types=types)
                if not result.ok:
                    failed = [s.name for s in result.steps if not s.ok]
                    raise RuntimeError(f"{blueprint.stem}: the gate failed: {failed}")
                times[blueprint.stem][label].append(result.seconds)
                if types and not warm:  # the steps of the gate as generate runs it
                    for step in result.steps:
                        if step.name in STEPS:
                            times[blueprint.stem][step.name].append(step.seconds)
                    tests[blueprint.stem] = result.tests_run
                if warm:
                    shutil.rmtree(project)
        log(f"gate: round {r + 1}/{rounds} done")
    return _rows(times, tests, median(startup))


def _gate(project: Path, cache: Path, *, types: bool) -> GateResult:
    """``run_gate`` with black's cache in ``cache`` (a new folder: a cold black)."""
    saved = os.environ.get("BLACK_CACHE_DIR")
    os.environ["BLACK_CACHE_DIR"] = str(cache)
    try:
        return run_gate(project, types=types)
    finally:
        if saved is None:
            del os.environ["BLACK_CACHE_DIR"]
        else:
            os.environ["BLACK_CACHE_DIR"] = saved


def _rows(
    times: dict[str, dict[str, list[float]]], tests: dict[str, int], startup: float
) -> list[Row]:
    rows: list[Row] = []
    label = "pytest start-up, one trivial test"
    for example, found in times.items():
        m = {name: median(values) for name, values in found.items()}
        for run_label, _, _ in RUNS:
            cold_after = run_label == "after, cold"
            rows.append(
                Row(
                    SECTION,
                    f"{example}: whole gate ({run_label})",
                    m[run_label],
                    "s",
                    startup,
                    label,
                    (
                        Goal("<", 5.0, on="value", text="< 5 s")
                        if example == "order_pipeline" and cold_after
                        else None
                    ),
                )
            )
        for name in STEPS:
            figure = f"{example}: {name}"
            if name == "pytest":
                figure += f" ({tests[example]} tests)"
            rows.append(Row(SECTION, figure, m[name], "s", startup, label))
        rows.append(
            Row(
                SECTION,
                f"{example}: the type check's share of the gate (cold)",
                m["types"],
                "s",
                m["after, cold"],
                "the whole gate, cold",
                Goal("<", 0.4, text="ratio < 0.4"),
            )
        )
        rows.append(
            Row(
                SECTION,
                f"{example}: lint + guard (ruff, black, import guard)",
                m["ruff"] + m["black"] + m["import guard"],
                "s",
                m["pytest"],
                "the emitted test run",
                Goal("<", 1.0, text="ratio < 1"),
            )
        )
    return rows


def _bare_pytest_project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "test_nothing.py").write_text(
        "def test_nothing() -> None:\n    assert True\n", encoding="utf-8"
    )
    return folder


def _pytest_startup(folder: Path) -> float:
    """One ``python -m pytest`` run, as the gate starts it (same command, same env)."""
    started = time.perf_counter()
    subprocess.run(
        [*pytest_command(), "-q"],
        cwd=folder,
        env=step_env(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return time.perf_counter() - started
