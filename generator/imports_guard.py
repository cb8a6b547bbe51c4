"""The import guard: every import of an emitted project must be one it may make.

An AST check, not grep. Allowed: the project's own package (absolute or relative), the
standard library, and the distributions its pyproject.toml declares (the test extra for
files under tests/). Never allowed: portwright itself, and the forbidden modules (by
default ``observability``, the shared module the original services regressed to).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

from .errors import GenerationError

DEFAULT_FORBIDDEN = ("observability",)
PORTWRIGHT_MODULES = ("generator", "portwright")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True, order=True)
class Violation:
    """One import that is not allowed, at ``path:line``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def normalize(distribution: str) -> str:
    """PEP 503 normalisation: ``Prometheus_Client`` -> ``prometheus-client``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def requirement_names(requirements: Iterable[str]) -> set[str]:
    """The normalised distribution names of requirement strings."""
    names = set()
    for requirement in requirements:
        match = _REQUIREMENT_NAME.match(requirement)
        if match:
            names.add(normalize(match.group(1)))
    return names


@dataclass(frozen=True)
class ProjectImports:
    """What an emitted project declares: its package, dependencies and forbidden modules."""

    package: str
    runtime: frozenset[str]
    test: frozenset[str]
    forbidden: tuple[str, ...]

    @classmethod
    def read(cls, project: Path) -> ProjectImports:
        """Read ``pyproject.toml`` of an emitted project."""
        path = project / "pyproject.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GenerationError(
                f"{path}: cannot read the project's pyproject.toml ({exc})"
            ) from None
        project_table = data.get("project", {})
        tool = data.get("tool", {}).get("portwright", {})
        package = tool.get("package") or str(project_table.get("name", "")).replace(
            "-", "_"
        )
        runtime = requirement_names(project_table.get("dependencies", []))
        extras = project_table.get("optional-dependencies", {})
        test = runtime | requirement_names(
            r for group in extras.values() for r in group
        )
        forbidden = tuple(tool.get("forbidden_imports", DEFAULT_FORBIDDEN))
        return cls(package, frozenset(runtime), frozenset(test), forbidden)


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    """``(line, module, level)`` for every import; level > 0 is relative."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def check_imports(project: Path) -> list[Violation]:
    """Every import violation in the emitted project at ``project``, sorted."""
    declared = ProjectImports.read(project)
    providers = packages_distributions()
    violations: list[Violation] = []
    roots = [
        (project / declared.package, declared.runtime),
        (project / "tests", declared.test),
    ]
    for root, allowed in roots:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else []:
            rel = path.relative_to(project).as_posix()
            try:
                tree = ast.parse(path.read_bytes(), filename=rel)
            except SyntaxError as exc:
                violations.append(
                    Violation(rel, exc.lineno or 1, f"cannot parse: {exc.msg}")
                )
                continue
            for line, module, level in imported_modules(tree):
                problem = _judge(module, level, declared, allowed, providers)
                if problem:
                    violations.append(Violation(rel, line, problem))
    return sorted(violations)


def _judge(
    module: str,
    level: int,
    declared: ProjectImports,
    allowed: frozenset[str],
    providers: Mapping[str, list[str]],
) -> str | None:
    if level > 0:
        return None
    top = module.split(".")[0]
    for forbidden in declared.forbidden:
        if module == forbidden or module.startswith(forbidden + "."):
            return f"import of '{module}' is forbidden in this project (forbidden: {forbidden})"
    if top in PORTWRIGHT_MODULES:
        return (
            f"emitted code must not import portwright ('{module}'); it must stand alone"
        )
    if top == declared.package or top in sys.stdlib_module_names or top == "__future__":
        return None
    dists = {normalize(d) for d in providers.get(top, [])} or {normalize(top)}
    if dists & allowed:
        return None
    return (
        f"'{module}' is not the package, the standard library, or a declared "
        f"dependency (declare {sorted(dists)[0]!r} in pyproject.toml)"
    )
