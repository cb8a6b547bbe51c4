"""Every loader rule, pinned by a blueprint under ``tests/blueprints/`` that breaks it.

Each fixture ends with what portwright must report for it, one problem a line, in the
order the user sees them::

    # error: 13: components.store.kind: unknown kind 'sinkk' (did you mean 'sink'?); ...
    # warning: 9: schemas.Draft: schema 'Draft' is not used by any port

``bad/`` files must fail with exactly their ``# error:`` lines; ``warn/`` and ``ok/``
files must load with exactly their ``# warning:`` lines (none for ``ok/``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from generator.errors import BlueprintError, Problem
from generator.loader import load_blueprint

FIXTURES = Path(__file__).parent / "blueprints"
EXAMPLES = Path(__file__).parent.parent / "blueprints"


def _cases(folder: str) -> list[Path]:
    return sorted((FIXTURES / folder).glob("*.yaml"))


def _expected(path: Path, marker: str) -> list[str]:
    prefix = f"# {marker}: "
    return [
        f"{path.name}:{line.removeprefix(prefix)}"
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(prefix)
    ]


def _neutral(message: str) -> str:
    """Syntax errors are worded by libyaml; without it only their line is compared."""
    head, marker, _ = message.partition(": invalid YAML: ")
    return head + marker if marker and not hasattr(yaml, "CSafeLoader") else message


def _load(path: Path) -> object:
    try:
        return load_blueprint(path, path.name)
    except BlueprintError as exc:
        return exc


@pytest.mark.parametrize("path", _cases("bad"), ids=lambda p: p.stem)
def test_bad_blueprint_reports_exactly_its_problems(path: Path) -> None:
    expected = _expected(path, "error")
    assert expected, f"{path.name} says nothing about what it should report"

    result = _load(path)

    assert isinstance(result, BlueprintError), f"{path.name} loaded"
    actual = [str(p) for p in result.problems]
    assert [_neutral(m) for m in actual] == [_neutral(m) for m in expected]
    assert str(result) == "\n".join(actual)


@pytest.mark.parametrize("path", _cases("warn") + _cases("ok"), ids=lambda p: p.stem)
def test_valid_blueprint_loads_with_exactly_its_warnings(path: Path) -> None:
    result = _load(path)

    assert not isinstance(result, BlueprintError), str(result)
    warnings = [str(w) for w in result.warnings]  # type: ignore[attr-defined]
    assert warnings == _expected(path, "warning")
    assert (path.parent.name == "warn") == bool(warnings)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_load_cleanly(path: Path) -> None:
    result = _load(path)

    assert not isinstance(result, BlueprintError), str(result)
    assert result.warnings == ()  # type: ignore[attr-defined]


def _all_problems() -> list[Problem]:
    problems: list[Problem] = []
    for path in _cases("bad"):
        try:
            load_blueprint(path, path.name)
        except BlueprintError as exc:
            problems.extend(exc.problems)
    return problems


# Problems about the file as a whole (it is not a blueprint at all) have no key.
_WHOLE_FILE = ("file ", "invalid YAML", "a blueprint is a mapping")


def test_every_problem_names_file_line_and_key() -> None:
    problems = _all_problems()

    assert len(problems) > 150
    for problem in problems:
        assert problem.file.endswith(".yaml")
        assert problem.line >= 1
        assert problem.key or problem.message.startswith(_WHOLE_FILE), problem
        assert "\n" not in problem.message
        assert "Traceback" not in problem.message
        # pydantic's own wording and links must not leak through
        assert "pydantic.dev" not in problem.message
        assert "[type=" not in problem.message


def test_several_problems_come_together_sorted_by_line() -> None:
    path = FIXTURES / "bad" / "several_errors.yaml"

    with pytest.raises(BlueprintError) as caught:
        load_blueprint(path, path.name)

    lines = [p.line for p in caught.value.problems]
    assert len(lines) == 5
    assert lines == sorted(lines)
    # the problems come from every stage of the checks: fields, ports, connections
    keys = [p.key for p in caught.value.problems]
    assert keys[0].startswith("schemas.") and keys[-1].startswith("connections")


def test_messages_name_the_path_given_and_a_typo_is_reported_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text("portwright: 1\nname: shop\ncomponent: {}\n", encoding="utf-8")

    with pytest.raises(BlueprintError) as caught:
        load_blueprint(path)

    # not also "missing required key 'components'": the hint already says it
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3: component: unknown key 'component' (did you mean 'components'?)",
    ]
