"""Compare two folders whole: missing files, extra files, then a diff of each change."""

import difflib
from pathlib import Path

IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative POSIX path -> bytes), caches left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not IGNORED_PARTS & set(p.relative_to(root).parts)
    }


def tree_diff(expected: Path, actual: Path) -> str:
    """An empty string when both trees hold the same bytes; else what differs."""
    want, got = tree(expected), tree(actual)
    lines = [f"missing: {p}" for p in sorted(set(want) - set(got))]
    lines += [f"extra: {p}" for p in sorted(set(got) - set(want))]
    for path in sorted(set(want) & set(got)):
        if want[path] != got[path]:
            diff = difflib.unified_diff(
                want[path].decode("utf-8", "replace").splitlines(),
                got[path].decode("utf-8", "replace").splitlines(),
                f"expected/{path}",
                f"actual/{path}",
                lineterm="",
            )
            lines.extend(list(diff)[:60])
    return "\n".join(lines)
