"""Three-way merges of text files, the way copier's update carries user changes.

base: what portwright generated last time; ours: the file on disk (the user's);
theirs: what portwright generates now. The merge itself is merge3's (the algorithm
of bzr/breezy); nothing here is a diff algorithm of our own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from merge3 import Merge3

OURS = "yours (on disk)"
THEIRS = "regenerated"
#: the lines a conflict leaves (merge3 writes them as git does)
MARKER_LINES = (f"<<<<<<< {OURS}", "=======", f">>>>>>> {THEIRS}")


@dataclass(frozen=True)
class Merged:
    """The merged text, and whether it holds conflict markers."""

    text: str
    conflicted: bool


def merge_text(base: str, ours: str, theirs: str) -> Merged:
    """Merge ``theirs`` into ``ours`` relative to ``base``; git-style markers on conflict."""
    merge = Merge3(
        base.splitlines(keepends=True),
        ours.splitlines(keepends=True),
        theirs.splitlines(keepends=True),
    )
    conflicted = any(group[0] == "conflict" for group in merge.merge_groups())
    lines = merge.merge_lines(name_a=OURS, name_b=THEIRS, reprocess=not conflicted)
    text = "".join(lines)
    if text and not text.endswith("\n"):
        text += "\n"
    return Merged(text, conflicted)


@dataclass(frozen=True)
class Marker:
    """A conflict portwright marked in a file and nobody resolved yet."""

    path: str
    line: int

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: unresolved conflict from portwright regenerate: "
            f"keep the lines you want between '{MARKER_LINES[0]}' and "
            f"'{MARKER_LINES[2]}' and delete the three marker lines"
        )


def find_markers(root: Path, paths: Iterable[str]) -> list[Marker]:
    """The opening marker of every conflict still in ``paths`` (relative to ``root``)."""
    found = []
    for path in sorted(paths):
        target = root / path
        if target.is_symlink() or not target.is_file():
            continue
        data = target.read_bytes()
        if MARKER_LINES[0].encode() not in data:  # the common case, without decoding
            continue
        text = data.decode("utf-8", errors="surrogateescape")
        for number, line in enumerate(text.splitlines(), start=1):
            if line.rstrip("\r") == MARKER_LINES[0]:
                found.append(Marker(path, number))
    return found
