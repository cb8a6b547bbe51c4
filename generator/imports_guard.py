"""The import guard: every import of an emitted project must be one it may make.

An AST check, not grep. Allowed: the project's own package (absolute or relative), the
standard library, and the distributions its pyproject.toml declares (the test extra for
files under tests/). Never allowed: portwright itself, and the forbidden modules (by
default ``observability``, the shared module the original services regressed to).
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import (
    PackageNotFoundError,
    distribution,
    packages_distributions,
)
from pathlib import Path

from .errors import GenerationError

DEFAULT_FORBIDDEN = ("observability",)
PORTWRIGHT_MODULES = ("generator", "portwright")
#: the fields of a statement (or handler, or match case) that hold statements
_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")
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
            return cls.parse(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GenerationError(
                f"{path}: cannot read the project's pyproject.toml ({exc})"
            ) from None

    @classmethod
    def parse(cls, text: str) -> ProjectImports:
        """What the text of an emitted ``pyproject.toml`` declares."""
        data = tomllib.loads(text)
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
    for node in _statements([tree]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def _statements(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every statement under ``nodes``, at any depth.

    Imports are statements, and statements live only in the bodies below: walking
    those, not every expression as ``ast.walk`` does, visits a tenth of the nodes.
    """
    for node in nodes:
        yield node
        for name in _BODIES:
            inner = getattr(node, name, None)
            if isinstance(inner, list):
                yield from _statements(inner)


class Providers:
    """Which distributions provide a top-level module, looked up as little as possible.

    ``packages_distributions()`` reads the metadata of every installed distribution
    (~0.2 s here); most imports are of a distribution named like the module, which
    one look-up settles. Only when that does not allow the import is the whole map
    read, so a verdict is always the one the whole map gives.
    """

    def __init__(self) -> None:
        self._all: Mapping[str, list[str]] | None = None
        self._named: dict[str, str | None] = {}

    def named_like(self, top: str) -> str | None:
        """The distribution named like ``top`` (normalised) if it provides ``top``."""
        if top not in self._named:
            self._named[top] = self._look_up(top)
        return self._named[top]

    @staticmethod
    def _look_up(top: str) -> str | None:
        try:  # importlib.metadata matches names normalised, as normalize() does
            dist = distribution(top)
        except (PackageNotFoundError, ValueError):
            return None
        declared = dist.read_text("top_level.txt")
        if declared is not None:
            tops = set(declared.split())
        else:
            tops = {_top_level(str(f)) for f in dist.files or ()}
        return normalize(top) if top in tops else None

    def all_of(self, top: str) -> list[str]:
        """Every distribution that provides ``top`` (the whole map, read once)."""
        if self._all is None:
            self._all = packages_distributions()
        return self._all.get(top, [])


def _top_level(file: str) -> str:
    """The importable top-level name a file of a distribution belongs to."""
    first, _, rest = file.partition("/")
    return first if rest else (inspect.getmodulename(first) or first)


def check_imports(
    project: Path, declared: ProjectImports | None = None
) -> list[Violation]:
    """Every import violation in the emitted project at ``project``, sorted.

    ``declared``: what its pyproject.toml declares, when the caller has read it.
    """
    declared = declared or ProjectImports.read(project)
    providers = Providers()
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
    providers: Providers,
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
    if providers.named_like(top) in allowed:
        return None
    dists = {normalize(d) for d in providers.all_of(top)} or {normalize(top)}
    if dists & allowed:
        return None
    return (
        f"'{module}' is not the package, the standard library, or a declared "
        f"dependency (declare {sorted(dists)[0]!r} in pyproject.toml)"
    )
