"""The gate's steps run side by side and still check what they must.

black skips only the files that are byte for byte the runtime portwright ships (those
are checked where they live, and as emitted by tests/test_emitted_format.py); a copy
someone edited is checked like any other file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from generator.gate import _unchanged_copies, run_gate
from generator.generation import Built, build
from generator.loader import load_blueprint

ROOT = Path(__file__).parent.parent
BLUEPRINT = ROOT / "blueprints" / "order_pipeline.yaml"


@pytest.fixture
def built(tmp_path: Path) -> Built:
    text = BLUEPRINT.read_text(encoding="utf-8")
    return build(load_blueprint(BLUEPRINT), text, tmp_path / "project")


def _excluded(project: Path) -> set[str]:
    args = _unchanged_copies(project)
    assert args[0] == "--extend-exclude"
    pattern = re.compile(args[1])
    return {
        p.relative_to(project).as_posix()
        for p in project.rglob("*.py")
        if pattern.search("/" + p.relative_to(project).as_posix())
    }


def test_only_unchanged_copies_are_left_out_of_black(built: Built) -> None:
    copies = {f.path for f in built.plan.files if not f.rendered}
    excluded = _excluded(built.staging)
    assert excluded == {p for p in copies if p.endswith(".py")}
    assert not any(f.rendered for f in built.plan.files if f.path in excluded)
    edited = built.staging / "order_pipeline" / "runtime" / "errors.py"
    edited.write_text(edited.read_text(encoding="utf-8") + "\n# mine\n")
    assert _excluded(built.staging) == excluded - {"order_pipeline/runtime/errors.py"}


def test_black_fails_the_gate_on_an_edited_copy(built: Built) -> None:
    edited = built.staging / "order_pipeline" / "runtime" / "errors.py"
    edited.write_text(
        edited.read_text(encoding="utf-8") + "\nEDITED = 'single quotes'\n"
    )
    seen: list[str] = []
    result = run_gate(built.staging, lambda step: seen.append(step.name))
    assert seen == ["ruff", "black", "import guard", "pytest"]
    assert [s.name for s in result.steps] == seen
    failed = [s for s in result.steps if not s.ok]
    assert [s.name for s in failed] == ["black"], [s.output for s in failed]
    assert "order_pipeline/runtime/errors.py" in failed[0].output
    assert "1 file would be reformatted" in failed[0].output
    assert result.tests_run > 10
