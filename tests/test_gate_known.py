"""The gate takes what the build knows instead of reading it back from the tree.

``generate`` hands it the runtime as shipped and the pyproject it wrote; ``regenerate``
the runtime (its pyproject may hold the user's merged edits: read once); ``portwright
gate DIR``, which has only the folder, reads the pyproject once and renders the
runtime once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from generator import gate, render
from generator.generation import generate
from generator.imports_guard import ProjectImports
from generator.regeneration import regenerate

ROOT = Path(__file__).parent.parent
BLUEPRINT = ROOT / "blueprints" / "order_pipeline.yaml"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every project whose pyproject.toml is read."""
    seen: list[Path] = []
    read = ProjectImports.read

    def counted(project: Path) -> ProjectImports:
        seen.append(project)
        return read(project)

    monkeypatch.setattr(ProjectImports, "read", counted)
    return seen


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every package the gate renders the shipped runtime for."""
    seen: list[str] = []

    def counted(package: str, root: Path | None = None) -> dict[str, bytes]:
        seen.append(package)
        return render.verbatim_files(package, root)

    monkeypatch.setattr(gate, "verbatim_files", counted)
    return seen


def test_generate_hands_its_gate_what_it_built(
    tmp_path: Path, reads: list[Path], renders: list[str]
) -> None:
    done = generate(BLUEPRINT, tmp_path / "p")
    assert done.gate is not None and done.gate.ok
    assert done.gate.tests_run > 10
    assert (reads, renders) == ([], [])


def test_regenerate_reads_the_pyproject_its_gate_judges_once(
    tmp_path: Path, reads: list[Path], renders: list[str]
) -> None:
    project = tmp_path / "p"
    generate(BLUEPRINT, project, gate=False)
    changed = tmp_path / "changed.yaml"
    text = BLUEPRINT.read_text(encoding="utf-8")
    changed.write_text(text.replace("description: ", "description: Newly ", 1))
    done = regenerate(project, changed)
    assert done.gate is not None and done.gate.ok
    assert len(reads) == 1 and reads[0] != project  # the gated copy's
    assert renders == []


def test_a_folder_alone_is_read_once(
    tmp_path: Path, reads: list[Path], renders: list[str]
) -> None:
    project = tmp_path / "p"
    generate(BLUEPRINT, project, gate=False)
    result = gate.run_gate(project)
    assert result.ok
    assert (reads, renders) == ([project], ["order_pipeline"])
