"""Emitted code is typed to portwright's own standard: mypy --strict passes on it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted(p for p in (ROOT / "generated_examples").iterdir() if p.is_dir())


@pytest.mark.parametrize("project", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_generated_package_passes_mypy_strict(project: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
            "--no-error-summary", project.name,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
