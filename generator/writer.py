"""Write a rendered project: stage it, record a manifest, and move it into place.

Nothing from a blueprint decides a path on its own: planned paths are built from
validated identifiers, and every write is checked again here to stay inside the
target folder and never follow a symlink out of it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import __version__
from .errors import GenerationError
from .planner import MANIFEST, Owner


def sha256(data: bytes) -> str:
    """The hex digest the manifest records."""
    return hashlib.sha256(data).hexdigest()


def safe_relative(path: str) -> PurePosixPath:
    """``path`` as a relative POSIX path that cannot leave its root."""
    pure = PurePosixPath(path)
    # judged on the raw text: PurePosixPath would quietly normalise 'a//b' and './a'
    if pure.is_absolute() or any(part in ("..", ".", "") for part in path.split("/")):
        raise GenerationError(f"refusing to write outside the project: {path!r}")
    return pure


def target_of(root: Path, path: str, checked: set[Path] | None = None) -> Path:
    """Where ``path`` lands under ``root``; refuses symlinks on the way.

    ``checked``: folders already found not to be symlinks, skipped (and added to);
    for writing many files, each folder is then looked at once.
    """
    current = root
    *folders, name = safe_relative(path).parts
    for part in folders:
        current = current / part
        if checked is not None and current in checked:
            continue
        if current.is_symlink():
            raise GenerationError(f"refusing to write through the symlink {current}")
        if checked is not None:
            checked.add(current)
    current = current / name
    if current.is_symlink():
        raise GenerationError(f"refusing to write through the symlink {current}")
    return current


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Write ``files`` (path -> text or bytes) under ``root``; text as UTF-8, as given."""
    root.mkdir(parents=True, exist_ok=True)
    checked: set[Path] = set()
    made: set[Path] = set()
    for path, content in sorted(files.items()):
        target = target_of(root, path, checked)
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        data = content.encode("utf-8") if isinstance(content, str) else content
        target.write_bytes(data)


def read_tree(root: Path, paths: list[str]) -> dict[str, bytes]:
    """The bytes of ``paths`` under ``root``."""
    return {path: target_of(root, path).read_bytes() for path in paths}


@dataclass(frozen=True)
class Manifest:
    """What portwright wrote: every path, who owns it, and its content hash."""

    files: Mapping[str, tuple[Owner, str]]  # path -> (owner, sha256)
    generator_version: str = __version__
    #: the blueprint text the files were generated from: the base of the next merge,
    #: kept here so that editing .portwright/blueprint.yaml in place loses nothing
    blueprint: str = ""

    @property
    def owners(self) -> dict[str, Owner]:
        """Who owns each path."""
        return {path: owner for path, (owner, _digest) in self.files.items()}

    def to_json(self) -> str:
        """Stable JSON: sorted, no timestamps, so identical inputs give identical bytes."""
        data: dict[str, Any] = {
            "portwright": self.generator_version,
            "blueprint": self.blueprint,
            "files": {
                path: {"owner": owner, "sha256": digest}
                for path, (owner, digest) in sorted(self.files.items())
            },
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def build(
        cls,
        contents: Mapping[str, bytes],
        owners: Mapping[str, Owner],
        blueprint: str = "",
    ) -> Manifest:
        """The manifest of ``contents``, generated from ``blueprint``."""
        files = {path: (owners[path], sha256(data)) for path, data in contents.items()}
        return cls(files, __version__, blueprint)

    @classmethod
    def read(cls, project: Path) -> Manifest | None:
        """The manifest of a generated project, or None if ``project`` has none."""
        path = target_of(project, MANIFEST)  # never read through a symlink
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = {
                str(p): (entry["owner"], str(entry["sha256"]))
                for p, entry in data["files"].items()
            }
            return cls(
                files, str(data.get("portwright", "")), str(data.get("blueprint", ""))
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GenerationError(f"{path}: the manifest is damaged ({exc})") from None


def staging_dir(dest: Path) -> Path:
    """A fresh folder beside ``dest`` (same filesystem, so the final move is a rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.portwright-", dir=dest.parent))


def check_destination(dest: Path, force: bool) -> None:
    """Refuse to write into a folder that holds something portwright did not write."""
    if dest.is_symlink():
        raise GenerationError(f"{dest} is a symlink; give the real folder")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise GenerationError(f"{dest} exists and is not a folder")
    if not any(dest.iterdir()) or force:
        return
    if Manifest.read(dest) is not None:
        raise GenerationError(
            f"{dest} holds a project portwright generated; run "
            f"'portwright regenerate {dest}' to update it (or --force to write over it)"
        )
    raise GenerationError(
        f"{dest} is not empty and portwright did not write it; choose an empty folder "
        "or pass --force (user-owned files already there are kept)"
    )


def is_empty(dest: Path) -> bool:
    """Whether ``dest`` is absent or an empty folder (one rename can then fill it)."""
    return not dest.exists() or (dest.is_dir() and not any(dest.iterdir()))


def place(
    root: Path,
    contents: Mapping[str, bytes],
    manifest: Manifest,
) -> list[str]:
    """Write a rendered project over ``root``; returns the user files kept as they were.

    Generator-owned files are written over and user-owned files only where absent:
    user code is never overwritten. Files portwright did not plan stay as they are.
    Every target is checked before anything is written: a symlink on the way to the
    last file must not leave the first ones written.
    """
    targets = {path: target_of(root, path) for path in [*contents, MANIFEST]}
    kept = sorted(
        path
        for path in contents
        if manifest.files[path][0] == "user" and targets[path].exists()
    )
    files: dict[str, str | bytes] = {
        path: data for path, data in contents.items() if path not in kept
    }
    files[MANIFEST] = manifest.to_json()
    stale = _stale(root, contents)
    write_files(root, files)
    for path in stale:
        path.unlink()
    return kept


def _stale(root: Path, contents: Mapping[str, bytes]) -> list[Path]:
    """Files an earlier generation in ``root`` wrote for portwright, unedited since, that
    this one no longer plans (a runtime module that moved): written over with
    ``--force``, they go, as ``regenerate`` removes them; edited ones stay."""
    earlier = Manifest.read(root)
    if earlier is None:
        return []
    stale = []
    for path, (owner, digest) in sorted(earlier.files.items()):
        if owner != "generator" or path in contents:
            continue
        target = target_of(root, path)
        if target.is_file() and sha256(target.read_bytes()) == digest:
            stale.append(target)
    return stale
