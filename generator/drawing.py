"""The service as a picture: components, their ports, and the connections between them.

One drawing, three spellings: Mermaid (GitHub renders it; the emitted README's diagram
is this), Graphviz ``dot`` text, and SVG (``dot -Tsvg``). Every connection shows its
ports, transport, buffer size and overflow policy; a feedback connection is dashed
and labelled. Only names the loader checked (identifiers) and closed lists (kinds,
transports, policies) reach a drawing: no blueprint text needs escaping.
"""

from __future__ import annotations

import shutil
import subprocess

from .blueprint import Blueprint, Component, Connection, Port
from .errors import PortwrightError

FORMATS = ("mermaid", "dot", "svg")
INSTALL_GRAPHVIZ = (
    "install Graphviz: apt-get install graphviz (Debian, Ubuntu), "
    "brew install graphviz (macOS), or see https://graphviz.org/download/"
)


class GraphvizMissing(PortwrightError):
    """SVG was asked for and Graphviz's ``dot`` is not on PATH."""


def edge_label(connection: Connection) -> str:
    """``out → in · memory · buffer 1024 · block``: what a connection is made of."""
    parts = [
        f"{connection.source.name} → {connection.target.name}",
        connection.transport,
        f"buffer {connection.buffer_size}",
    ]
    if connection.transport == "memory":  # a stream keeps every item: no overflow
        parts.append(connection.overflow)
    if connection.feedback:
        parts.append("feedback")
    return " · ".join(parts)


# -- Mermaid --------------------------------------------------------------------------


def _node(name: str) -> str:
    # a prefix keeps Mermaid's keywords (``end``, ``graph``...) out of node ids
    return f"c_{name}"


def mermaid(blueprint: Blueprint) -> str:
    """A Mermaid flowchart: memory hops plain, Redis streams thick, feedback dotted."""
    lines = ["flowchart LR"]
    for component in blueprint.components:
        lines.append(
            f'    {_node(component.name)}["{component.name}<br/>({component.kind})"]'
        )
    for connection in blueprint.connections:
        source = _node(connection.source.component)
        target = _node(connection.target.component)
        label = edge_label(connection)
        if connection.feedback:
            lines.append(f'    {source} -. "{label}" .-> {target}')
        elif connection.transport == "redis":
            lines.append(f'    {source} == "{label}" ==> {target}')
        else:
            lines.append(f'    {source} -- "{label}" --> {target}')
    return "\n".join(lines) + "\n"


# -- Graphviz -------------------------------------------------------------------------


def _ports(ports: tuple[Port, ...], side: str) -> str:
    return "|".join(f"<{side}_{p.name}> {p.name}: {p.schema}" for p in ports)


def _record(component: Component) -> str:
    """A record: inputs on the left, the component in the middle, outputs right.

    With ``rankdir=LR`` a record's top level is vertical, hence the outer braces.
    """
    middle = f"{component.name}\\n({component.kind})"
    fields = [
        "{" + _ports(component.inputs, "i") + "}" if component.inputs else "",
        middle,
        "{" + _ports(component.outputs, "o") + "}" if component.outputs else "",
    ]
    return "{" + "|".join(field for field in fields if field) + "}"


def dot(blueprint: Blueprint) -> str:
    """Graphviz ``dot`` text: one record per component, one edge per connection."""
    lines = [
        f'digraph "{blueprint.name}" {{',
        "    rankdir=LR;",
        '    node [shape=record, fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    for component in blueprint.components:
        lines.append(f'    "{component.name}" [label="{_record(component)}"];')
    for connection in blueprint.connections:
        source, target = connection.source, connection.target
        attributes = [f'label="{edge_label(connection)}"']
        if connection.feedback:
            # drawn against the flow: left out of the ranking, so the rest stays LR
            attributes += ['style="dashed"', "constraint=false", 'color="firebrick"']
        elif connection.transport == "redis":
            attributes.append('style="bold"')
        lines.append(
            f'    "{source.component}":"o_{source.name}":e -> '
            f'"{target.component}":"i_{target.name}":w [{", ".join(attributes)}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(blueprint: Blueprint) -> str:
    """The ``dot`` drawing rendered by Graphviz; ``GraphvizMissing`` without it."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing(
            f"--format svg needs Graphviz's 'dot'; {INSTALL_GRAPHVIZ}"
        )
    done = subprocess.run(
        [program, "-Tsvg"],
        input=dot(blueprint),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # our dot text is wrong: a bug, not the user's input
        raise RuntimeError(f"dot -Tsvg failed: {done.stderr.strip()}")
    return done.stdout


def draw(blueprint: Blueprint, form: str) -> str:
    """``blueprint`` drawn in ``form`` (one of ``FORMATS``)."""
    if form == "mermaid":
        return mermaid(blueprint)
    if form == "dot":
        return dot(blueprint)
    if form == "svg":
        return svg(blueprint)
    raise ValueError(f"unknown format {form!r}; use one of {', '.join(FORMATS)}")
