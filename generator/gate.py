"""The generation gate: lint, format check, import guard and the emitted tests.

The gate runs in this interpreter: portwright's own install brings every dependency an
emitted project has, so a fresh machine needs nothing beyond portwright's install.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GenerationError
from .formatting import ruff_command
from .imports_guard import ProjectImports, check_imports
from .render import verbatim_files

# What the emitted tests import; all of them come with portwright's own install.
NEEDED = (
    "anyio",
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "pydantic",
    "httpx",
    "pytest",
    "structlog",
    "limits",
    "bcrypt",
    "redis",
    "orjson",
)
PYTEST_TIMEOUT_S = 600
#: the Redis the emitted tests may use (``bash .ci/run`` starts one and sets it)
REDIS_URL_VARIABLE = "PORTWRIGHT_REDIS_URL"


@dataclass(frozen=True)
class Step:
    """One gate step's outcome."""

    name: str
    ok: bool
    seconds: float
    output: str = ""
    summary: str = ""


@dataclass(frozen=True)
class GateResult:
    """Every step, in order; the gate passed when all did."""

    steps: tuple[Step, ...] = field(default_factory=tuple)
    #: how long the whole gate took; its steps run side by side, so this is less than
    #: the sum of theirs (0: not measured, the sum stands for it)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every step passed."""
        return all(step.ok for step in self.steps)

    @property
    def seconds(self) -> float:
        """How long the gate took, start to end."""
        return self.wall_seconds or self.busy_seconds

    @property
    def busy_seconds(self) -> float:
        """The sum of the steps' own times (they overlap)."""
        return sum(step.seconds for step in self.steps)

    @property
    def tests_run(self) -> int:
        """How many emitted tests passed (from pytest's summary)."""
        for step in self.steps:
            match = re.search(r"(\d+) passed", step.summary)
            if step.name == "pytest" and match:
                return int(match.group(1))
        return 0


def missing_dependencies() -> list[str]:
    """Modules the emitted tests need that this interpreter cannot import."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def pytest_command() -> list[str]:
    """How the gate starts the emitted tests: this interpreter, anyio's plugin only."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "anyio.pytest_plugin",
    ]


def step_env() -> dict[str, str]:
    """The environment every step runs in."""
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the emitted tree
    # Only the plugins the emitted tests use, not every plugin of this environment
    # (hypothesis alone takes 0.7 s to import).
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def _redis_env(project: Path) -> dict[str, str]:
    """``PORTWRIGHT_REDIS_URL`` as the project's own ``<PACKAGE>_REDIS_URL``.

    The emitted tests of a project with Redis connections run on Redis too when that
    variable names one; a value already set for the project wins.
    """
    url = os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        return {}
    variable = f"{ProjectImports.read(project).package.upper()}_REDIS_URL"
    return {} if variable in os.environ else {variable: url}


def _run(
    name: str,
    command: list[str],
    project: Path,
    timeout: float = 300,
    extra_env: dict[str, str] | None = None,
) -> Step:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=project,
            capture_output=True,
            text=True,
            env={**step_env(), **(extra_env or {})},
            timeout=timeout,
            check=False,
        )
        output = (done.stdout + done.stderr).strip()
        ok = done.returncode == 0
    except subprocess.TimeoutExpired:
        output, ok = f"timed out after {timeout:.0f} s", False
    lines = [line for line in output.splitlines() if line.strip()]
    return Step(
        name, ok, time.perf_counter() - start, output, lines[-1] if lines else ""
    )


def _guard(project: Path) -> Step:
    start = time.perf_counter()
    violations = check_imports(project)
    output = "\n".join(str(v) for v in violations)
    summary = f"{len(violations)} violation(s)" if violations else "all imports allowed"
    return Step(
        "import guard", not violations, time.perf_counter() - start, output, summary
    )


def _unchanged_copies(project: Path) -> list[str]:
    """``--extend-exclude`` for the files that are byte for byte the runtime shipped.

    Those are black-checked in portwright's own tree (and by its tests, as emitted);
    checking them again in every gate would double black's time. Any other file,
    a copy someone edited included, is checked.
    """
    package = ProjectImports.read(project).package
    same = [
        path
        for path, data in verbatim_files(package).items()
        if path.endswith(".py") and _read(project / path) == data
    ]
    if not same:
        return []
    return ["--extend-exclude", "^/(" + "|".join(re.escape(p) for p in same) + ")$"]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def run_gate(
    project: Path, on_step: Callable[[Step], None] | None = None
) -> GateResult:
    """Run every step in ``project`` (all run, even after a failure, to report them all).

    The steps are independent, so the three tools run side by side while the import
    guard runs here: the gate takes about as long as its longest step, the emitted
    tests. ``on_step`` still sees the steps in their order.
    """
    missing = missing_dependencies()
    if missing:
        raise GenerationError(
            "the gate runs the emitted tests in this interpreter, which cannot import "
            f"{', '.join(missing)}; reinstall portwright with its dependencies"
        )
    started = time.perf_counter()
    commands: dict[str, Callable[[], Step]] = {
        "pytest": lambda: _run(
            "pytest",
            pytest_command(),
            project,
            timeout=PYTEST_TIMEOUT_S,
            extra_env=_redis_env(project),
        ),
        # one worker: a pool of processes would each import black again, beside pytest
        "black": lambda: _run(
            "black",
            [
                sys.executable,
                "-m",
                "black",
                "--check",
                "--workers",
                "1",
                *_unchanged_copies(project),
                ".",
            ],
            project,
        ),
        "ruff": lambda: _run("ruff", ruff_command("check", "--no-cache", "."), project),
    }
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        running = {name: pool.submit(make) for name, make in commands.items()}
        guard = _guard(project)
        done = {name: future.result() for name, future in running.items()}
    steps = (done["ruff"], done["black"], guard, done["pytest"])
    for step in steps:
        if on_step is not None:
            on_step(step)
    return GateResult(steps, time.perf_counter() - started)
