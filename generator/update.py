"""What regenerate does to each file: a pure decision over four versions of the tree.

For every path it weighs the file on disk, the manifest (what portwright wrote last
time, and its hash), the *base* (the last blueprint rendered again) and the *new*
render. Generator-owned files are rewritten; edited ones, and user-owned ones whose
skeleton changed, are merged three ways; files no longer planned go, unless the user
changed them, in which case they move to ``.portwright/orphans/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from . import __version__
from .layout import MANIFEST, ORPHANS
from .merging import merge_text
from .planner import Owner
from .writer import Manifest, sha256

Action = Literal[
    "add",
    "change",
    "merge",
    "conflict",
    "rename",
    "remove",
    "orphan",
    "keep",
    "unchanged",
]
#: what each action means, for --dry-run and the summary
MEANING: dict[str, str] = {
    "add": "new file",
    "change": "rewritten (you had not edited it)",
    "merge": "your edits merged with the new version",
    "conflict": "your edits conflict with the new version: markers written",
    "rename": "your file moved to the component's new name, edits merged",
    "remove": "no longer generated, unedited: removed",
    "orphan": "no longer generated, but edited: moved to .portwright/orphans/",
    "keep": "your edited version kept (the generated version did not change)",
    "unchanged": "unchanged",
}


@dataclass(frozen=True)
class Tree:
    """A rendered project: path -> bytes, and who owns each path."""

    contents: Mapping[str, bytes]
    owners: Mapping[str, Owner]


@dataclass(frozen=True)
class FileAction:
    """What happens to one path."""

    path: str
    action: Action
    content: bytes | None = (
        None  # written at ``path`` (add, change, merge, conflict, rename)
    )
    source: str | None = None  # rename: the old path, which goes away

    @property
    def writes(self) -> bool:
        """Whether the project changes at ``path`` (or at ``source``)."""
        return self.action not in ("keep", "unchanged")

    @property
    def orphan_path(self) -> str:
        """Where an orphaned file is moved."""
        return f"{ORPHANS}/{self.path}"


@dataclass(frozen=True)
class UpdatePlan:
    """Every file's action, and the manifest the project has afterwards."""

    actions: tuple[FileAction, ...]
    manifest: Manifest

    @property
    def conflicts(self) -> list[str]:
        """Paths written with conflict markers."""
        return [a.path for a in self.actions if a.action == "conflict"]

    @property
    def changes(self) -> list[FileAction]:
        """The actions that change the project."""
        return [a for a in self.actions if a.writes]


def decide(
    read_disk: Callable[[str], bytes | None],
    manifest: Manifest,
    base: Tree,
    new: Tree,
    renames: Mapping[str, str],
    blueprint_text: str,
) -> UpdatePlan:
    """Decide every path's action. ``renames`` maps an old user file path to its new one."""
    actions: dict[str, FileAction] = {}
    claimed = set(renames)
    for path in sorted(set(new.contents) | set(manifest.files) | set(base.contents)):
        if path == MANIFEST or path in claimed:
            continue
        disk = read_disk(path)
        recorded = manifest.files.get(path)
        edited = disk is not None and (recorded is None or sha256(disk) != recorded[1])
        if path in new.contents:
            old_path = next(
                (old for old, renamed in renames.items() if renamed == path), None
            )
            if old_path is not None and disk is None:
                actions[path] = _renamed(old_path, path, read_disk, base, new)
            else:
                actions[path] = _planned(path, disk, edited, recorded, base, new)
        elif disk is not None and recorded is not None:
            actions[path] = FileAction(path, "orphan" if edited else "remove")
    for old_path in renames:  # a renamed file whose new name was not written above
        if old_path not in {a.source for a in actions.values()}:
            disk = read_disk(old_path)
            recorded = manifest.files.get(old_path)
            if disk is not None and recorded is not None:
                edited = sha256(disk) != recorded[1]
                actions[old_path] = FileAction(
                    old_path, "orphan" if edited else "remove"
                )
    files = {
        path: (new.owners[path], sha256(data)) for path, data in new.contents.items()
    }
    return UpdatePlan(
        tuple(actions[p] for p in sorted(actions)),
        Manifest(files, __version__, blueprint_text),
    )


def _planned(
    path: str,
    disk: bytes | None,
    edited: bool,
    recorded: tuple[Owner, str] | None,
    base: Tree,
    new: Tree,
) -> FileAction:
    theirs = new.contents[path]
    if disk is None:
        return FileAction(path, "add", theirs)
    if disk == theirs:
        return FileAction(path, "unchanged")
    if not edited:
        return FileAction(path, "change", theirs)
    previous = base.contents.get(path)
    if previous == theirs:
        return FileAction(
            path, "keep"
        )  # nothing new to bring in: the user's edit stays
    return _merge(path, previous or b"", disk, theirs)


def _renamed(
    old_path: str,
    path: str,
    read_disk: Callable[[str], bytes | None],
    base: Tree,
    new: Tree,
) -> FileAction:
    ours = read_disk(old_path)
    if ours is None:
        return FileAction(path, "add", new.contents[path])
    merged = _merge(path, base.contents.get(old_path, b""), ours, new.contents[path])
    action: Action = "conflict" if merged.action == "conflict" else "rename"
    return FileAction(path, action, merged.content, source=old_path)


def _merge(path: str, base: bytes, ours: bytes, theirs: bytes) -> FileAction:
    result = merge_text(_text(base), _text(ours), _text(theirs))
    content = result.text.encode("utf-8", errors="surrogateescape")
    return FileAction(path, "conflict" if result.conflicted else "merge", content)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")
