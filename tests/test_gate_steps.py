"""The gate's steps run side by side and still check what they must.

black skips only the files that are byte for byte the runtime portwright ships (those
are checked where they live, and as emitted by tests/test_emitted_format.py); a copy
someone edited is checked like any other file. The user's files are judged only on
what breaks the service; every step is bounded in time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from generator.gate import Files, _unchanged_copies, run_bounded, run_gate
from generator.generation import Built, build
from generator.loader import load_blueprint
from generator.render import verbatim_files

ROOT = Path(__file__).parent.parent
BLUEPRINT = ROOT / "blueprints" / "order_pipeline.yaml"


@pytest.fixture
def built(tmp_path: Path) -> Built:
    text = BLUEPRINT.read_text(encoding="utf-8")
    return build(load_blueprint(BLUEPRINT), text, tmp_path / "project")


def _excluded(project: Path) -> set[str]:
    return _unchanged_copies(project, verbatim_files("order_pipeline"))


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
    assert seen == [
        "conflicts",
        "ruff",
        "black",
        "your code",
        "import guard",
        "types",
        "pytest",
    ]
    assert [s.name for s in result.steps] == seen
    failed = [s for s in result.steps if not s.ok]
    assert [s.name for s in failed] == ["black"], [s.output for s in failed]
    assert "order_pipeline/runtime/errors.py" in failed[0].output
    assert "1 file would be reformatted" in failed[0].output
    assert result.tests_run > 10


COMPONENT = "order_pipeline/components/score.py"


def test_a_users_own_style_passes_the_gate(built: Built) -> None:
    # single quotes, an unused import, a long line: black and the lint would refuse
    # them in portwright's files; in the user's, they are the user's choice
    user = built.staging / COMPONENT
    text = user.read_text(encoding="utf-8").replace('"""What score does."""', "'x'")
    user.write_text("import os\n" + text + "\nNOTE = 'mine'  " + "#" * 100 + "\n")
    helper = built.staging / "order_pipeline" / "helpers.py"
    helper.write_text("import sys\nX = 'a'\n")
    assert COMPONENT in Files.read(built.staging).users
    result = run_gate(built.staging)
    assert result.ok, [(s.name, s.output) for s in result.steps if not s.ok]


def test_a_user_file_that_breaks_the_service_fails_naming_it(built: Built) -> None:
    user = built.staging / COMPONENT
    user.write_text(user.read_text(encoding="utf-8") + "\nBROKEN = undefined_name\n")
    result = run_gate(built.staging)
    failed = {s.name: s for s in result.steps if not s.ok}
    assert "your code" in failed, [s.summary for s in result.steps]
    summary = failed["your code"].summary
    assert f"your file(s) {COMPONENT} would break the service" in summary
    assert "fix them" in summary
    assert "F821" in failed["your code"].output


def test_conflict_markers_fail_the_gate_naming_file_and_line(built: Built) -> None:
    user = built.staging / COMPONENT
    lines = user.read_text(encoding="utf-8").splitlines()
    lines[3:3] = ["<<<<<<< yours (on disk)", "a", "=======", "b", ">>>>>>> regenerated"]
    user.write_text("\n".join(lines) + "\n")
    result = run_gate(built.staging)
    failed = {s.name: s for s in result.steps if not s.ok}
    assert failed["conflicts"].summary.startswith(f"{COMPONENT}:4: unresolved conflict")


def test_a_hung_test_fails_the_gate_by_name(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTWRIGHT_TEST_TIMEOUT_S", "2")
    (built.staging / "tests" / "test_hang.py").write_text(
        "import time\n\n\ndef test_forever() -> None:\n    time.sleep(3600)\n"
    )
    result = run_gate(built.staging)
    failed = [s for s in result.steps if not s.ok]
    assert [s.name for s in failed] == ["pytest"]
    assert "tests/test_hang.py::test_forever - Failed: Timeout" in failed[0].summary


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie is dead, only not yet reaped


def test_a_step_past_its_limit_is_killed_with_all_it_started(tmp_path: Path) -> None:
    # the step starts a child and both sleep: a hang no per-test timeout would catch
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    done = run_bounded([sys.executable, "-c", script], tmp_path, 2, dict(os.environ))
    assert done.returncode is None
    child = int(done.output.split()[0])
    while _alive(child):  # reaped by init soon after the kill; pytest-timeout bounds it
        os.sched_yield()
