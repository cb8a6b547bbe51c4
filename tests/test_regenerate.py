"""Regenerate after the blueprint changes: scenarios a user lives through.

Each one generates a project, edits user code and a generated file as a person
would, changes the blueprint, regenerates, and checks that every user line survives
and that the gate passes on the result.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator.generation import generate
from tests.treediff import tree, tree_diff

ROOT = Path(__file__).parent.parent
BLUEPRINT = ROOT / "blueprints" / "order_pipeline.yaml"
PKG = "order_pipeline"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("pristine") / "project"
    generate(BLUEPRINT, dest, gate=False)
    return dest


@pytest.fixture
def project(pristine: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(pristine, dest)
    return dest


def cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def drop_component(blueprint: Path, name: str) -> None:
    """Delete a component's whole block (its line and the lines indented under it)."""
    text, count = re.subn(rf"(?m)^  {name}:\n(?:    .*\n)+", "", blueprint.read_text())
    assert count == 1
    blueprint.write_text(text)


def blueprint_of(project: Path) -> Path:
    return project / ".portwright" / "blueprint.yaml"


def user_edits(project: Path) -> dict[Path, str]:
    """Edit two user files and one generated file; the lines that must survive."""
    score = project / PKG / "components" / "score.py"
    edit(
        score,
        "        return self.carry_over(item)",
        "        scored = self.carry_over(item)  # USER: start from the default\n"
        '        return scored.model_copy(update={"risk": min(1.0, item.amount / 1000)})',
    )
    by_risk = project / PKG / "components" / "by_risk.py"
    edit(
        by_risk,
        '        return "high"',
        '        return "high" if item.risk > 0.5 else "low"  # USER: by risk',
    )
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Runbook\n\nUSER: page the on-call.\n")
    return {
        score: "# USER: start from the default",
        by_risk: "# USER: by risk",
        readme: "USER: page the on-call.",
    }


def regenerate_ok(project: Path, *extra: str) -> str:
    done = cli("regenerate", str(project), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_survived(lines: dict[Path, str]) -> None:
    for path, line in lines.items():
        assert line in path.read_text(), f"lost from {path}: {line}"


def test_add_a_component_and_connect_it(project: Path) -> None:
    lines = user_edits(project)
    edit(
        blueprint_of(project),
        "  by_risk:\n",
        "  audit:\n    kind: sink\n    input: Order\n  by_risk:\n",
    )
    edit(
        blueprint_of(project),
        "connections:\n",
        "connections:\n  - orders_api.out -> audit.in\n",
    )
    out = regenerate_ok(project)
    assert f"add       {PKG}/components/audit.py" in out
    assert "gate" not in out or "FAIL" not in out
    assert_survived(lines)
    assert (
        "class Audit(AuditBase)"
        in (project / PKG / "components" / "audit.py").read_text()
    )
    assert (
        cli("check", str(project)).stdout.count("differs") == 1
    )  # only the README the user edited


def test_remove_components_edited_and_not(project: Path) -> None:
    lines = user_edits(project)
    bp = blueprint_of(project)
    # ledger (unedited) and by_risk (edited) go; review_queue takes what by_risk had
    drop_component(bp, "by_risk")
    drop_component(bp, "ledger")
    edit(
        bp,
        "  - score.out -> by_risk.in\n  - by_risk.high -> review_queue.in\n  - {from: by_risk.low, to: ledger.accepted, buffer_size: 64, overflow: drop_oldest}\n",
        "  - score.out -> review_queue.in\n",
    )
    out = regenerate_ok(project)
    assert f"orphan    {PKG}/components/by_risk.py" in out
    assert f"remove    {PKG}/components/ledger.py" in out
    assert not (project / PKG / "components" / "by_risk.py").exists()
    assert not (project / PKG / "components" / "ledger.py").exists()
    orphan = project / ".portwright" / "orphans" / PKG / "components" / "by_risk.py"
    assert "# USER: by risk" in orphan.read_text()
    del lines[project / PKG / "components" / "by_risk.py"]
    assert_survived(lines)


def test_rename_a_component_keeps_its_user_file(project: Path) -> None:
    lines = user_edits(project)
    bp = blueprint_of(project)
    edit(
        bp,
        "  score:\n    kind: transformer",
        "  rate:\n    renamed_from: score\n    kind: transformer",
    )
    edit(bp, "orders_api.out -> score.in", "orders_api.out -> rate.in")
    edit(bp, "score.out -> by_risk.in", "rate.out -> by_risk.in")
    out = regenerate_ok(project)
    assert f"rename    {PKG}/components/rate.py (from {PKG}/components/score.py)" in out
    renamed = (project / PKG / "components" / "rate.py").read_text()
    assert "# USER: start from the default" in renamed
    assert "class Rate(RateBase)" in renamed
    assert not (project / PKG / "components" / "score.py").exists()
    del lines[project / PKG / "components" / "score.py"]  # moved, checked above
    assert_survived(lines)


def test_add_a_field_to_a_schema(project: Path) -> None:
    lines = user_edits(project)
    edit(
        blueprint_of(project),
        "      event_time: datetime",
        "      event_time: datetime\n      channel: {type: str, max_length: 16, default: web}",
    )
    regenerate_ok(project)
    assert_survived(lines)
    assert (
        'channel: str = Field(default="web", max_length=16)'
        in (project / PKG / "schemas.py").read_text()
    )


def test_add_an_output_to_a_router_leaves_the_user_file_alone(project: Path) -> None:
    lines = user_edits(project)
    before = (project / PKG / "components" / "by_risk.py").read_bytes()
    bp = blueprint_of(project)
    edit(
        bp,
        "outputs: {high: ScoredOrder, low: ScoredOrder}",
        "outputs: {high: ScoredOrder, low: ScoredOrder, medium: ScoredOrder}",
    )
    edit(
        bp,
        "    inputs: {accepted: ScoredOrder}",
        "    inputs: {accepted: ScoredOrder, review: ScoredOrder}",
    )
    edit(bp, "connections:\n", "connections:\n  - by_risk.medium -> ledger.review\n")
    regenerate_ok(project)
    assert_survived(lines)
    assert (project / PKG / "components" / "by_risk.py").read_bytes() == before
    assert (
        'Literal["high", "low", "medium"]' in (project / PKG / "bases.py").read_text()
    )


def test_change_a_connections_buffer_and_overflow(project: Path) -> None:
    lines = user_edits(project)
    edit(
        blueprint_of(project),
        "buffer_size: 64, overflow: drop_oldest",
        "buffer_size: 8, overflow: drop_newest",
    )
    regenerate_ok(project, "--no-gate")
    assert_survived(lines)
    assert (
        '("by_risk.low", "ledger.accepted", 8, "drop_newest", "memory", None, None, None)'
        in (project / PKG / "wiring.py").read_text()
    )
    backup = project / ".portwright" / "backup" / PKG / "wiring.py"
    assert '"ledger.accepted", 64, "drop_oldest"' in backup.read_text()


def test_a_conflicting_edit_writes_markers_and_exits_non_zero(project: Path) -> None:
    bp = blueprint_of(project)
    schemas = project / PKG / "schemas.py"
    edit(
        schemas,
        "    risk: float = Field(ge=0, le=1)",
        "    risk: float = Field(ge=0, le=1)  # USER: tuned by hand",
    )
    edit(bp, "risk: {type: float, ge: 0, le: 1}", "risk: {type: float, ge: 0, le: 100}")
    done = cli("regenerate", str(project))
    assert done.returncode == 1
    assert f"{PKG}/schemas.py" in done.stderr
    text = schemas.read_text()
    assert "<<<<<<< yours (on disk)" in text and ">>>>>>> regenerated" in text
    assert "# USER: tuned by hand" in text


def test_an_unchanged_blueprint_changes_nothing(project: Path) -> None:
    user_edits(project)
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in project.rglob("*")
        if p.is_file()
    }
    out = regenerate_ok(project)
    assert "up to date: nothing changed" in out
    after = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in project.rglob("*")
        if p.is_file()
    }
    assert after == before


def test_dry_run_writes_nothing_and_says_what_would_happen(project: Path) -> None:
    edit(blueprint_of(project), "buffer_size: 64", "buffer_size: 65")
    before = tree(project)
    done = cli("regenerate", str(project), "--dry-run")
    assert done.returncode == 0
    assert f"change    {PKG}/wiring.py" in done.stdout
    assert "nothing written" in done.stdout
    assert tree(project) == before


def test_check_catches_drift_and_passes_after_regenerate(project: Path) -> None:
    assert cli("check", str(project)).returncode == 0
    edit(blueprint_of(project), "timeout_ms: 500", "timeout_ms: 750")
    done = cli("check", str(project), "--diff")
    assert done.returncode == 1
    assert f"{PKG}/wiring.py: differs" in done.stdout
    assert "timeout_ms=750" in done.stdout
    regenerate_ok(project, "--no-gate")
    assert cli("check", str(project)).returncode == 0


def test_a_failing_gate_leaves_the_project_as_it_was(project: Path) -> None:
    # A user file that breaks the service: the gate must refuse the update.
    score = project / PKG / "components" / "score.py"
    score.write_text(score.read_text() + "\nBROKEN = undefined_name\n")
    edit(blueprint_of(project), "buffer_size: 64", "buffer_size: 65")
    before = tree(project)
    done = cli("regenerate", str(project))
    assert done.returncode == 1  # a check that ran and failed
    assert "the gate failed (your code" in done.stderr
    assert f"your file(s) {PKG}/components/score.py would break the service" in (
        done.stdout
    )
    assert "F821" in done.stdout
    assert tree(project) == before
    failed = project.parent / "project.portwright-failed"
    assert str(failed) in done.stderr and failed.is_dir()
    # fixed, the next run lands and removes what the failed one left
    score.write_text(score.read_text().replace("undefined_name", "1"))
    regenerate_ok(project)
    assert not failed.exists()


def test_dry_run_predicts_a_failing_gate(project: Path) -> None:
    score = project / PKG / "components" / "score.py"
    score.write_text(score.read_text() + "\nBROKEN = undefined_name\n")
    edit(blueprint_of(project), "buffer_size: 64", "buffer_size: 65")
    before = tree(project)
    done = cli("regenerate", str(project), "--dry-run")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL your code" in done.stdout
    assert "dry run: nothing written" in done.stderr
    assert tree(project) == before
    assert not (project.parent / "project.portwright-failed").exists()
    for line in (done.stdout + done.stderr).split():
        if line.startswith(str(project.parent)):
            assert Path(line.rstrip(":;,)")).exists(), line


def test_a_users_own_formatting_does_not_block_regenerate(project: Path) -> None:
    score = project / PKG / "components" / "score.py"
    score.write_text(score.read_text().replace('"""What score does."""', "'mine'"))
    edit(blueprint_of(project), "buffer_size: 64", "buffer_size: 65")
    out = regenerate_ok(project)
    assert f"change    {PKG}/wiring.py" in out
    assert "'mine'" in score.read_text()


def test_conflict_markers_fail_check_gate_and_regenerate(project: Path) -> None:
    by_risk = project / PKG / "components" / "by_risk.py"
    edit(by_risk, '        return "high"', '        return "low"  # USER: all low')
    bp = blueprint_of(project)
    edit(
        bp,
        "outputs: {high: ScoredOrder, low: ScoredOrder}",
        "outputs: {urgent: ScoredOrder, low: ScoredOrder}",
    )
    edit(bp, "by_risk.high -> review_queue.in", "by_risk.urgent -> review_queue.in")
    done = cli("regenerate", str(project))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{PKG}/components/by_risk.py" in done.stderr
    line = by_risk.read_text().splitlines().index("<<<<<<< yours (on disk)") + 1
    where = f"{PKG}/components/by_risk.py:{line}: unresolved conflict"
    checked = cli("check", str(project))
    assert checked.returncode == 1
    assert where in checked.stdout
    gated = cli("gate", str(project))
    assert gated.returncode == 1
    assert where in gated.stdout
    again = cli("regenerate", str(project))
    assert again.returncode == 1
    assert f"{project}/{where}" in again.stderr


def test_an_interrupted_regeneration_leaves_a_whole_tree(
    project: Path, tmp_path: Path
) -> None:
    user_edits(project)
    edit(blueprint_of(project), "timeout_ms: 500", "timeout_ms: 750")
    edit(
        blueprint_of(project),
        "      event_time: datetime",
        "      event_time: datetime\n      note: {type: str, default: x}",
    )
    expected = tmp_path / "expected"
    shutil.copytree(project, expected)
    assert cli("regenerate", str(expected), "--no-gate").returncode == 0
    before = tree(project)
    # Pause between the file moves, and kill the run while it makes them.
    process = subprocess.Popen(
        [sys.executable, "-m", "generator", "regenerate", str(project), "--no-gate"],
        env={**os.environ, "PORTWRIGHT_APPLY_PAUSE_S": "0.3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = project / ".portwright" / "journal.json"
    deadline = time.monotonic() + 60
    while (
        not journal.exists() and process.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert journal.exists(), "the run was not caught in the middle of its moves"
    assert tree(project) != before  # it was half-way
    # Any later portwright command on the project completes the interrupted run.
    done = cli("regenerate", str(project), "--no-gate")
    assert "completed a regeneration that had been interrupted" in done.stdout
    ignore = {".portwright/backup"}
    got = {
        p: d
        for p, d in tree(project).items()
        if not any(p.startswith(i) for i in ignore)
    }
    want = {
        p: d
        for p, d in tree(expected).items()
        if not any(p.startswith(i) for i in ignore)
    }
    assert got == want, tree_diff(expected, project)
