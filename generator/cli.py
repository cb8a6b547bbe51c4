"""The ``portwright`` command line: each command is a thin shell over one module."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import BlueprintError, PortwrightError
from .json_schema import blueprint_schema_text
from .loader import load_blueprint

app = typer.Typer(
    name="portwright",
    help="Turn a blueprint (YAML) into a standalone, tested FastAPI + anyio service.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXIT_INVALID = 2
EXIT_INTERNAL = 1


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


def main() -> None:
    """Entry point: no traceback reaches a user; 2 for bad input, 1 for internal failure."""
    try:
        app()  # usage errors exit 2 and typer.Exit carries its code: both are SystemExit
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
