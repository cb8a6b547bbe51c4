"""Format emitted Python with ruff (black-compatible, ~100x faster than black per file).

Black stays in the gate as ``black --check``: it proves that what ruff wrote is what
black would have written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .errors import GenerationError


def ruff_command(*args: str) -> list[str]:
    """A ruff invocation with this interpreter's ruff binary.

    The binary itself, not ``python -m ruff``: that would start an interpreter
    (~55 ms) only to exec the same binary.
    """
    try:
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

        binary = str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        return [sys.executable, "-m", "ruff", *args]
    return [binary, *args]


def format_tree(project: Path) -> None:
    """Sort imports and format every Python file under ``project`` in place."""
    for args in (
        (
            "check",
            "--no-cache",
            "--select",
            "I",
            "--fix",
            "--quiet",
            "--exit-zero",
            ".",
        ),
        ("format", "--no-cache", "--quiet", "."),
    ):
        done = subprocess.run(
            ruff_command(*args),
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise GenerationError(
                f"formatting the emitted project failed (ruff {args[0]}): "
                f"{(done.stderr or done.stdout).strip()[:2000]}"
            )
