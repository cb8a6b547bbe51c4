"""The generation gate: lint, format check, import guard, type check, emitted tests.

The gate runs in this interpreter: portwright's own install brings every dependency an
emitted project has, so a fresh machine needs nothing beyond portwright's install.

It judges the files portwright owns on everything (lint, black, the import guard) and
the user's files only on what breaks the service: a syntax error or an undefined name
(ruff's fatal rules), unresolved conflict markers, a type error (the strict type check
covers every file), a failing test. Every step is
bounded: each emitted test by pytest-timeout, each step as a whole by a time limit
that kills its process group.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import GenerationError
from .formatting import ruff_command
from .imports_guard import ProjectImports, check_imports
from .merging import find_markers
from .planner import MANIFEST
from .render import verbatim_files
from .typecheck import parse, schema_fields, typecheck_command
from .writer import Manifest

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
    "pytest_timeout",
    "pyrefly",
)
#: one emitted test's time limit (pytest-timeout), unless the variable says otherwise
TEST_TIMEOUT_VARIABLE = "PORTWRIGHT_TEST_TIMEOUT_S"
TEST_TIMEOUT_S = 60.0
#: a whole step's time limit; past it the step's process group is killed
STEP_TIMEOUT_VARIABLE = "PORTWRIGHT_STEP_TIMEOUT_S"
STEP_TIMEOUT_S = 600.0
#: what fails the gate in a user's file: syntax errors and undefined names (the rest
#: of the lint, and formatting, are the user's business)
USER_RULES = "E9,F63,F7,F82"
#: folders no step looks into (the tools' own defaults leave them out too)
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        ".portwright",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        "node_modules",
    }
)
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

    def relocated(self, old: Path, new: Path) -> GateResult:
        """The same result, its output naming ``new`` wherever it named ``old``."""
        steps = tuple(
            replace(
                s,
                output=s.output.replace(str(old), str(new)),
                summary=s.summary.replace(str(old), str(new)),
            )
            for s in self.steps
        )
        return GateResult(steps, self.wall_seconds)

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


def _seconds(variable: str, default: float) -> float:
    """A time limit from the environment (a positive number of seconds), or ``default``."""
    text = os.environ.get(variable, "")
    try:
        value = float(text) if text else default
    except ValueError:
        raise GenerationError(
            f"{variable}={text!r} is not a number of seconds"
        ) from None
    if value <= 0:
        raise GenerationError(f"{variable}={text!r} must be more than 0 seconds")
    return value


def test_timeout() -> float:
    """The time limit of one emitted test."""
    return _seconds(TEST_TIMEOUT_VARIABLE, TEST_TIMEOUT_S)


def step_timeout() -> float:
    """The time limit of one gate step."""
    return _seconds(STEP_TIMEOUT_VARIABLE, STEP_TIMEOUT_S)


def pytest_command() -> list[str]:
    """How the gate starts the emitted tests: this interpreter, anyio's plugin, bounded.

    Each test gets ``test_timeout()`` (a hang fails that test, by name); the session
    stops a little before the step's own limit, so that pytest still reports.
    """
    step = step_timeout()
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "anyio.pytest_plugin",
        "-p",
        "pytest_timeout",
        f"--timeout={test_timeout():g}",
        f"--session-timeout={max(step * 0.9, step - 30):g}",
        "-rfE",
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


def _redis_env(package: str) -> dict[str, str]:
    """``PORTWRIGHT_REDIS_URL`` as the project's own ``<PACKAGE>_REDIS_URL``.

    The emitted tests of a project with Redis connections run on Redis too when that
    variable names one; a value already set for the project wins.
    """
    url = os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        return {}
    variable = f"{package.upper()}_REDIS_URL"
    return {} if variable in os.environ else {variable: url}


@dataclass(frozen=True)
class Finished:
    """A bounded process's end: its exit code (None: killed at its limit), its output."""

    returncode: int | None
    output: str


def run_bounded(
    command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> Finished:
    """Run ``command``; past ``timeout`` seconds kill it and everything it started.

    The command leads a process group of its own, so that a test's server or worker
    process cannot outlive the step (or keep its output pipe open).
    """
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        output, _ = process.communicate()
        return Finished(None, output or "")
    except BaseException:
        _kill_group(process)
        process.wait()
        raise
    return Finished(process.returncode, output)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone, with its group
        os.killpg(process.pid, signal.SIGKILL)


def _run(
    name: str,
    command: list[str],
    project: Path,
    extra_env: dict[str, str] | None = None,
) -> Step:
    start = time.perf_counter()
    limit = step_timeout()
    done = run_bounded(command, project, limit, {**step_env(), **(extra_env or {})})
    output = done.output.strip()
    if done.returncode is None:
        output += f"\nkilled after {limit:g} s, the time limit of a gate step"
    seconds = time.perf_counter() - start
    return Step(name, done.returncode == 0, seconds, output, _summary(name, output))


def _summary(name: str, output: str) -> str:
    """The last line of the output; for pytest, with the tests that failed, by name."""
    lines = [line for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if name != "pytest":
        return last
    failed = [
        line.split(" ", 1)[1]
        for line in lines
        if line.startswith(("FAILED ", "ERROR "))
    ]
    if not failed:
        return last
    shown = "; ".join(failed[:3]) + (
        f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    )
    return f"{last.strip('= ')}: {shown}"


def _guard(project: Path, declared: ProjectImports) -> Step:
    start = time.perf_counter()
    violations = check_imports(project, declared)
    output = "\n".join(str(v) for v in violations)
    summary = f"{len(violations)} violation(s)" if violations else "all imports allowed"
    return Step(
        "import guard", not violations, time.perf_counter() - start, output, summary
    )


@dataclass(frozen=True)
class Known:
    """What the gate needs besides the tree, as the build that made the tree knows it.

    ``generate`` hands it to the gate instead of the gate reading it back;
    ``portwright gate DIR`` has only the folder, so ``run_gate`` finds it there (one
    read of pyproject.toml) when it is not given.
    """

    #: the runtime files as shipped (path -> bytes): black does not check them again
    copies: Mapping[str, bytes]
    #: what the tree's pyproject.toml declares; None: read it from the tree (regenerate
    #: may have merged the user's edits into it)
    declared: ProjectImports | None = None


@dataclass(frozen=True)
class Files:
    """The project's Python files: portwright's (from the manifest) and the user's."""

    owned: tuple[str, ...]
    #: component files and every file portwright did not write
    users: tuple[str, ...]
    #: every path the manifest lists (conflict markers are looked for there)
    written: tuple[str, ...]

    @classmethod
    def read(cls, project: Path) -> Files:
        """Sort ``project``'s files by owner; a project without a manifest is refused."""
        manifest = Manifest.read(project)
        if manifest is None:
            raise GenerationError(
                f"{project} has no {MANIFEST}; the gate judges a project portwright "
                "generated"
            )
        owned = {p for p, (owner, _) in manifest.files.items() if owner == "generator"}
        python = sorted(_python_files(project))
        return cls(
            tuple(p for p in python if p in owned),
            tuple(p for p in python if p not in owned),
            tuple(sorted(manifest.files)),
        )


def _python_files(project: Path) -> Iterator[str]:
    for folder, folders, names in os.walk(project):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_FOLDERS)
        base = Path(folder).relative_to(project)
        for name in names:
            if name.endswith(".py"):
                yield (base / name).as_posix()


def _unchanged_copies(project: Path, copies: Mapping[str, bytes]) -> set[str]:
    """The files that are byte for byte the runtime shipped (``copies``).

    Those are black-checked in portwright's own tree (and by its tests, as emitted);
    checking them again in every gate would double black's time. Any other file,
    a copy someone edited included, is checked.
    """
    return {
        path
        for path, data in copies.items()
        if path.endswith(".py") and _read(project / path) == data
    }


def _black(project: Path, paths: list[str]) -> Step:
    if not paths:
        return Step("black", True, 0.0, "", "nothing of portwright's changed")
    # one worker: a pool of processes would each import black again, beside pytest
    command = [sys.executable, "-m", "black", "--check", "--workers", "1", "--"]
    return _run("black", [*command, *paths], project)


def _markers(project: Path, files: Files) -> Step:
    start = time.perf_counter()
    found = find_markers(project, files.written)
    output = "\n".join(str(m) for m in found)
    summary = (
        f"{found[0]} (and {len(found) - 1} more)"
        if len(found) > 1
        else str(found[0]) if found else "no conflict markers"
    )
    return Step("conflicts", not found, time.perf_counter() - start, output, summary)


def _user_lint(project: Path, files: Files) -> Step:
    if not files.users:
        return Step("your code", True, 0.0, "", "no files of yours")
    step = _run(
        "your code",
        ruff_command(
            "check",
            "--no-cache",
            "--select",
            USER_RULES,
            "--output-format",
            "concise",
            "--",
            *files.users,
        ),
        project,
    )
    if step.ok:
        return replace(step, summary=f"{len(files.users)} file(s) of yours: no errors")
    broken = sorted(
        {line.split(":", 1)[0] for line in step.output.splitlines() if ".py:" in line}
    )
    return replace(
        step,
        summary=(
            f"your file(s) {', '.join(broken) or '(see below)'} would break the "
            "service (a syntax error or an undefined name): fix them and run the "
            "command again; style and formatting in your files are yours to choose"
        ),
    )


def _types(project: Path) -> Step:
    """The strict type check of every file; errors as ``path:line: message``."""
    with tempfile.TemporaryDirectory(prefix="portwright-types-") as folder:
        report = Path(folder) / "errors.json"
        step = _run("types", [*typecheck_command(), "-o", f"json:{report}"], project)
        text = _read(report)
    try:
        problems = parse(
            (text or b"").decode("utf-8", "replace"), schema_fields(project)
        )
    except ValueError:  # no report: pyrefly itself failed (its output says why)
        return replace(step, ok=False, summary=step.summary or "no type report")
    if not problems:
        return replace(step, ok=step.ok, output="", summary="no type errors")
    files = sorted({p.path for p in problems})
    shown = ", ".join(files[:3]) + (
        f" and {len(files) - 3} more" if len(files) > 3 else ""
    )
    return replace(
        step,
        ok=False,
        output="\n".join(str(p) for p in problems),
        summary=f"{len(problems)} type error(s) in {shown}",
    )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def run_gate(
    project: Path,
    on_step: Callable[[Step], None] | None = None,
    *,
    types: bool = True,
    known: Known | None = None,
) -> GateResult:
    """Run every step in ``project`` (all run, even after a failure, to report them all).

    The type check runs first, alone: pyrefly uses every core, and beside the emitted
    tests on two cores it slowed the gate by more than its own time (docs/design.md).
    Then the lint steps and the tests, independent, run side by side while the import
    guard runs here. ``on_step`` sees the steps in their order: conflicts, ruff,
    black, your code, import guard, types, pytest. ``types=False`` leaves the type
    check out (the benchmark's "before"). ``known``: what the build knows (else it
    is read from ``project``, and the runtime as shipped rendered again).
    """
    missing = missing_dependencies()
    if missing:
        raise GenerationError(
            "the gate runs the emitted tests in this interpreter, which cannot import "
            f"{', '.join(missing)}; reinstall portwright with its dependencies"
        )
    started = time.perf_counter()
    declared = (known and known.declared) or ProjectImports.read(project)
    copies = known.copies if known else verbatim_files(declared.package)
    files = Files.read(project)
    checked = (_types(project),) if types else ()
    unchanged = _unchanged_copies(project, copies)
    formatted = [p for p in files.owned if p not in unchanged]
    commands: dict[str, Callable[[], Step]] = {
        "pytest": lambda: _run(
            "pytest",
            pytest_command(),
            project,
            extra_env=_redis_env(declared.package),
        ),
        "black": lambda: _black(project, formatted),
        "ruff": lambda: _run(
            "ruff", ruff_command("check", "--no-cache", "--", *files.owned), project
        ),
        "your code": lambda: _user_lint(project, files),
    }
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        running = {name: pool.submit(make) for name, make in commands.items()}
        markers = _markers(project, files)
        guard = _guard(project, declared)
        done = {name: future.result() for name, future in running.items()}
    steps = (
        markers,
        done["ruff"],
        done["black"],
        done["your code"],
        guard,
        *checked,
        done["pytest"],
    )
    for step in steps:
        if on_step is not None:
            on_step(step)
    return GateResult(steps, time.perf_counter() - started)
