"""Every emitted file is already formatted, with its imports sorted.

``generate`` runs only ``ruff format``, and only on the files rendered from templates:
the templates sort their own imports (ruff's isort never runs), and the runtime files
are copied as they are, formatted where they live. These tests hold both shortcuts to
account on every example, on a blueprint with every kind of guard and on a synthetic
blueprint of every component kind: a template that emits an unsorted import, a
rendered file left unformatted, or a runtime file black would change, fails here.
Black, not ruff, is the judge of the copies, as in the emitted project's own CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import synthetic
from generator.formatting import ruff_command
from generator.generation import Built, build
from generator.loader import load_blueprint
from generator.render import PROJECT, templates_root
from tests.test_generate_security import BLUEPRINT as GUARDED

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted(
    [
        *(ROOT / "blueprints").glob("*.yaml"),
        *(ROOT / "tests" / "blueprints" / "ok").glob("*.yaml"),
        *(ROOT / "tests" / "blueprints" / "warn").glob("*.yaml"),
    ]
)


def _built(blueprint: Path, staging: Path) -> Built:
    text = blueprint.read_text(encoding="utf-8")
    return build(load_blueprint(blueprint), text, staging)


def _python(built: Built, *, rendered: bool) -> list[str]:
    return [
        f.path
        for f in built.plan.files
        if f.path.endswith(".py") and f.rendered == rendered
    ]


def _run(project: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, check=False
    )


def _assert_formatted(built: Built) -> None:
    rendered = _python(built, rendered=True)
    assert rendered
    formatted = _run(
        built.staging, ruff_command("format", "--check", "--no-cache", *rendered)
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    assert f"{len(rendered)} files already formatted" in formatted.stdout
    imports = _run(
        built.staging, ruff_command("check", "--select", "I", "--no-cache", ".")
    )
    assert imports.returncode == 0, imports.stdout + imports.stderr


@pytest.mark.parametrize("blueprint", EXAMPLES, ids=lambda p: p.stem)
def test_examples_are_emitted_formatted_with_sorted_imports(
    blueprint: Path, tmp_path: Path
) -> None:
    _assert_formatted(_built(blueprint, tmp_path / "out"))


def test_every_guard_is_emitted_formatted(tmp_path: Path) -> None:
    source = tmp_path / "notes.yaml"
    source.write_text(GUARDED, encoding="utf-8")
    _assert_formatted(_built(source, tmp_path / "out"))


def test_every_component_kind_is_emitted_formatted(tmp_path: Path) -> None:
    # 8 components make a cell of every kind; 3 more make the chain of the remainder
    blueprint, _ = synthetic.make(11, tmp_path)
    _assert_formatted(_built(blueprint, tmp_path / "out"))


def test_copied_files_are_verbatim_and_black_clean(tmp_path: Path) -> None:
    built = _built(EXAMPLES[0], tmp_path / "out")
    copies = _python(built, rendered=False)
    assert len(copies) > 10
    by_path = {f.path: f for f in built.plan.files}
    for path in copies:
        template = by_path[path].template
        assert template is not None
        source = (templates_root() / PROJECT / template).read_bytes()
        assert built.contents[path].endswith(source), path
        assert (built.staging / path).read_bytes() == built.contents[path], path
    black = _run(built.staging, [sys.executable, "-m", "black", "--check", *copies])
    assert black.returncode == 0, black.stdout + black.stderr


def test_the_checks_catch_an_unsorted_import(tmp_path: Path) -> None:
    project = _built(EXAMPLES[0], tmp_path / "out").staging
    schemas = next(project.glob("*/schemas.py"))
    text = schemas.read_text(encoding="utf-8")
    schemas.write_text(
        text.replace("\nfrom pydantic", "\nimport zlib\nfrom pydantic", 1),
        encoding="utf-8",
    )
    imports = _run(project, ruff_command("check", "--select", "I", "--no-cache", "."))
    assert imports.returncode != 0
