"""``generate``: blueprint -> plan -> render -> stage -> format -> manifest -> gate -> install."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .blueprint import Blueprint
from .errors import GenerationError
from .examples import ExampleError
from .formatting import format_files
from .gate import GateResult, Step, run_gate
from .loader import load_blueprint
from .planner import MANIFEST, Plan, plan
from .render import render_plan, template_names, templates_root
from .writer import (
    Manifest,
    check_destination,
    install,
    read_tree,
    staging_dir,
    write_files,
)


@dataclass(frozen=True)
class Built:
    """A project rendered, formatted and staged, with its manifest."""

    blueprint: Blueprint
    plan: Plan
    staging: Path
    manifest: Manifest
    contents: dict[str, bytes]  # every planned file as written (manifest not included)


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

    A failing gate leaves ``dest`` untouched and keeps the staged tree for inspection.
    """
    start = time.perf_counter()
    blueprint = load_blueprint(blueprint_path)
    text = blueprint_path.read_text(encoding="utf-8")
    check_destination(dest, force)
    staging = staging_dir(dest)
    try:
        built = build(blueprint, text, staging)
        result = run_gate(staging, on_step) if gate else None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if result is not None and not result.ok:
        failed = dest.parent / f"{dest.name}.portwright-failed"
        shutil.rmtree(failed, ignore_errors=True)
        staging.rename(failed)
        failing = ", ".join(s.name for s in result.steps if not s.ok)
        raise GateFailed(
            f"the gate failed ({failing}); {dest} is untouched; the failed project is kept in {failed}",
            result,
        )
    try:
        kept = install(staging, dest, built.manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # moved away, or refused
    return Generated(
        dest,
        blueprint.name,
        len(built.manifest.files) + 1,
        tuple(kept),
        result,
        time.perf_counter() - start,
    )


class GateFailed(GenerationError):
    """The emitted project did not pass its gate."""

    def __init__(self, message: str, result: GateResult) -> None:
        super().__init__(message)
        self.result = result
