"""``generate``: blueprint -> plan -> render -> stage -> format -> manifest -> gate -> install."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .blueprint import Blueprint
from .errors import CheckFailed, GenerationError
from .examples import ExampleError
from .formatting import format_files
from .gate import GateResult, Known, Step, run_gate
from .imports_guard import ProjectImports
from .layout import FAILED_SUFFIX, MANIFEST, RUN_STATE, STATE
from .loader import load_blueprint
from .planner import Plan, plan
from .render import render_plan, template_names, templates_root
from .writer import (
    Manifest,
    check_destination,
    is_empty,
    place,
    read_tree,
    staging_dir,
    write_files,
)

#: never copied into the gate's copy of a folder (no step looks into them)
NOT_COPIED = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
    }
)


@dataclass(frozen=True)
class Built:
    """A project rendered, formatted and staged, with its manifest."""

    blueprint: Blueprint
    plan: Plan
    staging: Path
    manifest: Manifest
    contents: dict[str, bytes]  # every planned file as written (manifest not included)

    def known(self, *, declared: bool = True) -> Known:
        """What the gate needs of this build: the runtime copies and the pyproject.

        ``declared=False`` leaves the pyproject for the gate to read from its tree
        (regenerate may keep or merge the user's edits of it).
        """
        copies = {
            f.path: self.contents[f.path]
            for f in self.plan.files
            if f.template is not None and not f.rendered
        }
        pyproject = self.contents["pyproject.toml"].decode("utf-8")
        return Known(copies, ProjectImports.parse(pyproject) if declared else None)


@dataclass(frozen=True)
class Generated:
    """What ``generate`` did."""

    dest: Path
    package: str
    files: int
    kept_user_files: tuple[str, ...]
    gate: GateResult | None
    seconds: float


def build(blueprint: Blueprint, blueprint_text: str, staging: Path) -> Built:
    """Render ``blueprint`` into ``staging`` (formatted, with its manifest)."""
    root = templates_root()
    try:
        the_plan = plan(blueprint, blueprint_text, template_names(root))
    except ExampleError as exc:
        raise GenerationError(f"{blueprint.name}: {exc}") from None
    texts = render_plan(the_plan, root)
    write_files(staging, texts)
    # Copied runtime files are formatted where they live; only rendered code is
    # formatted here, and only it is read back.
    rendered = [f.path for f in the_plan.files if f.rendered and f.path.endswith(".py")]
    format_files(staging, rendered)
    contents = {path: text.encode("utf-8") for path, text in texts.items()}
    contents.update(read_tree(staging, rendered))
    owners = {f.path: f.owner for f in the_plan.files}
    manifest = Manifest.build(contents, owners, blueprint_text)
    write_files(staging, {MANIFEST: manifest.to_json()})
    return Built(blueprint, the_plan, staging, manifest, dict(sorted(contents.items())))


def generate(
    blueprint_path: Path,
    dest: Path,
    *,
    force: bool = False,
    gate: bool = True,
    on_step: Callable[[Step], None] | None = None,
) -> Generated:
    """Generate the project for ``blueprint_path`` into ``dest``; gate it first.

    The gate judges exactly the tree ``dest`` will hold (with ``--force``, the files
    already there included); a failing gate leaves ``dest`` untouched.
    """
    start = time.perf_counter()
    blueprint = load_blueprint(blueprint_path)
    text = blueprint_path.read_text(encoding="utf-8")
    check_destination(dest, force)
    with tempfile.TemporaryDirectory(prefix="portwright-render-") as temporary:
        built = build(blueprint, text, Path(temporary) / "project")
    kept: list[str] = []

    def put(root: Path) -> None:
        kept[:] = place(root, built.contents, built.manifest)

    # the tree holds the build's pyproject: --force writes portwright's files over
    result = land(dest, put, gate=gate, on_step=on_step, known=built.known())
    return Generated(
        dest,
        blueprint.name,
        len(built.manifest.files) + 1,
        tuple(kept),
        result,
        time.perf_counter() - start,
    )


def failed_dir(dest: Path) -> Path:
    """Where a tree that failed its gate is kept for inspection."""
    return dest.parent / f"{dest.name}{FAILED_SUFFIX}"


def land(
    dest: Path,
    change: Callable[[Path], None],
    *,
    gate: bool,
    on_step: Callable[[Step], None] | None = None,
    dry_run: bool = False,
    known: Known | None = None,
) -> GateResult | None:
    """Make ``change`` to ``dest``, after the gate passed on exactly the tree it leaves.

    The one way ``generate`` and ``regenerate`` (``--dry-run`` included) write: a copy
    of ``dest`` as it is (caches and version control left out) gets ``change``, the gate
    judges that copy, and only then is ``change`` made to ``dest`` (an absent or empty
    ``dest`` simply becomes the gated copy). A failing gate leaves ``dest`` untouched,
    keeps the copy in ``failed_dir(dest)`` and raises ``GateFailed``; a run that lands
    removes the copy an earlier failure left. ``dry_run``: judge, change nothing.
    ``known``: what the build knows that the gate needs (see ``gate.Known``).
    """
    if not gate and not is_empty(dest):
        if not dry_run:
            change(dest)
            shutil.rmtree(failed_dir(dest), ignore_errors=True)
        return None
    tree = candidate(dest, change)
    try:
        result = (
            prove(dest, tree, on_step, keep=not dry_run, known=known) if gate else None
        )
        if not dry_run:
            if is_empty(dest):
                if dest.exists():
                    dest.rmdir()
                os.replace(tree, dest)
            else:
                change(dest)
            shutil.rmtree(failed_dir(dest), ignore_errors=True)
        return result
    finally:
        shutil.rmtree(tree, ignore_errors=True)  # moved into place, kept, or judged


def candidate(dest: Path, change: Callable[[Path], None]) -> Path:
    """A folder beside ``dest`` holding what ``dest`` will hold after ``change``."""
    tree = staging_dir(dest)
    try:
        if dest.is_dir():
            shutil.copytree(
                dest, tree, dirs_exist_ok=True, ignore=_not_copied(dest), symlinks=True
            )
        change(tree)
    except BaseException:
        shutil.rmtree(tree, ignore_errors=True)
        raise
    return tree


def prove(
    dest: Path,
    tree: Path,
    on_step: Callable[[Step], None] | None,
    *,
    keep: bool = True,
    known: Known | None = None,
) -> GateResult:
    """Gate ``tree``, what ``dest`` will hold; on failure keep it and raise ``GateFailed``.

    The steps' output names files in ``tree``, a folder about to go: it is shown with
    the folder the user can open instead (the kept copy, or ``dest`` itself).
    """
    result = run_gate(tree, known=known)
    shown = failed_dir(dest) if keep else dest
    if not result.ok:
        result = result.relocated(tree, shown)
    for step in result.steps:
        if on_step is not None:
            on_step(step)
    if result.ok:
        return result
    failing = ", ".join(s.name for s in result.steps if not s.ok)
    if keep:
        shutil.rmtree(shown, ignore_errors=True)
        tree.rename(shown)
        where = f"{dest} is untouched; what it would hold is kept in {shown}"
    else:
        where = "dry run: nothing written"
    raise GateFailed(f"the gate failed ({failing}); {where}", result)


def _not_copied(dest: Path) -> Callable[[str, list[str]], set[str]]:
    """What the gate's copy leaves out: version control, environments, caches, state."""
    state = dest / STATE

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name in NOT_COPIED}
        if Path(folder) == state:
            skipped |= {name for name in names if name in RUN_STATE}
        return skipped

    return ignore


class GateFailed(CheckFailed):
    """The emitted project did not pass its gate."""

    def __init__(self, message: str, result: GateResult) -> None:
        super().__init__(message)
        self.result = result
