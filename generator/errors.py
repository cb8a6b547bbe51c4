"""The one error root, and the problems it reports to users.

Errors meant for users carry the file, the line and the dotted path of the key, so the
CLI can print them in one line each without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong (or worth a warning) in a user's file."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return (
            f"{where}: {self.key}: {self.message}"
            if self.key
            else f"{where}: {self.message}"
        )


class PortwrightError(Exception):
    """Root of every error portwright reports to a user (the CLI exits 2 on these)."""


class BlueprintError(PortwrightError):
    """A blueprint is invalid; holds every problem found, sorted by line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(
            sorted(set(problems), key=lambda p: (p.file, p.line, p.key, p.message))
        )
        super().__init__("\n".join(str(p) for p in self.problems))


class GenerationError(PortwrightError):
    """Generating, writing or gating a project failed for a reason the user can act on."""


class CheckFailed(PortwrightError):
    """A check ran and failed (the gate, unresolved conflicts): the CLI exits 1."""
