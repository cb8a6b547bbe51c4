"""The gate's type check: pyrefly over the whole project, its errors by file and line.

The blueprint types every message, the emitted schemas and base classes carry those
types, and pyrefly (strict, configured in the emitted ``pyproject.toml``) holds the
user's code to them: a misspelt field, a wrong return type, a coroutine never awaited.
Where the mistake is a misspelt field of a blueprint schema, the error names the field
it probably meant. Why pyrefly and not mypy, pyright or ty: docs/design.md.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PortwrightError
from .loader import load_blueprint
from .planner import BLUEPRINT_COPY

#: pyrefly's own hint, in the long description of a missing attribute
_HINT_START = "Did you mean `"
#: the errors whose subject may be a blueprint schema's field
_ATTRIBUTE_PREFIX = "Object of class `"
_KEYWORD_PREFIX = "Unexpected keyword argument `"


@dataclass(frozen=True)
class TypeProblem:
    """One error of the type check."""

    path: str  # relative to the project, POSIX
    line: int
    message: str
    rule: str
    #: the schema field the code probably meant (a misspelt name), if any
    suggestion: str | None = None

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.message} [{self.rule}]"
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


def pyrefly_binary() -> str:
    """This interpreter's pyrefly (the binary itself, not ``python -m pyrefly``)."""
    from pyrefly.__main__ import get_pyrefly_bin

    return str(get_pyrefly_bin())


def typecheck_command() -> list[str]:
    """How the gate starts the check: errors only, as JSON, against this interpreter.

    The project's ``[tool.pyrefly]`` says what is checked and how strictly; the
    interpreter is the one the emitted tests run in, so both see the same packages.
    """
    return [
        pyrefly_binary(),
        "check",
        "--python-interpreter-path",
        sys.executable,
        "--output-format",
        "json",
        "--min-severity",
        "error",
    ]


def schema_fields(project: Path) -> dict[str, tuple[str, ...]]:
    """Each schema of the project's blueprint, with its fields' names.

    A blueprint copy that no longer loads gives none: the suggestions are a help,
    the errors stand without them.
    """
    try:
        blueprint = load_blueprint(project / BLUEPRINT_COPY)
    except (PortwrightError, OSError):
        return {}
    return {s.name: tuple(f.name for f in s.fields) for s in blueprint.schemas}


def parse(output: str, fields: Mapping[str, tuple[str, ...]]) -> list[TypeProblem]:
    """The errors of pyrefly's JSON report; ``ValueError`` if it is not one."""
    report = json.loads(output)
    if not isinstance(report, dict) or not isinstance(report.get("errors"), list):
        raise ValueError("not a pyrefly JSON report")
    problems = [_problem(error, fields) for error in report["errors"]]
    return sorted(problems, key=lambda p: (p.path, p.line, p.message))


def _problem(
    error: Mapping[str, Any], fields: Mapping[str, tuple[str, ...]]
) -> TypeProblem:
    concise = str(error.get("concise_description") or error.get("description", ""))
    description = str(error.get("description", concise))
    return TypeProblem(
        Path(str(error["path"])).as_posix(),
        int(error["line"]),
        concise.splitlines()[0] if concise else "",
        str(error.get("name", "error")),
        _suggestion(description, fields),
    )


def _quoted(text: str, prefix: str) -> str | None:
    """The name between backticks right after ``prefix`` in ``text``."""
    start = text.find(prefix)
    if start < 0:
        return None
    rest = text[start + len(prefix) :]
    end = rest.find("`")
    return rest[:end] if end > 0 else None


def _suggestion(description: str, fields: Mapping[str, tuple[str, ...]]) -> str | None:
    """The field a misspelt attribute or keyword of a blueprint schema probably meant."""
    hinted = _quoted(description, _HINT_START)
    if hinted:
        return hinted
    name = _quoted(description, _ATTRIBUTE_PREFIX)
    used = _quoted(description, "has no attribute `")
    if name is None or used is None:
        used = _quoted(description, _KEYWORD_PREFIX)
        function = _quoted(description, "in function `") or ""
        # a schema's constructor: ``package.schemas.Order.__init__``
        name = function.removesuffix(".__init__").rpartition(".")[2]
    if not used or name not in fields:
        return None
    close = difflib.get_close_matches(used, fields[name], n=1)
    return close[0] if close else None
