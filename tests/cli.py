"""Run portwright's command line as a user would: a new process, output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m generator ARGS`` in this interpreter; never raises on exit codes."""
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def generate_gated(folder: Path, name: str, text: str) -> Path:
    """Write blueprint ``text`` as ``folder/name``, generate it with its gate, and
    return the project's folder; fails the test when the gate does not pass."""
    blueprint = folder / name
    blueprint.write_text(text)
    dest = folder / "out"
    done = run_cli("generate", str(blueprint), "-o", str(dest))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate passed:" in done.stdout
    return dest
