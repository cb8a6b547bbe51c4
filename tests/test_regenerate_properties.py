"""Random sequences of blueprint edits never lose a line the user wrote."""

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.drift import check_project
from generator.generation import generate
from generator.regeneration import regenerate

ROOT = Path(__file__).parent.parent
PKG = "order_pipeline"
EDITS = st.lists(
    st.sampled_from(
        [
            "add_field",
            "add_sink",
            "remove_sink",
            "rename_sink",
            "router_output",
            "buffer",
        ]
    ),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("pristine") / "project"
    generate(ROOT / "blueprints" / "order_pipeline.yaml", dest, gate=False)
    return dest


def apply_edit(bp: dict[str, Any], edit: str, step: int, added: list[str]) -> None:
    """One edit a user might make; ``added`` holds the sinks earlier edits added."""
    components = bp["components"]
    if edit in ("remove_sink", "rename_sink") and not added:
        edit = "add_sink"
    if edit == "add_field":
        bp["schemas"]["Order"]["fields"][f"extra_{step}"] = {
            "type": "str",
            "default": "x",
        }
    elif edit == "add_sink":
        components[f"sink_{step}"] = {"kind": "sink", "input": "ScoredOrder"}
        bp["connections"].append(f"score.out -> sink_{step}.in")
        added.append(f"sink_{step}")
    elif edit == "remove_sink":
        name = added.pop(0)
        del components[name]
        bp["connections"] = [c for c in bp["connections"] if f"{name}." not in str(c)]
    elif edit == "rename_sink":
        old, new = added.pop(0), f"renamed_{step}"
        components[new] = {**components.pop(old), "renamed_from": old}
        bp["connections"] = [
            c.replace(f"{old}.", f"{new}.") if isinstance(c, str) else c
            for c in bp["connections"]
        ]
        added.append(new)
    elif edit == "router_output":
        components["by_risk"]["outputs"][f"lane_{step}"] = "ScoredOrder"
    elif edit == "buffer":
        bp["connections"][3]["buffer_size"] = 8 + step


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=EDITS)
def test_edit_sequences_keep_every_user_line(
    pristine: Path, tmp_path_factory: pytest.TempPathFactory, edits: list[str]
) -> None:
    project = tmp_path_factory.mktemp("sequence") / "project"
    shutil.copytree(pristine, project)
    blueprint = project / ".portwright" / "blueprint.yaml"
    bp = yaml.safe_load(blueprint.read_text())
    added: list[str] = []
    marks: list[str] = []
    for step, edit in enumerate(edits):
        for path in sorted((project / PKG / "components").glob("[!_]*.py")):
            mark = f"# USER MARK {path.stem} {step}"  # the user works on every file
            path.write_text(path.read_text() + f"\n{mark}\n")
            marks.append(mark)
        apply_edit(bp, edit, step, added)
        blueprint.write_text(yaml.safe_dump(bp, sort_keys=False))
        done = regenerate(project, gate=False)
        assert not done.plan.conflicts, done.plan.conflicts
    kept = "".join(p.read_text() for p in project.rglob("*.py"))
    lost = [mark for mark in marks if mark not in kept]
    assert not lost, f"lost after {edits}: {lost}"
    for path in (project / PKG / "components").glob("*.py"):
        compile(path.read_text(), str(path), "exec")
    assert check_project(project) == []
