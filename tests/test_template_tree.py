"""What counts as a template: every file under templates/project but what tools leave."""

from __future__ import annotations

import shutil
from pathlib import Path

from generator.render import template_names, templates_root


def test_caches_left_in_the_template_tree_are_not_templates(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(templates_root(), root)
    package = root / "project" / "package"
    litter = [
        package / "__pycache__" / "x.cpython-311.pyc",
        package / ".mypy_cache" / "3.11" / "cache.db",
        package / "runtime" / ".grimp_cache" / "meta.json",
        root / "project" / ".pytest_cache" / "README.md",
        root / "project" / ".ruff_cache" / "CACHEDIR.TAG",
        root / "project" / "tests" / ".hypothesis" / "examples" / "x",
        package / "runtime" / "stale.pyc",
    ]
    for path in litter:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by a tool")
    names = template_names(root)
    assert names == template_names(templates_root())
    assert ".github/workflows/ci.yml.jinja" in names  # a hidden folder that is ours
    assert ".gitignore" in names
