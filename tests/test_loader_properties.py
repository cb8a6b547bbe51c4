"""Whatever a user's editor leaves in a file, the loader answers with a Blueprint or a
BlueprintError (never a crash), quickly, and every problem fits on one line.

The inputs start from the example blueprints and break them: keys deleted, renamed or
given random values, random unicode inserted, lines dropped, the text truncated.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.blueprint import Blueprint
from generator.errors import BlueprintError
from generator.loader import load_text

EXAMPLES = sorted((Path(__file__).parent.parent / "blueprints").glob("*.yaml"))
TEXTS = [path.read_text(encoding="utf-8") for path in EXAMPLES]
DATA = [yaml.safe_load(text) for text in TEXTS]
NAME = "fuzz.yaml"

FUZZ = settings(
    max_examples=120,
    deadline=1000,  # ms per example; a load takes a few
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values a blueprint's keys could plausibly hold, and some they never should.
WORDS = st.sampled_from(
    [
        "in", "out", "errors", "ErrorRecord", "Order", "Reading", "Alert", "block",
        "drop_oldest", "POST /x", "GET /", "a.out -> b.in", "list[str]", "int | None",
        "list[", "sink", "merger", "api_endpoint", "", " ", "None", "dict", "class",
        "feedback", "__init__", "model_dump", "../../etc", "'; import os; '",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    WORDS,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(WORDS, st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=12,
)


def _check(text: str) -> None:
    """The property: a Blueprint or a BlueprintError, with sane problems."""
    try:
        result = load_text(text, NAME)
    except BlueprintError as exc:
        assert exc.problems, "a BlueprintError must say what is wrong"
        problems = exc.problems
    else:
        assert isinstance(result, Blueprint)
        problems = result.warnings
    last_line = len(text.splitlines()) + 1  # YAML also breaks lines at \r, \x85, \u2028
    for problem in problems:
        assert problem.file == NAME
        assert 1 <= problem.line <= last_line, problem
        assert "\n" not in str(problem), problem


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_data(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(draw(st.sampled_from(DATA)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["delete", "replace", "rename", "copy"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(VALUES)
        elif action == "rename" and isinstance(parent, dict):
            new_key = draw(st.one_of(WORDS, st.text(min_size=1, max_size=10), SCALARS))
            parent[new_key] = parent.pop(key)
        elif action == "copy":  # a valid piece of blueprint, in the wrong place
            other = draw(st.sampled_from(_paths(data)))
            piece: Any = data
            for part in other:
                piece = piece[part]
            parent[key] = copy.deepcopy(piece)
    return data


@FUZZ
@given(mutated_data())
def test_mutated_blueprints_load_or_fail_cleanly(data: Any) -> None:
    _check(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


@FUZZ
@given(st.sampled_from(TEXTS), st.data())
def test_edited_text_loads_or_fails_cleanly(text: str, data: st.DataObject) -> None:
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        action = data.draw(st.sampled_from(["insert", "drop", "replace", "swap"]))
        at = data.draw(st.integers(min_value=0, max_value=max(len(lines) - 1, 0)))
        if action == "insert":
            line = lines[at] if lines else ""
            cut = data.draw(st.integers(min_value=0, max_value=len(line)))
            lines[at : at + 1] = [
                line[:cut] + data.draw(st.text(max_size=20)) + line[cut:]
            ]
        elif action == "drop" and lines:
            del lines[at]
        elif action == "replace" and lines:
            lines[at] = data.draw(st.text(max_size=40)) + "\n"
        elif action == "swap" and len(lines) > 1:
            other = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
    _check("".join(lines))


@FUZZ
@given(st.sampled_from(TEXTS), st.data())
def test_truncated_text_loads_or_fails_cleanly(text: str, data: st.DataObject) -> None:
    _check(text[: data.draw(st.integers(min_value=0, max_value=len(text)))])


@FUZZ
@given(VALUES)
def test_any_yaml_value_loads_or_fails_cleanly(value: Any) -> None:
    _check(yaml.safe_dump(value, allow_unicode=True))


@FUZZ
@given(st.text(max_size=300))
def test_any_text_loads_or_fails_cleanly(text: str) -> None:
    _check(text)
