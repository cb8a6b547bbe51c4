"""Where portwright keeps its own files: every path of its state, in one place.

A project's ``.portwright/`` holds the blueprint as used, the manifest and, while a
regeneration runs or after it, its pending files, backups, orphans and journal. A
generation whose gate failed is kept beside the project, not in it.
"""

from __future__ import annotations

STATE = ".portwright"
BLUEPRINT_COPY = f"{STATE}/blueprint.yaml"
MANIFEST = f"{STATE}/manifest.json"
PENDING = f"{STATE}/pending"
BACKUP = f"{STATE}/backup"
ORPHANS = f"{STATE}/orphans"
JOURNAL = f"{STATE}/journal.json"
#: regenerate's own state, the names inside STATE: a run's pending files and backups,
#: the orphans, the journal (never judged by the gate, never copied into its copy)
RUN_STATE = frozenset(
    path.removeprefix(f"{STATE}/") for path in (PENDING, BACKUP, ORPHANS, JOURNAL)
)
#: appended to a project folder's name: where a tree that failed its gate is kept
FAILED_SUFFIX = ".portwright-failed"
