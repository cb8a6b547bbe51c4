"""The benchmark table: one row per figure, its baseline, their ratio and the goal.

Every ratio is ``value / baseline``, whatever the unit, so that a goal reads the same
way everywhere: "ratio <= 0.2" for a time five times shorter than the baseline's,
"ratio >= 0.5" for a throughput half the baseline's.
"""

from __future__ import annotations

import json
import operator
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("figure", "value", "baseline", "ratio", "goal", "met?")
REPO = Path(__file__).resolve().parents[1]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Goal:
    """``on`` ("ratio" or "value") compared with ``limit`` by ``op``."""

    op: str
    limit: float
    on: str = "ratio"
    text: str = ""

    def met(self, value: float, ratio: float | None) -> bool | None:
        """Whether the figure meets the goal (None when it cannot be judged)."""
        subject = ratio if self.on == "ratio" else value
        if subject is None:
            return None
        return _COMPARE[self.op](subject, self.limit)

    def __str__(self) -> str:
        if self.text:
            return self.text
        return f"{self.on} {self.op} {self.limit:g}"


@dataclass(frozen=True)
class Row:
    """One figure of the table.

    ``value`` is None only for a figure that was not measured (``note`` says why);
    such a row has no ratio and no verdict.
    """

    section: str
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    goal: Goal | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / baseline``."""
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """The goal's verdict, if the row has a goal and a value."""
        if self.goal is None or self.value is None:
            return None
        return self.goal.met(self.value, self.ratio)

    def cells(self) -> tuple[str, str, str, str, str, str]:
        """The row as text, one cell per column of ``COLUMNS``."""
        if self.value is None:
            return (self.figure, "not measured", "", "", "", self.note)
        baseline = ""
        if self.baseline is not None:
            baseline = f"{_number(self.baseline)} {self.unit}"
            if self.baseline_label:
                baseline += f" ({self.baseline_label})"
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        verdict = {True: "yes", False: "NO", None: "-"}[self.met]
        if self.note:
            verdict += f" ({self.note})"
        return (
            self.figure,
            f"{_number(self.value)} {self.unit}",
            baseline,
            ratio,
            "" if self.goal is None else str(self.goal),
            verdict,
        )

    def to_json(self) -> dict[str, object]:
        """The row with its computed ratio and verdict."""
        data = asdict(self)
        data["goal"] = None if self.goal is None else str(self.goal)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def median(values: Iterable[float]) -> float:
    """The median (the figures are medians of interleaved rounds)."""
    return statistics.median(list(values))


def render_text(rows: list[Row]) -> str:
    """A plain-text table, one section after another."""
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    out: list[str] = []
    section = None
    for row, line in zip([None, *rows], table, strict=True):
        if row is not None and row.section != section:
            section = row.section
            out.append(f"-- {section} " + "-" * max(0, sum(widths) - len(section)))
        out.append(
            "  ".join(
                cell.ljust(width) for cell, width in zip(line, widths, strict=True)
            ).rstrip()
        )
    return "\n".join(out)


def render_markdown(rows: list[Row]) -> str:
    """A Markdown table (the one docs/benchmarks.md publishes)."""
    out = [
        "| section | " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for row in rows:
        cells = [cell.replace("|", "\\|") for cell in row.cells()]
        out.append(f"| {row.section} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def machine() -> dict[str, str]:
    """Where the table was measured: cores, CPU, memory, Python, date, commit."""
    cpu = "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted": _git("status", "--porcelain", "--untracked-files=no")
        .replace("\n", ", ")
        .strip()
        or "none",
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def to_json(rows: list[Row], info: dict[str, str]) -> str:
    """The whole run as JSON: the machine, then every row."""
    return json.dumps(
        {"machine": info, "columns": COLUMNS, "rows": [r.to_json() for r in rows]},
        indent=2,
    )
