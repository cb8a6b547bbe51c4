"""The runtime's layers (pyproject.toml ``[tool.importlinter]``), checked by pytest too.

CI runs ``lint-imports``; running it here as well means a plain ``pytest`` catches a
new cycle or a core module that reaches into a transport. The second test proves the
check can fail: the same contracts over a copy of the runtime with one forbidden
import, under ``TYPE_CHECKING`` (where cycles used to hide).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "templates" / "project" / "package"
RUNTIME = PACKAGE / "runtime"
#: the runtime's modules that know no transport (the layers below ``service``, and it)
TRANSPORTS = ("memory", "redis")
TOOLS = ("app.py", "deadletter.py", "partitions.py", "replicas.py", "__init__.py")


def lint_imports(package_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with this repository's contracts, the runtime from
    ``package_dir``, run in ``cwd`` (never the templates: every file there is
    copied into each emitted project, a stray cache included)."""
    tool = Path(sys.executable).with_name("lint-imports")
    if not tool.exists():
        pytest.fail("lint-imports is missing: pip install -e '.[dev]'")
    env = {**os.environ, "PYTHONPATH": str(package_dir)}
    return subprocess.run(
        [str(tool), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_runtime_keeps_its_layers(tmp_path: Path) -> None:
    result = lint_imports(PACKAGE, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_core_module_importing_upwards_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(
        RUNTIME, tmp_path / "runtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    ports = tmp_path / "runtime" / "ports.py"
    text = ports.read_text(encoding="utf-8")
    # the old cycle: ports -> metrics -> component -> ports, only while type checking
    ports.write_text(
        text.replace(
            "from .envelope import",
            "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from .metrics import ServiceMetrics  # noqa: F401\n"
            "from .envelope import",
            1,
        ),
        encoding="utf-8",
    )

    result = lint_imports(tmp_path, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "runtime.ports -> runtime.metrics" in result.stdout


def test_no_core_module_asks_which_transport_it_has() -> None:
    # Transports are told apart only by the protocol (``per_message``,
    # ``between_processes``, ``place``), never by name or class. (The rate limits'
    # storage, "memory" or a Redis URL, is a setting of its own, not a transport.)
    asking = re.compile(r"transport\s*[!=]=|\bRedis(?:Connection|Link|Dedup|Carrier)\b")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(RUNTIME.glob("*.py"))
        if path.name not in TOOLS
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if asking.search(line)
    ]

    assert found == []
