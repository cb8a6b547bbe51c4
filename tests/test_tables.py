"""The kinds and scalar tables are the one place a kind's or a type's facts live.

Each test changes a row (or adds one) and checks that the loader, the planner, the
examples and the templates all follow, with no other edit: a template or a rule that
still asked "which kind is this?" or listed the types itself would not follow.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

from generator import kinds, scalars, values
from generator.errors import BlueprintError
from generator.field_types import parse_type
from generator.generation import build
from generator.loader import load_text
from generator.model import COMPONENT_MODELS, KINDS
from generator.resolve import default_checker

ROOT = Path(__file__).parent.parent
RUNTIME_INIT = ROOT / "templates" / "project" / "package" / "runtime" / "__init__.py"

PIPELINE = """\
portwright: 1
name: tables
schemas:
  Item:
    fields: {item_id: str, at: %s}
components:
  api: {kind: api_endpoint, route: POST /items, output: Item}
  check: {kind: filter, input: Item, output: Item}
  store: {kind: sink, input: Item}
connections:
  - api.out -> check.in
  - check.out -> store.in
"""


def _runtime_exports() -> set[str]:
    tree = ast.parse(RUNTIME_INIT.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return {ast.literal_eval(e) for e in node.value.elts}  # type: ignore[attr-defined]
    raise AssertionError("the runtime has no __all__")


def test_every_kind_of_the_format_has_one_row_and_a_runtime_class() -> None:
    assert tuple(kinds.COMPONENT_KINDS) == KINDS == tuple(COMPONENT_MODELS)
    exported = _runtime_exports()
    for kind in kinds.COMPONENT_KINDS.values():
        assert kind.runtime_class in exported, kind.name


def _render(text: str, tmp_path: Path) -> dict[str, str]:
    built = build(load_text(text, "tables.yaml"), text, tmp_path / "project")
    return {path: content.decode() for path, content in built.contents.items()}


def test_a_kinds_method_is_printed_as_its_row_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filter_kind = kinds.COMPONENT_KINDS["filter"]
    assert filter_kind.method is not None
    changed = dataclasses.replace(
        filter_kind,
        method=dataclasses.replace(
            filter_kind.method,
            name="admit",
            body=("return bool($inputs)",),
            user_doc="Admit ``item`` or not.",
        ),
    )
    monkeypatch.setitem(kinds.COMPONENT_KINDS, "filter", changed)
    files = _render(PIPELINE % "str", tmp_path)
    user = files["tables/components/check.py"]
    assert "    def admit(self, item: Item) -> bool:\n" in user
    assert '"""Admit ``item`` or not."""\n        return bool(Item)\n' in user
    bases = files["tables/bases.py"]
    assert "def admit(self, item: Item) -> bool | Awaitable[bool]:" in bases
    assert "def keep(" not in bases + user


def test_a_kinds_port_rule_is_what_validate_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two_outputs = (
        (PIPELINE % "str")
        .replace(
            "check: {kind: filter, input: Item, output: Item}",
            "check: {kind: filter, input: Item, outputs: {a: Item, b: Item}}",
        )
        .replace("check.out -> store.in", "check.a -> store.in")
    )
    with pytest.raises(BlueprintError, match="a filter has exactly one output"):
        load_text(two_outputs, "tables.yaml")
    rule = kinds.Ports(1, None, "'outputs'")
    monkeypatch.setitem(
        kinds.COMPONENT_KINDS,
        "filter",
        dataclasses.replace(kinds.COMPONENT_KINDS["filter"], outputs=rule),
    )
    blueprint = load_text(two_outputs, "tables.yaml")
    assert [p.name for p in blueprint.component("check").outputs] == ["a", "b"]


def test_the_scalar_rows_agree_with_the_models_that_check_them() -> None:
    for scalar in scalars.SCALARS.values():
        ref = parse_type(scalar.name)
        checker = default_checker(ref, ())
        assert checker is not None, scalar.name
        checker.validate_python(
            checker.validate_json(_json(scalar.example({})), strict=False)
        )
        for wrong in scalar.rejected:
            with pytest.raises(ValueError):
                checker.validate_json(_json(wrong), strict=False)


def _json(value: object) -> str:
    return json.dumps(value)


TIME = scalars.Scalar(
    "time",
    "time",
    (("datetime", "time"),),
    datetime.time,
    values.fixed("03:04:05"),
    ("not-a-time",),
    (),
)


def test_a_new_scalar_type_is_one_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = PIPELINE % "time"
    with pytest.raises(BlueprintError, match="unknown type 'time'"):
        load_text(text, "tables.yaml")
    monkeypatch.setitem(scalars.SCALARS, "time", TIME)
    files = _render(text, tmp_path)
    models = files["tables/schemas.py"]
    assert "from datetime import time\n" in models
    assert "    at: time\n" in models
    assert "not-a-time" in files["tests/test_schemas.py"]
    with pytest.raises(BlueprintError, match="'time' shadows the type of that name"):
        load_text(text.replace("at: time", "time: time"), "t.yaml")
    with pytest.raises(BlueprintError, match="constraint 'max_length' does not apply"):
        load_text(text.replace("at: time", "at: {type: time, max_length: 3}"), "t.yaml")
    # the emitted project's own schema tests prove the example and the refusal
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_schemas.py"],
        cwd=tmp_path / "project",
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout


def test_the_format_docs_name_every_scalar_type() -> None:
    docs = (ROOT / "docs" / "blueprint.md").read_text(encoding="utf-8")
    for name in scalars.SCALARS:
        assert f"`{name}`" in docs, name
