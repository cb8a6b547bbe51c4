"""The import guard's shortcuts find what the slow way finds.

It walks statements only (not every expression) and asks the distribution named like
a module before reading the metadata of every installed distribution; both must give
the verdicts of ``ast.walk`` and ``packages_distributions()``.
"""

from __future__ import annotations

import ast
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from generator.imports_guard import (
    Providers,
    check_imports,
    imported_modules,
    normalize,
)
from generator.writer import write_files

ROOT = Path(__file__).parent.parent

NESTED = """\
import a
if x:
    import b
else:
    from c import d
try:
    import e
except ImportError:
    import f
else:
    import g
finally:
    from . import h
for i in y:
    import j
while z:
    from ..k import m
with w:
    import n
match v:
    case 1:
        import o
class P:
    import q
    def r(self):
        import s
        async def t():
            async with u:
                import uu
            async for _ in u:
                import vv
"""


def _walked(tree: ast.AST) -> list[tuple[int, str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return sorted(found)


def test_imports_at_every_depth_are_found() -> None:
    tree = ast.parse(NESTED)
    found = sorted(imported_modules(tree))
    assert found == _walked(tree)
    assert len(found) == 15  # one per import line above


@pytest.mark.parametrize(
    "folder", ["generator", "bench", "tests", "templates/project/package/runtime"]
)
def test_statement_walk_finds_what_ast_walk_finds(folder: str) -> None:
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_bytes())
        assert sorted(imported_modules(tree)) == _walked(tree), path


def test_providers_agree_with_the_whole_map() -> None:
    whole = packages_distributions()
    providers = Providers()
    for top in ["fastapi", "prometheus_client", "pytest", "_pytest", "yaml", "nope_x"]:
        named = providers.named_like(top)
        if named is not None:  # a shortcut may only say what the whole map says
            assert named in {normalize(d) for d in whole.get(top, [])}, top
        assert providers.all_of(top) == whole.get(top, [])
    assert providers.named_like("prometheus_client") == "prometheus-client"
    assert providers.named_like("_pytest") is None  # shipped by pytest: the map says


PYPROJECT = """\
[project]
name = "shop"
dependencies = ["pyyaml", "prometheus-client"]
"""


def test_a_module_named_unlike_its_distribution_is_judged_by_the_map(
    tmp_path: Path,
) -> None:
    write_files(
        tmp_path,
        {
            "pyproject.toml": PYPROJECT,
            "shop/__init__.py": "",
            "shop/a.py": "import yaml\nimport prometheus_client\n",
            "shop/b.py": "def f():\n    import attr\n",
        },
    )
    violations = check_imports(tmp_path)
    assert [(v.path, v.line) for v in violations] == [("shop/b.py", 2)]
    assert "'attrs'" in violations[0].message
