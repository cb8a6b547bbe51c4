"""The reserved names are what the emitted code really binds, imports and uses.

Each rendered module of every example and of a blueprint with every feature
(``tests/blueprints/probe/every_feature.yaml``) is parsed with ``ast``; every name it
binds or uses, and every module it imports, must be one a blueprint cannot take.
A template that starts using a new name fails here, naming it, until
``generator/names.py`` reserves it (docs/design.md, "Reserved names").
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from generator import names
from generator.blueprint import Blueprint
from generator.loader import load_blueprint
from generator.planner import EMITTED_DEPENDENCIES, EMITTED_TEST_DEPENDENCIES, plan
from generator.render import render_plan, template_names, templates_root

ROOT = Path(__file__).parent.parent
CORPUS = [
    *sorted((ROOT / "blueprints").glob("*.yaml")),
    Path(__file__).parent / "blueprints" / "probe" / "every_feature.yaml",
]


def _own_names(blueprint: Blueprint) -> set[str]:
    """The names the blueprint itself brings (they are checked against the rest)."""
    own = {blueprint.name}
    for schema in blueprint.schemas:
        own.add(schema.name)
        own.update(f.name for f in schema.fields)
    for component in blueprint.components:
        own.add(component.name)
        own.update(names.component_classes(component.name))
    return own


@cache
def _emitted() -> (
    tuple[tuple[Blueprint, frozenset[str], tuple[tuple[str, str], ...]], ...]
):
    root = templates_root()
    out = []
    for path in CORPUS:
        blueprint = load_blueprint(path)
        the_plan = plan(
            blueprint, path.read_text(encoding="utf-8"), template_names(root)
        )
        rendered = frozenset(f.path for f in the_plan.files if f.rendered)
        texts = tuple(sorted(render_plan(the_plan, root).items()))
        out.append((blueprint, rendered, texts))
    return tuple(out)


def _modules() -> Iterator[tuple[Blueprint, str, bool, ast.Module]]:
    for blueprint, rendered, texts in _emitted():
        for path, text in texts:
            if path.endswith(".py"):
                yield blueprint, path, path in rendered, ast.parse(text, path)


def _used(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.alias):
            found.add((node.asname or node.name).split(".")[0])
    return found


def _imported(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_corpus_covers_every_template() -> None:
    used = {path for _b, rendered, _t in _emitted() for path in rendered}
    assert any(p.endswith("/components/probe_score.py") for p in used)
    kinds = {c.kind for b, _r, _t in _emitted() for c in b.components}
    assert kinds == {
        "source", "api_endpoint", "transformer", "filter", "router", "merger", "sink",
        "websocket_out", "websocket_in", "window", "join",
    }  # fmt: skip


def test_every_camel_case_name_the_emitted_code_uses_is_refused_as_a_schema() -> None:
    missing = {
        (name, path)
        for blueprint, path, rendered, tree in _modules()
        if rendered
        for name in _used(tree) - _own_names(blueprint)
        if names.SCHEMA.fullmatch(name) and names.schema_name_problem(name) is None
    }
    assert not missing, f"add these to names.RESERVED_SCHEMAS: {sorted(missing)}"


def test_every_name_the_emitted_schemas_use_is_refused_as_a_field() -> None:
    missing = {
        (name, path)
        for blueprint, path, _rendered, tree in _modules()
        if path.endswith("/schemas.py")
        for name in _used(tree) - _own_names(blueprint)
        if names.FIELD.fullmatch(name) and names.field_name_problem(name) is None
    }
    assert not missing, f"reserve these field names in generator/names.py: {missing}"


def test_every_module_the_emitted_code_imports_is_refused_as_the_service_name() -> None:
    missing = {
        (module, path)
        for blueprint, path, _rendered, tree in _modules()
        for module in _imported(tree) - {blueprint.name}
        if names.service_name_problem(module) is None
    }
    assert not missing, f"add these to names._IMPORTED_MODULES: {sorted(missing)}"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_module_of_a_direct_dependency_is_refused_as_the_service_name() -> None:
    provided: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provided.setdefault(_canonical(dist), set()).add(module)
    wanted = {
        _canonical(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        for requirement in (*EMITTED_DEPENDENCIES, *EMITTED_TEST_DEPENDENCIES)
    }
    if sys.platform == "win32":
        wanted.discard("uvloop")
    missing = {
        (module, dist)
        for dist in wanted
        for module in provided.get(dist, set())
        if module.isidentifier()
        and not module.startswith("_")
        and names.service_name_problem(module) is None
    }
    assert not missing, f"add these to names._DEPENDENCY_MODULES: {sorted(missing)}"


@pytest.mark.parametrize(
    "template",
    sorted(n for n in template_names() if n.startswith("package/components/")),
)
def test_no_component_lands_on_a_file_of_the_components_package(template: str) -> None:
    if template.endswith("component.py.jinja"):
        return
    module = Path(template.removesuffix(".jinja")).stem
    assert names.component_name_problem(module) is not None, module


@pytest.mark.parametrize("name", ["service", "component", "merger", "s_e_r_v_i_c_e"])
def test_a_component_whose_class_the_emitted_code_uses_is_refused(name: str) -> None:
    problem = names.component_name_problem(name)
    assert problem is not None
    assert "shadows a name" in problem or "makes the class" in problem
