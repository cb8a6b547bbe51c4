"""Apply a regeneration to a project atomically, with a backup of what it replaces.

The new files are written under ``.portwright/pending/`` first; then one rename
commits ``.portwright/journal.json``, the list of moves to make; then the moves are
made. A run killed before the commit leaves the project as it was (the pending files
are swept away next time); a run killed after it is completed by the next portwright
command on the project (``recover``), since every move can be repeated safely.
Every file a run replaces, removes or moves is first copied to ``.portwright/backup/``,
which holds the previous run's files until the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from .layout import BACKUP, JOURNAL, MANIFEST, PENDING
from .update import FileAction
from .writer import target_of

#: seconds to pause between moves; only for tests that interrupt a run on purpose
_PAUSE_S = float(os.environ.get("PORTWRIGHT_APPLY_PAUSE_S", "0") or 0)

Move = tuple[
    str, str | None
]  # (from: a pending file or a project file, to: path or None = delete)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def moves_for(actions: Iterable[FileAction]) -> list[Move]:
    """The moves that apply ``actions``; pending files are named ``pending:<path>``."""
    moves: list[Move] = []
    for action in actions:
        if action.action in ("add", "change", "merge", "conflict", "rename"):
            moves.append((f"pending:{action.path}", action.path))
            if action.source is not None:
                moves.append((action.source, None))
        elif action.action == "remove":
            moves.append((action.path, None))
        elif action.action == "orphan":
            moves.append((action.path, action.orphan_path))
    return moves


def apply(project: Path, actions: list[FileAction], manifest_json: str) -> None:
    """Apply ``actions`` and write the manifest, atomically as described above."""
    recover(project)
    pending = target_of(project, PENDING)
    shutil.rmtree(pending, ignore_errors=True)
    backup = target_of(project, BACKUP)
    shutil.rmtree(backup, ignore_errors=True)
    for action in actions:
        if action.content is not None:
            _write_atomic(target_of(pending, action.path), action.content)
        for old in (action.path, action.source):
            if old is not None and target_of(project, old).is_file():
                destination = target_of(backup, old)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target_of(project, old), destination)
    _write_atomic(target_of(pending, MANIFEST), manifest_json.encode("utf-8"))
    moves = [*moves_for(actions), (f"pending:{MANIFEST}", MANIFEST)]
    _write_atomic(
        target_of(project, JOURNAL),
        json.dumps({"moves": moves}, indent=1).encode("utf-8"),
    )
    _replay(project, moves)


def recover(project: Path) -> bool:
    """Finish a run that was interrupted after its commit; True if there was one."""
    # Every state path goes through target_of: a symlinked .portwright is refused
    # before anything is read, written or removed through it.
    journal = target_of(project, JOURNAL)
    if not journal.is_file():
        shutil.rmtree(target_of(project, PENDING), ignore_errors=True)  # discard
        return False
    recorded = json.loads(journal.read_text(encoding="utf-8"))["moves"]
    moves: list[Move] = [(str(a), None if b is None else str(b)) for a, b in recorded]
    _replay(project, moves)
    return True


def _replay(project: Path, moves: list[Move]) -> None:
    for source, destination in moves:
        if source.startswith("pending:"):
            origin = target_of(project, f"{PENDING}/{source.removeprefix('pending:')}")
        else:
            origin = target_of(project, source)
        if origin.exists():  # absent: this move was already made before an interruption
            if destination is None:
                origin.unlink()
                _prune(origin.parent, project)
            else:
                target = target_of(project, destination)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(origin, target)
        if _PAUSE_S:
            time.sleep(_PAUSE_S)
    target_of(project, JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(target_of(project, PENDING), ignore_errors=True)


def _prune(folder: Path, project: Path) -> None:
    """Remove folders a removal left empty (never the project itself)."""
    while folder != project and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
