"""``portwright validate``, ``schema`` and ``--version`` as a user runs them.

Valid files exit 0 (warnings on stderr); invalid ones exit 2 with one line per problem;
no traceback ever reaches the user.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from generator import __version__
from generator.cli import app

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))
FIXTURES = Path(__file__).parent / "blueprints"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
WARN = sorted((FIXTURES / "warn").glob("*.yaml"))

runner = CliRunner()


def _expected(path: Path, marker: str) -> list[str]:
    prefix = f"# {marker}: "
    return [
        f"{marker}: {path}:{line.removeprefix(prefix)}"
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(prefix)
    ]


def _syntax_neutral(lines: list[str]) -> list[str]:
    # libyaml words syntax errors its own way; compare only up to the reason
    return [line.partition(": invalid YAML: ")[0] for line in lines]


def test_valid_examples_exit_0() -> None:
    result = runner.invoke(app, ["validate", *map(str, EXAMPLES)])

    assert result.exit_code == 0, result.output
    components = {
        "live_prices": 5,
        "order_payments": 6,
        "order_pipeline": 5,
        "order_pipeline_redis": 5,
        "sensor_alerts": 10,
        "sensor_counts": 8,
    }
    assert result.stdout.splitlines() == [
        f"{path}: ok ({components[path.stem]} components)" for path in EXAMPLES
    ]
    assert result.stderr == ""


@pytest.mark.parametrize("path", WARN, ids=lambda p: p.stem)
def test_warnings_are_printed_and_exit_0(path: Path) -> None:
    result = runner.invoke(app, ["validate", str(path)])

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == _expected(path, "warning")
    assert result.stdout.startswith(f"{path}: ok (")


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_invalid_file_exits_2_with_one_line_per_problem(path: Path) -> None:
    result = runner.invoke(app, ["validate", str(path)])

    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert _syntax_neutral(result.stderr.splitlines()) == _syntax_neutral(
        _expected(path, "error")
    )
    assert result.stdout == ""


def test_every_file_is_checked_even_after_a_bad_one(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    bad = FIXTURES / "bad" / "unknown_kind.yaml"

    result = runner.invoke(app, ["validate", str(bad), str(missing), str(EXAMPLES[0])])

    assert result.exit_code == 2
    assert result.stdout == f"{EXAMPLES[0]}: ok (5 components)\n"
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    assert (
        errors[-1] == f"error: {missing}:1: cannot read file: No such file or directory"
    )


def test_validate_without_files_is_a_usage_error() -> None:
    result = runner.invoke(app, ["validate"])

    assert result.exit_code == 2
    assert "Missing argument" in result.output
    assert "Traceback" not in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"portwright {__version__}\n"


def test_schema_prints_the_committed_schema() -> None:
    result = runner.invoke(app, ["schema"])

    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "portwright blueprint, version 1"
    assert result.stdout == (ROOT / "docs" / "blueprint.schema.json").read_text(
        encoding="utf-8"
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_real_process_reports_problems_without_a_traceback() -> None:
    bad = Path("tests/blueprints/bad/several_errors.yaml")
    warn = Path("tests/blueprints/warn/feedback_no_cycle.yaml")

    done = _run("validate", str(bad), str(warn), "blueprints/order_pipeline.yaml")

    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        *_expected(bad, "error"),
        *_expected(warn, "warning"),
    ]
    assert done.stdout.splitlines() == [
        f"{warn}: ok (2 components)",
        "blueprints/order_pipeline.yaml: ok (5 components)",
    ]


def test_real_process_version_and_clean_exit() -> None:
    done = _run("--version")

    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"portwright {__version__}\n",
        "",
    )
