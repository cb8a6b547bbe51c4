"""``portwright generate`` end to end: real projects, their real gate, as a user runs it."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from generator import render
from generator.errors import GenerationError
from generator.generation import GateFailed, generate
from generator.imports_guard import check_imports
from generator.writer import Manifest
from tests.cli import generate_gated, run_cli
from tests.hostile import HOSTILE, MARKER_DIR, MARKERS
from tests.treediff import tree

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))


@pytest.mark.parametrize("blueprint", EXAMPLES, ids=[b.stem for b in EXAMPLES])
def test_each_example_generates_and_passes_its_gate(
    blueprint: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    done = run_cli("generate", str(blueprint), "-o", str(dest))
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("ruff", "black", "import guard", "pytest"):
        assert f"ok   {step}" in done.stdout
    assert "gate passed:" in done.stdout
    package = dest / blueprint.stem
    for name in ("schemas.py", "wiring.py", "app.py", "__main__.py", "settings.py"):
        assert (package / name).is_file(), name
    manifest = Manifest.read(dest)
    assert manifest is not None
    assert set(manifest.files) == set(tree(dest)) - {".portwright/manifest.json"}
    owners = {path: owner for path, (owner, _) in manifest.files.items()}
    user_files = sorted(p for p, o in owners.items() if o == "user")
    assert user_files and all(
        p.startswith(f"{blueprint.stem}/components/") for p in user_files
    )
    for path, owner in owners.items():
        if owner == "generator" and path.endswith(".py"):
            assert "portwright owns this file" in (dest / path).read_text(), path
    # nothing but the tree itself: no caches left behind by the gate
    assert not list(dest.rglob("__pycache__"))
    assert not list(tmp_path.glob(".out.portwright-*")), "staging folder left behind"


def test_emitted_tests_hold_the_required_cases(tmp_path: Path) -> None:
    generate(EXAMPLES[0], tmp_path / "p", gate=False)
    names = (tmp_path / "p" / "tests" / "test_patterns.py").read_text()
    for case in (
        "test_transformer_drop",
        "test_ingress_timeout_503",
        "test_message_age",
        "test_sink_concurrent_draining",
        "test_merger_fairness",
    ):
        assert f"def {case}(" in names


def test_a_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.md").write_text("my notes")
    done = run_cli("generate", str(EXAMPLES[0]), "-o", str(dest), "--no-gate")
    assert done.returncode == 2
    assert "portwright did not write it" in done.stderr
    assert [p.name for p in dest.iterdir()] == ["notes.md"]


def test_generating_twice_points_to_regenerate_and_force_keeps_user_code(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "p"
    generate(EXAMPLES[0], dest, gate=False)
    user_file = next((dest / EXAMPLES[0].stem / "components").glob("[!_]*.py"))
    user_file.write_text(user_file.read_text() + "\n# my change\n")
    with pytest.raises(GenerationError, match="portwright regenerate"):
        generate(EXAMPLES[0], dest, gate=False)
    done = generate(EXAMPLES[0], dest, gate=False, force=True)
    assert user_file.read_text().endswith("# my change\n")
    assert user_file.relative_to(dest).as_posix() in done.kept_user_files


def test_a_failing_gate_leaves_the_folder_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real gate failure: a copy of the templates whose emitted tests include one that fails.
    templates = tmp_path / "templates"
    shutil.copytree(render.templates_root(), templates)
    (templates / "project" / "tests" / "test_broken.py").write_text(
        "def test_broken() -> None:\n    assert 1 + 1 == 3\n"
    )
    monkeypatch.setattr(render, "templates_root", lambda: templates)
    monkeypatch.setattr("generator.generation.templates_root", lambda: templates)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(GateFailed) as caught:
        generate(EXAMPLES[0], dest)
    assert not any(dest.iterdir())
    failed = tmp_path / "out.portwright-failed"
    assert str(failed) in str(caught.value)
    assert (failed / "tests" / "test_broken.py").is_file()
    assert [s.name for s in caught.value.result.steps if not s.ok] == ["pytest"]


def hostile_blueprint() -> str:
    def q(text: str) -> str:  # a YAML double-quoted scalar for any text
        out = text.replace("\\", "\\\\").replace('"', '\\"')
        out = "".join(
            (
                ch
                if ch.isprintable()
                else f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}"
            )
            for ch in out
        )
        return f'"{out}"'

    texts = list(HOSTILE)
    lines = [
        "portwright: 1",
        "name: hostile_svc",
        f"description: {q(texts[0])}",
        "defaults:",
        f"  pii_fields: [{', '.join(q(t[:60]) for t in texts[1:4])}]",
        "schemas:",
        "  Msg:",
        f"    description: {q(texts[1])}",
        "    fields:",
    ]
    for index, text in enumerate(texts):
        lines.append(
            f"      f{index}: {{type: str, default: {q(text)}, description: {q(text)}}}"
        )
    lines += [
        '      quoted: {type: str, pattern: "^[\\"\'\\\\\\\\a-z]*$", default: "a\'b"}',
        "components:",
        "  api:",
        "    kind: api_endpoint",
        "    route: POST /in",
        "    output: Msg",
        f"    description: {q(texts[2])}",
        "  keep:",
        "    kind: sink",
        "    input: Msg",
        f"    description: {q(texts[3])}",
        "connections:",
        f"  - {{from: api.out, to: keep.in, description: {q(texts[4])}}}",
    ]
    return "\n".join(lines) + "\n"


def test_hostile_text_generates_a_project_that_passes_its_gate_and_runs_none_of_it(
    tmp_path: Path,
) -> None:
    for marker in MARKERS:
        Path(MARKER_DIR, marker).unlink(missing_ok=True)
    blueprint = tmp_path / "hostile.yaml"
    blueprint.write_text(hostile_blueprint(), encoding="utf-8")
    dest = tmp_path / "out"
    done = run_cli("generate", str(blueprint), "-o", str(dest))
    assert done.returncode == 0, done.stdout + done.stderr
    assert check_imports(dest) == []
    for marker in MARKERS:
        assert not Path(MARKER_DIR, marker).exists(), f"a payload ran: {marker}"
    schemas = (dest / "hostile_svc" / "schemas.py").read_text()
    compile(schemas, "schemas.py", "exec")
    assert "import os" not in schemas.split('"""')[-1].split("class Msg")[0]


LOOP = """\
portwright: 1
name: looper
schemas:
  Job:
    fields:
      job_id: {type: str, max_length: 64}
components:
  api:
    kind: api_endpoint
    route: POST /jobs
    output: Job
  work:
    kind: transformer
    input: Job
    output: Job
  done:
    kind: sink
    input: Job
  never:
    kind: sink
    input: Job
  side:
    kind: transformer
    input: Job
    output: Job
connections:
  - api.out -> work.in
  - {from: work.out, to: work.in, feedback: true}
  - work.out -> done.in
  - side.out -> never.in
  - api.out -> side.in
"""


def test_a_feedback_loop_passes_its_own_gate(tmp_path: Path) -> None:
    # with the default code an item circulates in the loop for ever; the emitted
    # tests must still end, and pass (pytest-timeout bounds this test if they do not)
    blueprint = tmp_path / "loop.yaml"
    blueprint.write_text(LOOP)
    done = run_cli("generate", str(blueprint), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate passed:" in done.stdout


def _paths_exist(text: str, root: Path) -> None:
    """Every path under ``root`` that ``text`` names exists."""
    for named in re.findall(re.escape(str(root)) + r"[^\s:,;'\")]*", text):
        assert Path(named).exists(), f"names a path that is gone: {named}"


def test_force_gates_exactly_the_tree_it_leaves(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    # not Python, but it decides how the project's tests run
    (dest / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    done = run_cli("generate", str(EXAMPLES[0]), "-o", str(dest), "--force")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL pytest" in done.stdout
    assert "the gate failed (pytest)" in done.stderr
    assert [p.name for p in dest.iterdir()] == ["pytest.ini"]
    failed = tmp_path / "out.portwright-failed"
    assert (failed / "pytest.ini").is_file()
    _paths_exist(done.stdout + done.stderr, tmp_path)
    # a user file kept by --force is judged too, by what breaks the service
    (dest / "pytest.ini").unlink()
    component = dest / EXAMPLES[0].stem / "components" / "score.py"
    component.parent.mkdir(parents=True)
    component.write_text("X = undefined_name\n")
    done = run_cli("generate", str(EXAMPLES[0]), "-o", str(dest), "--force")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"your file(s) {EXAMPLES[0].stem}/components/score.py" in done.stdout
    # without it, the next run lands, and removes what the failed one left
    component.unlink()
    done = run_cli("generate", str(EXAMPLES[0]), "-o", str(dest), "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not failed.exists()
    assert run_cli("gate", str(dest)).returncode == 0


@pytest.mark.parametrize("case", ["missing", "invalid", "refused"])
def test_errors_before_the_gate_are_not_printed_under_it(
    case: str, tmp_path: Path
) -> None:
    blueprint = tmp_path / "bp.yaml"
    dest = tmp_path / "out"
    if case == "invalid":
        blueprint.write_text("portwright: 1\nname: Not A Name\n")
    elif case == "refused":
        shutil.copy(EXAMPLES[0], blueprint)
        dest.mkdir()
        (dest / "notes.md").write_text("mine")
    done = run_cli("generate", str(blueprint), "-o", str(dest))
    assert done.returncode == 2
    assert "gate:" not in done.stdout


def test_force_over_an_older_generation_removes_what_it_no_longer_writes(
    tmp_path: Path,
) -> None:
    # README's first command, run again after an upgrade moved a runtime module: the
    # old copy, portwright's and unedited, must not stay behind to fail the gate.
    blueprint = ROOT / "blueprints" / "order_pipeline.yaml"
    dest = tmp_path / "order_pipeline"
    assert (
        run_cli("generate", str(blueprint), "-o", str(dest), "--no-gate").returncode
        == 0
    )
    moved = "order_pipeline/runtime/moved_away.py"
    edited = "order_pipeline/runtime/edited_by_hand.py"
    broken = b'count: int = "not a number"\n'  # fails the gate's type check
    record = json.loads((dest / ".portwright/manifest.json").read_text())
    for path in (moved, edited):
        (dest / path).write_bytes(broken)
        digest = hashlib.sha256(broken).hexdigest()
        record["files"][path] = {"owner": "generator", "sha256": digest}
    (dest / ".portwright/manifest.json").write_text(json.dumps(record))
    (dest / edited).write_bytes(b"count = 1  # kept: someone changed it\n")

    done = run_cli("generate", str(blueprint), "-o", str(dest), "--force")

    assert done.returncode == 0, done.stdout + done.stderr
    assert not (dest / moved).exists()
    assert (dest / edited).read_bytes() == b"count = 1  # kept: someone changed it\n"


NO_USER_CODE = """\
portwright: 1
name: relay
schemas:
  Tick:
    fields:
      symbol: str
      price: float
components:
  api:
    kind: api_endpoint
    route: POST /ticks
    output: Tick
  live:
    kind: websocket_out
    route: /live
    input: Tick
connections:
  - api.out -> live.in
"""


def test_a_blueprint_whose_components_run_no_user_code_passes_its_gate(
    tmp_path: Path,
) -> None:
    """No component to subclass: bases.py holds no class and imports nothing (it
    was a bare 'from .runtime import', which no formatter could read)."""
    project = generate_gated(tmp_path, "relay.yaml", NO_USER_CODE)
    assert "import" not in (project / "relay" / "bases.py").read_text()
