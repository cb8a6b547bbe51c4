"""The import guard reads the AST of an emitted project and names every bad import."""

import subprocess
import sys
from pathlib import Path

from generator.imports_guard import check_imports
from generator.writer import write_files

PYPROJECT = """
[project]
name = "shop"
dependencies = ["pydantic>=2", "anyio>=4"]
[project.optional-dependencies]
test = ["pytest>=8"]
[tool.portwright]
package = "shop"
forbidden_imports = ["observability", "legacy.metrics"]
"""


def make_project(root: Path, files: dict[str, str]) -> Path:
    write_files(root, {"pyproject.toml": PYPROJECT, "shop/__init__.py": "", **files})
    return root


def test_allowed_imports_pass(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "shop/a.py": "import json\nfrom . import b\nfrom .b import c\nimport shop.b\n"
            "import pydantic\nfrom anyio import sleep\nfrom __future__ import annotations\n",
            "shop/b.py": "c = 1\n",
            "tests/test_a.py": "import pytest\nimport shop\n",
        },
    )
    assert check_imports(project) == []


def test_every_violation_is_named_with_its_line(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "shop/a.py": "import json\nimport requests\nfrom generator import cli\n"
            "from observability import log\nimport legacy.metrics.x\nimport legacy.ok\n",
            "shop/b.py": "def f():\n    import pytest\n",
            "shop/c.py": "def broken(:\n",
        },
    )
    found = [str(v) for v in check_imports(project)]
    assert found[0].startswith("shop/a.py:2: 'requests' is not the package")
    assert (
        found[1]
        == "shop/a.py:3: emitted code must not import portwright ('generator'); it must stand alone"
    )
    assert found[2].startswith("shop/a.py:4: import of 'observability' is forbidden")
    assert found[3].startswith("shop/a.py:5: import of 'legacy.metrics.x' is forbidden")
    assert found[4].startswith("shop/a.py:6: 'legacy.ok' is not the package")
    # pytest is a test dependency: fine in tests/, not in the package
    assert found[5].startswith("shop/b.py:2: 'pytest' is not the package")
    assert found[6].startswith("shop/c.py:1: cannot parse")
    assert len(found) == 7


def test_cli_prints_violations_and_exits_1(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"shop/a.py": "import requests\n"})
    done = subprocess.run(
        [sys.executable, "-m", "generator", "check-imports", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "shop/a.py:1: 'requests' is not the package" in done.stdout
    assert "Traceback" not in done.stderr
