"""Three-way merges of text files, the way copier's update carries user changes.

base: what portwright generated last time; ours: the file on disk (the user's);
theirs: what portwright generates now. The merge itself is merge3's (the algorithm
of bzr/breezy); nothing here is a diff algorithm of our own.
"""

from __future__ import annotations

from dataclasses import dataclass

from merge3 import Merge3

OURS = "yours (on disk)"
THEIRS = "regenerated"


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
