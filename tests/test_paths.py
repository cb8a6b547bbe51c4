"""Whatever a blueprint (or a project folder) says, nothing is written outside ``-o DIR``.

A blueprint decides no path: paths are built from names the loader has validated,
and every write goes through ``writer.target_of``, which refuses ``..``, absolute
paths and symlinks. These tests plant the traps a hostile blueprint or a hostile
project folder could hold and check that portwright refuses them, with a user error,
having written nothing and deleted nothing outside the target.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.errors import BlueprintError, GenerationError
from generator.generation import generate
from generator.loader import load_text
from generator.planner import MANIFEST
from generator.regeneration import regenerate
from tests.cli import run_cli
from tests.treediff import tree

ROOT = Path(__file__).parent.parent
BLUEPRINT = ROOT / "blueprints" / "order_pipeline.yaml"
PACKAGE = "order_pipeline"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the target that must stay exactly as it is."""
    folder = tmp_path / "outside"
    (folder / "pending").mkdir(parents=True)
    (folder / "keep.txt").write_text("mine")
    (folder / "pending" / "keep.txt").write_text("mine too")
    return folder


def untouched(folder: Path) -> bool:
    return tree(folder) == {"keep.txt": b"mine", "pending/keep.txt": b"mine too"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("name", "../escape"),
        ("name", "/etc"),
        ("name", "a/b"),
        ("component", "../../escape"),
        ("component", "x/../../y"),
        ("component", "C:\\\\windows"),
        ("schema", "../Escape"),
    ],
)
def test_a_name_that_is_a_path_is_refused(key: str, value: str) -> None:
    component = value if key == "component" else "api"
    schema = value if key == "schema" else "Msg"
    name = value if key == "name" else "svc"
    text = (
        f"portwright: 1\nname: {json.dumps(name)}\n"
        f"schemas: {{{json.dumps(schema)}: {{fields: {{x: str}}}}}}\n"
        f"components:\n  {json.dumps(component)}: "
        f"{{kind: api_endpoint, route: POST /in, output: {json.dumps(schema)}}}\n"
    )
    with pytest.raises(BlueprintError):
        load_text(text, "paths.yaml")


def test_a_symlink_inside_the_target_is_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.md").write_text("a file the user put here")
    (dest / PACKAGE).symlink_to(outside, target_is_directory=True)

    done = run_cli("generate", str(BLUEPRINT), "-o", str(dest), "--force", "--no-gate")

    assert done.returncode == 2, done.stdout + done.stderr
    assert "symlink" in done.stderr and "Traceback" not in done.stderr
    assert untouched(outside)
    assert sorted(p.name for p in dest.iterdir()) == ["notes.md", PACKAGE]
    assert not list(tmp_path.glob(".out.portwright-*")), "staging left behind"


def test_a_target_that_is_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "out"
    link.symlink_to(outside, target_is_directory=True)

    done = run_cli("generate", str(BLUEPRINT), "-o", str(link), "--force", "--no-gate")

    assert done.returncode == 2
    assert "symlink" in done.stderr
    assert untouched(outside)


def test_a_symlinked_state_folder_is_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    project = tmp_path / "project"
    generate(BLUEPRINT, project, gate=False)
    state = project / ".portwright"
    for path in sorted(state.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    state.rmdir()
    state.symlink_to(outside, target_is_directory=True)

    with pytest.raises(GenerationError, match="symlink"):
        regenerate(project, BLUEPRINT, gate=False)
    with pytest.raises(GenerationError, match="symlink"):
        generate(BLUEPRINT, project, gate=False, force=True)
    assert untouched(outside)


@pytest.mark.parametrize(
    "planted", ["../outside/keep.txt", "/etc/hostname", "a/../../outside/keep.txt"]
)
def test_a_tampered_manifest_cannot_point_outside(
    tmp_path: Path, outside: Path, planted: str
) -> None:
    project = tmp_path / "project"
    generate(BLUEPRINT, project, gate=False)
    manifest = json.loads((project / MANIFEST).read_text())
    # a file portwright "owned" that is no longer planned would be removed
    manifest["files"][planted] = {"owner": "generator", "sha256": "0" * 64}
    (project / MANIFEST).write_text(json.dumps(manifest))
    before = tree(project)

    with pytest.raises(GenerationError, match="outside the project"):
        regenerate(project, BLUEPRINT, gate=False)

    assert untouched(outside)
    assert tree(project) == before
