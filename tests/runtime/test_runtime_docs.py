"""docs/runtime.md's order_pipeline example runs, and the shared tests run in it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "runtime.md"
RUNTIME = ROOT / "templates" / "project" / "package" / "runtime"
PATTERNS = ROOT / "templates" / "project" / "tests" / "test_patterns.py"
BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```", re.S)


def emit_example(folder: Path) -> dict[str, str]:
    files = {m["path"]: m["code"] for m in BLOCK.finditer(DOC.read_text())}
    for path, code in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    (folder / "order_pipeline" / "__init__.py").write_text('"""order_pipeline."""\n')
    shutil.copytree(
        RUNTIME,
        folder / "order_pipeline" / "runtime",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return files


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )


def test_the_documented_example_runs_as_an_emitted_project(tmp_path: Path) -> None:
    files = emit_example(tmp_path)
    assert "order_pipeline/wiring.py" in files and "test_order_pipeline.py" in files
    for path in files:
        compile((tmp_path / path).read_text(), path, "exec")

    example = run(tmp_path, "test_order_pipeline.py")
    assert example.returncode == 0, example.stderr

    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(PATTERNS, tests / "test_patterns.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    patterns = run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert patterns.returncode == 0, patterns.stdout + patterns.stderr
    assert "5 passed" in patterns.stdout
