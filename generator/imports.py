"""The import lines of one emitted module, collected, then printed as ruff sorts them.

The planner adds what each module uses (``add("collections.abc", "AsyncIterator")``);
the templates print the lines. Generation runs only ``ruff format``, never its import
sorting, so the order here is ruff's isort order: absolute modules, then relative
ones, each section by module, each module's names by ``import_key``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .filters import import_names, module_key


class Imports:
    """``from module import name`` statements, one per module."""

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}

    def add(self, module: str, *names: str) -> Imports:
        """Import ``names`` from ``module`` (``"."`` for the package itself); no
        names, no line."""
        if names:
            self._names.setdefault(module, set()).update(names)
        return self

    def add_all(self, pairs: Iterable[tuple[str, str]]) -> Imports:
        """Import each ``(module, name)``."""
        for module, name in pairs:
            self.add(module, name)
        return self

    def sections(self) -> list[list[str]]:
        """The lines, a list per section (absolute, relative); empty sections left out."""
        absolute = [m for m in self._names if not m.startswith(".")]
        relative = [m for m in self._names if m.startswith(".")]
        return [
            [self._line(module) for module in sorted(section, key=module_key)]
            for section in (absolute, relative)
            if section
        ]

    def _line(self, module: str) -> str:
        return f"from {module} import {import_names(self._names[module])}"
