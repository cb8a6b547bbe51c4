"""The ``portwright`` command line: each command is a thin shell over one module."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .drawing import GraphvizMissing, draw
from .drift import check_project
from .errors import BlueprintError, CheckFailed, GenerationError, PortwrightError
from .gate import Step, run_gate
from .generation import generate as generate_project
from .imports_guard import check_imports
from .json_schema import blueprint_schema_text
from .loader import load_blueprint
from .partitions import FLAG as REPARTITION
from .regeneration import regenerate as regenerate_project
from .update import MEANING

app = typer.Typer(
    name="portwright",
    help="Turn a blueprint (YAML) into a standalone, tested FastAPI + anyio service.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXIT_INVALID = 2
EXIT_INTERNAL = 1
EXIT_FAILED = 1  # a check that ran and found problems (gate, conflicts, import guard)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"portwright {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """portwright: blueprint in, gated service project out."""


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Blueprint files to check.")],
) -> None:
    """Check blueprints; print warnings; exit 2 if any is invalid."""
    failed = False
    for path in files:
        try:
            blueprint = load_blueprint(path)
        except BlueprintError as exc:
            failed = True
            for problem in exc.problems:
                typer.echo(f"error: {problem}", err=True)
            continue
        for warning in blueprint.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"{path}: ok ({len(blueprint.components)} components)")
    if failed:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the blueprint format (for editors and CI)."""
    typer.echo(blueprint_schema_text(), nl=False)


class GraphFormat(StrEnum):
    """What ``portwright graph`` writes."""

    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"


@app.command()
def graph(
    blueprint: Annotated[Path, typer.Argument(help="The blueprint file.")],
    form: Annotated[
        GraphFormat,
        typer.Option("--format", "-f", help="mermaid, dot (Graphviz) or svg."),
    ] = GraphFormat.mermaid,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of to stdout."),
    ] = None,
) -> None:
    """Draw BLUEPRINT: components, ports and connections (transport, buffer, overflow)."""
    loaded = load_blueprint(blueprint)
    try:
        text = draw(loaded, form.value)
    except GraphvizMissing as exc:  # the input is fine: a tool is missing (exit 1)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


def _print_step(step: Step) -> None:
    mark = "ok  " if step.ok else "FAIL"
    typer.echo(f"  {mark} {step.name:<13} {step.seconds:6.2f} s  {step.summary}")
    if not step.ok and step.output:
        for line in step.output.splitlines()[-40:]:
            typer.echo(f"       {line}")


def _gate_printer() -> Callable[[Step], None]:
    """Print each step, under a ``gate:`` heading printed with the first one.

    Only a gate that runs gets the heading: an error before it (a missing or invalid
    blueprint, a refused folder) is not the gate's.
    """
    started = False

    def print_step(step: Step) -> None:
        nonlocal started
        if not started:
            typer.echo("gate:")
            started = True
        _print_step(step)

    return print_step


@app.command()
def generate(
    blueprint: Annotated[Path, typer.Argument(help="The blueprint file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The project folder.")],
    force: Annotated[
        bool,
        typer.Option(help="Write into a non-empty folder (user-owned files are kept)."),
    ] = False,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="Run the gate before writing.")
    ] = True,
) -> None:
    """Generate the service project for BLUEPRINT into OUTPUT, gated."""
    done = generate_project(
        blueprint, output, force=force, gate=gate, on_step=_gate_printer()
    )
    typer.echo(f"wrote {done.files} files to {done.dest}")
    for path in done.kept_user_files:
        typer.echo(f"  kept your {path}")
    if done.gate is not None:
        typer.echo(
            f"gate passed: {done.gate.tests_run} tests in {done.gate.seconds:.1f} s"
        )
    else:
        typer.echo("gate skipped (--no-gate)")
    package = done.package
    typer.echo(
        f"start it: cd {done.dest} && python -m {package} --host 127.0.0.1 --port 8000"
    )


@app.command()
def regenerate(
    project: Annotated[Path, typer.Argument(help="A generated project folder.")],
    blueprint: Annotated[
        Path | None,
        typer.Option(
            help="A new blueprint (default: PROJECT/.portwright/blueprint.yaml)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would happen; write nothing.")
    ] = False,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="Run the gate before writing.")
    ] = True,
    repartition: Annotated[
        bool,
        typer.Option(
            REPARTITION,
            help="Accept a changed partition count of a keyed Redis connection "
            "(drain it first: docs/blueprint.md).",
        ),
    ] = False,
) -> None:
    """Bring PROJECT up to date with its blueprint; your code is merged, never lost."""
    done = regenerate_project(
        project,
        blueprint,
        dry_run=dry_run,
        gate=gate,
        on_step=_gate_printer(),
        repartition=repartition,
    )
    if done.recovered:
        typer.echo("completed a regeneration that had been interrupted")
    for action in done.plan.actions:
        if action.action != "unchanged":
            source = f" (from {action.source})" if action.source else ""
            typer.echo(
                f"  {action.action:<9} {action.path}{source}: {MEANING[action.action]}"
            )
    changed = len(done.plan.changes)
    if dry_run:
        judged = " (the gate passed on the result)" if done.gate is not None else ""
        typer.echo(f"dry run: {changed} file(s) would change{judged}; nothing written")
    elif not done.written:
        typer.echo("up to date: nothing changed")
    else:
        typer.echo(
            f"updated {changed} file(s); the previous versions are in {project}/.portwright/backup/"
        )
    if done.plan.conflicts:
        typer.echo(
            "conflicts (resolve the <<<<<<< markers, then run 'portwright gate'):",
            err=True,
        )
        for path in done.plan.conflicts:
            typer.echo(f"  {path}", err=True)
        raise typer.Exit(EXIT_FAILED)


@app.command()
def check(
    project: Annotated[Path, typer.Argument(help="A generated project folder.")],
    diff: Annotated[bool, typer.Option("--diff", help="Show what differs.")] = False,
) -> None:
    """Exit 1 when PROJECT is not what its recorded blueprint generates (CI drift check)."""
    drifts = check_project(project)
    for drift in drifts:
        typer.echo(str(drift))
        if diff and drift.diff:
            typer.echo(drift.diff.rstrip("\n"))
    if drifts:
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"{project}: up to date with its blueprint")


@app.command(name="gate")
def gate_command(
    project: Annotated[Path, typer.Argument(help="A generated project folder.")],
) -> None:
    """Run ruff, black --check, the import guard and pytest in PROJECT."""
    if not (project / "pyproject.toml").is_file():
        raise GenerationError(
            f"{project} has no pyproject.toml; is it a generated project?"
        )
    result = run_gate(project, _gate_printer())
    typer.echo(f"gate {'passed' if result.ok else 'FAILED'} in {result.seconds:.1f} s")
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command(name="check-imports")
def check_imports_command(
    project: Annotated[Path, typer.Argument(help="A generated project folder.")],
) -> None:
    """Check every import of PROJECT; print path:line: message; exit 1 on any."""
    violations = check_imports(project)
    for violation in violations:
        typer.echo(str(violation))
    if violations:
        raise typer.Exit(EXIT_FAILED)
    typer.echo("all imports allowed")


def main() -> None:
    """Entry point: no traceback reaches a user; 2 for bad input, 1 for internal failure."""
    try:
        app()  # usage errors exit 2 and typer.Exit carries its code: both are SystemExit
    except CheckFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except PortwrightError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # the boundary: report a bug in one line, not a traceback
        if os.environ.get("PORTWRIGHT_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} "
            "(a bug in portwright; rerun with PORTWRIGHT_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
