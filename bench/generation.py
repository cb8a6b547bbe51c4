"""Generation without the gate, against copier rendering a template of the same size.

For each N, ``bench/synthetic.py`` makes a blueprint of N components and portwright
generates it (``generate(..., gate=False)``: load, plan, render, write, ``ruff
format`` on the rendered files, manifest, install). The baseline is copier's ``run_copy``, in this same process,
rendering a template made from portwright's own output for that N: the same files
(paths, count, lines; each file a ``.jinja`` template with the package name as a
variable), so copier writes exactly what portwright writes.

The two alternate within each round (the order flips every round) and the figures
are medians. Both run warm (modules imported) but with cold templates: portwright's
cached Jinja environment is cleared before each run, as copier builds a new one per
call (portwright's on-disk bytecode cache of its templates stays, as it does between
two runs of the command). Peak memory is tracemalloc's peak of Python allocations during one run of each,
measured apart from the timed runs (tracing slows everything down); ruff's own process
is not included.

Formatting is the trap named in the issue: black costs ~50 ms per file. The section
also times portwright's formatting step (ruff) inside the real ``generate`` and, as
its baseline, black formatting the same unformatted files (the rendered ones: the
copied runtime files are already formatted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import copier

import generator.generation as generation
from generator.render import environment
from generator.resolve import default_checker

from . import synthetic
from .table import Goal, Row, median

SECTION = "1 generation"
SIZES = (10, 50, 200)
Log = Callable[[str], None]


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """Every generation row, for N in ``SIZES``."""
    rounds = 1 if quick else 5
    sizes = (SIZES[0], SIZES[-1]) if quick else SIZES
    cases = {n: _Case.prepare(n, work / f"n{n}") for n in sizes}
    for case in cases.values():
        log(
            f"generation: N={case.n}: {case.files} files, {case.lines} lines "
            f"(copier template of the same files)"
        )
    for r in range(rounds):
        for case in cases.values():
            runs = [case.run_portwright, case.run_copier]
            for one in runs if r % 2 == 0 else reversed(runs):
                one()
        log(f"generation: round {r + 1}/{rounds} done")
    # tracing and black are slow: quick mode does them for the smallest N only
    for n in sizes[:1] if quick else sizes:
        cases[n].measure_memory()
        cases[n].measure_black()
    return _rows(cases)


class _Case:
    """One N: its blueprint, its copier template, and what was measured."""

    def __init__(self, n: int, folder: Path, blueprint: Path, template: Path) -> None:
        self.n = n
        self.folder = folder
        self.blueprint = blueprint
        self.template = template
        self.files, self.lines = _size(folder / "reference")
        self.portwright: list[float] = []
        self.copier: list[float] = []
        self.formatting: list[float] = []
        self.portwright_peak = 0.0
        self.copier_peak = 0.0
        self.black: float | None = None
        self.formatted_files: list[str] = []  # what generate formats with ruff
        self._count = 0
        self._last: Path | None = None

    @classmethod
    def prepare(cls, n: int, folder: Path) -> _Case:
        """Make the blueprint, generate it once (warm-up), build the copier template."""
        folder.mkdir(parents=True)
        blueprint, _ = synthetic.make(n, folder)
        reference = folder / "reference"
        with _unformatted_copy(folder / "unformatted") as formatted:
            generation.generate(blueprint, reference, gate=False)
        template = folder / "template"
        _copier_template(reference, template, f"synthetic_{n}")
        case = cls(n, folder, blueprint, template)
        case.formatted_files = formatted
        case.run_copier()  # warm-up; also checks that copier writes the same files
        assert case._last is not None
        written = _size(case._last)[0]
        if written != case.files:
            raise AssertionError(f"copier wrote {written} files, not {case.files}")
        case.copier.clear()
        return case

    def _dest(self, tool: str) -> Path:
        self._count += 1
        return self.folder / f"{tool}-{self._count}"

    def run_portwright(self) -> None:
        """One timed generation (its formatting step timed too)."""
        dest = self._dest("portwright")
        environment.cache_clear()
        default_checker.cache_clear()  # nothing a new process would not have to build
        with _timed_formatting() as formatting:
            started = time.perf_counter()
            generation.generate(self.blueprint, dest, gate=False)
            self.portwright.append(time.perf_counter() - started)
        self.formatting.append(formatting[0])
        shutil.rmtree(dest)

    def run_copier(self) -> None:
        """One timed ``copier.run_copy`` of the same-size template."""
        dest = self._dest("copier")
        started = time.perf_counter()
        copier.run_copy(
            str(self.template),
            dest,
            data={"package": f"synthetic_{self.n}"},
            defaults=True,
            overwrite=True,
            quiet=True,
        )
        self.copier.append(time.perf_counter() - started)
        if self._last is not None:
            shutil.rmtree(self._last)
        self._last = dest

    def measure_memory(self) -> None:
        """tracemalloc's peak for one run of each tool."""
        for tool, runner in (
            ("portwright", self.run_portwright),
            ("copier", self.run_copier),
        ):
            tracemalloc.start()
            try:
                runner()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            setattr(self, f"{tool}_peak", peak / 2**20)
            getattr(self, tool).pop()  # a traced run is not a timing
            if tool == "portwright":
                self.formatting.pop()

    def measure_black(self) -> None:
        """Black formatting the unformatted render: the files ruff formats in generate."""
        tree = self.folder / "black"
        shutil.copytree(self.folder / "unformatted", tree)
        cache = self.folder / "black-cache"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "black", "-q", "--", *self.formatted_files],
            cwd=tree,
            env={**os.environ, "BLACK_CACHE_DIR": str(cache)},
            check=True,
        )
        self.black = time.perf_counter() - started


def _rows(cases: dict[int, _Case]) -> list[Row]:
    rows: list[Row] = []
    first = cases[SIZES[0]]
    per_component_10 = median(first.portwright) / first.n
    for n, case in cases.items():
        pw, cp = median(case.portwright), median(case.copier)
        label = f"copier run_copy, {case.files} files"
        rows.append(
            Row(
                SECTION,
                f"N={n}: wall time ({case.files} files, {case.lines:,} lines)",
                pw,
                "s",
                cp,
                label,
                Goal("<", 5.0, on="value", text="< 5 s") if n == 200 else None,
            )
        )
        rows.append(
            Row(
                SECTION,
                f"N={n}: time per file",
                pw / case.files * 1000,
                "ms",
                cp / case.files * 1000,
                "copier",
                Goal("<=", 0.2, text="ratio <= 0.2 (5x faster)"),
            )
        )
        rows.append(
            Row(
                SECTION,
                f"N={n}: time per component",
                pw / n * 1000,
                "ms",
                per_component_10 * 1000,
                f"portwright at N={first.n}",
                None if n == first.n else Goal("<=", 1.2, text="ratio <= 1.2 (flat)"),
            )
        )
        if not case.portwright_peak:
            continue
        rows.append(
            Row(
                SECTION,
                f"N={n}: peak memory (tracemalloc)",
                case.portwright_peak,
                "MiB",
                case.copier_peak,
                "copier",
            )
        )
        if case.black is not None:
            rows.append(
                Row(
                    SECTION,
                    f"N={n}: formatting (ruff, inside generate)",
                    median(case.formatting),
                    "s",
                    case.black,
                    "black on the same files",
                )
            )
    return rows


def _size(tree: Path) -> tuple[int, int]:
    files = [p for p in tree.rglob("*") if p.is_file()]
    lines = sum(p.read_bytes().count(b"\n") for p in files)
    return len(files), lines


@contextmanager
def _timed_formatting() -> Iterator[list[float]]:
    """Time ``format_files`` as ``generate`` calls it (the name it imported)."""
    spent = [0.0]
    original = generation.format_files

    def timed(project: Path, paths: Sequence[str]) -> None:
        started = time.perf_counter()
        try:
            original(project, paths)
        finally:
            spent[0] += time.perf_counter() - started

    generation.format_files = timed  # type: ignore[assignment]
    try:
        yield spent
    finally:
        generation.format_files = original  # type: ignore[assignment]


@contextmanager
def _unformatted_copy(keep: Path) -> Iterator[list[str]]:
    """Keep a copy of what ``generate`` rendered, before it formats it; and which files."""
    original = generation.format_files
    formatted: list[str] = []

    def copying(project: Path, paths: Sequence[str]) -> None:
        shutil.copytree(project, keep)
        formatted.extend(paths)
        original(project, paths)

    generation.format_files = copying  # type: ignore[assignment]
    try:
        yield formatted
    finally:
        generation.format_files = original  # type: ignore[assignment]


_JINJA_MARKS = ("{{", "}}", "{%", "%}", "{#", "#}")


def _copier_template(project: Path, template: Path, package: str) -> None:
    """A copier template whose output is ``project``: same paths, files and lines.

    Every file becomes ``<name>.jinja`` with the package name as ``{{ package }}``
    (a line holding Jinja's own delimiters is kept verbatim in a raw block), so
    copier renders every line of every file, as portwright does.
    """
    source = template / "template"
    source.mkdir(parents=True)
    (template / "copier.yml").write_text(
        "_subdirectory: template\n"
        "_templates_suffix: .jinja\n"
        f"package:\n  type: str\n  default: {package}\n",
        encoding="utf-8",
    )
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        relative = (
            path.relative_to(project).as_posix().replace(package, "{{ package }}")
        )
        target = source / (relative + ".jinja")
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if any(mark in line for mark in _JINJA_MARKS):
                body = line.rstrip("\n")
                lines.append("{% raw %}" + body + "{% endraw %}" + line[len(body) :])
            else:
                lines.append(line.replace(package, "{{ package }}"))
        target.write_text("".join(lines), encoding="utf-8")
