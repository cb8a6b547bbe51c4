"""What every rule of the resolution shares: the problems found so far, and look-ups.

Each part of the resolution (``schemas``, ``components``, ``connections``,
``warnings``) is a class of rules over this state; ``resolve`` runs them in order.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from ..blueprint import ERROR_SCHEMA, Connection
from ..errors import Problem
from ..model import BlueprintSpec, ComponentSpec, ConnectionSpec
from ..yaml_source import Loc, SourceDoc


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a candidate is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checks:
    """The blueprint being resolved, where it came from, and what is wrong with it."""

    def __init__(self, spec: BlueprintSpec, doc: SourceDoc) -> None:
        self.spec = spec
        self.doc = doc
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.known_schemas = set(spec.schemas) | {ERROR_SCHEMA}
        self.examples: dict[str, dict[str, Any]] = {}  # each schema's, once derived
        self.fed: set[str] = set()  # inputs some connection names, valid or not

    def error(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(self.doc.problem(loc, message))

    def schema_ref(self, loc: Loc, name: str, what: str) -> bool:
        if name in self.known_schemas:
            return True
        self.error(
            loc,
            f"unknown schema {name!r} in {what}{did_you_mean(name, self.known_schemas)}",
        )
        return False

    def port_loc(
        self, component: str, spec: ComponentSpec, direction: str, port: str
    ) -> Loc:
        single, many = (
            ("input", "inputs") if direction == "in" else ("output", "outputs")
        )
        if getattr(spec, single, None) is not None:
            return ("components", component, single)
        return ("components", component, many, port)

    def is_subschema(self, child: str, parent: str) -> bool:
        """Whether ``child`` is ``parent`` or extends it, directly or not."""
        seen: set[str] = set()
        current: str | None = child
        while current is not None and current not in seen:
            if current == parent:
                return True
            seen.add(current)
            spec = self.spec.schemas.get(current)
            current = spec.extends if spec is not None else None
        return False

    def conn_loc(self, index: int, conn: ConnectionSpec, key: str) -> Loc:
        """Where a connection's end is written: its own key in the mapping form."""
        loc: Loc = ("connections", index, key)
        return loc if loc in self.doc.lines else ("connections", index)

    def spec_index(self, conn: Connection) -> int:
        for index, spec in enumerate(self.spec.connections):
            ends = (spec.from_.strip(), spec.to.strip())
            if ends == (conn.source.ref, conn.target.ref):
                return index
        return 0
