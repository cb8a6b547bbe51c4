"""The emitted tests cover every line and branch portwright owns outside the runtime.

The emitted project's CI runs ``pytest --cov`` with ``fail_under = 100`` over its
package, the runtime and the user's components left out (its pyproject.toml); this
runs that, as CI would, on every example, and reads the report.
"""

import json
import os
from pathlib import Path

import pytest

from generator.gate import REDIS_URL_VARIABLE, pytest_command, run_bounded, step_env
from generator.generation import generate
from generator.writer import Manifest

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))


@pytest.mark.parametrize("blueprint", EXAMPLES, ids=[b.stem for b in EXAMPLES])
def test_emitted_tests_cover_every_owned_file(blueprint: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    generate(blueprint, dest, gate=False)
    package = blueprint.stem
    report = tmp_path / "coverage.json"
    env = {**step_env(), "COVERAGE_FILE": str(tmp_path / ".coverage")}
    env.pop("CI", None)  # CI=true would fail the Redis runs without a Redis
    if os.environ.get(REDIS_URL_VARIABLE):
        env[f"{package.upper()}_REDIS_URL"] = os.environ[REDIS_URL_VARIABLE]
    command = [*pytest_command(), "-p", "pytest_cov", "--cov"]
    done = run_bounded(
        [*command, f"--cov-report=json:{report}"], dest, timeout=300, env=env
    )
    assert done.returncode == 0, done.output[-3000:]
    assert "Required test coverage of 100.0% reached" in done.output
    measured = json.loads(report.read_text())
    manifest = Manifest.read(dest)
    assert manifest is not None
    owned = {
        path
        for path, (owner, _) in manifest.files.items()
        if owner == "generator"
        and path.startswith(f"{package}/")
        and path.endswith(".py")
        and not path.startswith((f"{package}/runtime/", f"{package}/components/"))
    }
    # every owned module is measured (none left out by mistake), and fully covered
    assert set(measured["files"]) == owned
    missing = {
        path: (data["missing_lines"], data["missing_branches"])
        for path, data in measured["files"].items()
        if data["summary"]["percent_covered"] < 100
    }
    assert missing == {}
