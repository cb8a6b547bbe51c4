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
    """``out → in · memory · buffer 1024 · block``: what a connection is made of
    (``· key symbol · 8 partitions`` when keyed, the partitions over redis)."""
    parts = [
        f"{connection.source.name} → {connection.target.name}",
        connection.transport,
        f"buffer {connection.buffer_size}",
    ]
    if connection.transport == "memory":  # a stream keeps every item: no overflow
        parts.append(connection.overflow)
    if connection.key is not None:
        parts.append(f"key {connection.key}")
        if connection.transport == "redis" and connection.partitions is not None:
            parts.append(f"{connection.partitions} partitions")
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


# -- Layered SVG, pure Python (the status page) ---------------------------------------
#
# The status page draws the service at generate time, so the drawing must not depend
# on what is installed (Graphviz may be missing) and must be the same text every time:
# a small layered layout, left to right, computed here. A component's layer is the
# longest path to it from a component nothing feeds (feedback connections left out,
# as dot leaves them out of its ranking); within a layer, blueprint order.

BOX_WIDTH = 210
LAYER_GAP = 120
ROW_GAP = 36
PORT_ROW = 30
BOX_HEAD = 40


def layers(blueprint: Blueprint) -> dict[str, int]:
    """Each component's column: the longest path to it, feedback connections aside."""
    layer = {c.name: 0 for c in blueprint.components}
    forward = [c for c in blueprint.connections if not c.feedback]
    for _ in blueprint.components:  # validate refused cycles without feedback
        changed = False
        for connection in forward:
            source, target = connection.source.component, connection.target.component
            if layer[target] < layer[source] + 1:
                layer[target] = layer[source] + 1
                changed = True
        if not changed:
            break
    return layer


def _height(component: Component) -> int:
    rows = max(len(component.inputs), len(component.outputs), 1)
    return BOX_HEAD + rows * PORT_ROW + 8


def _xml(text: str) -> str:
    # descriptions are free text: escaped for SVG text and attributes alike
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def status_svg(blueprint: Blueprint) -> str:
    """The service as an SVG whose ports a status page colours and labels.

    Every port is a ``rect`` with id ``p-<component>-<port>`` and a ``text`` with id
    ``n-<component>-<port>`` for its numbers; every component a ``g`` with id
    ``c-<component>``.
    """
    column = layers(blueprint)
    places: dict[str, tuple[int, int]] = {}
    heights: dict[int, int] = {}
    for component in blueprint.components:
        index = column[component.name]
        x = 30 + index * (BOX_WIDTH + LAYER_GAP)
        y = heights.get(index, 20)
        places[component.name] = (x, y)
        heights[index] = y + _height(component) + ROW_GAP
    width = 60 + (max(column.values()) + 1) * (BOX_WIDTH + LAYER_GAP) - LAYER_GAP
    height = max(heights.values()) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
    ]

    def anchor(port: Port) -> tuple[int, int]:
        x, y = places[port.component]
        component = blueprint.component(port.component)
        side = component.inputs if port.direction == "in" else component.outputs
        index = [p.name for p in side].index(port.name)
        edge_x = x if port.direction == "in" else x + BOX_WIDTH
        return edge_x, y + BOX_HEAD + index * PORT_ROW + 12

    for connection in blueprint.connections:
        (x1, y1), (x2, y2) = anchor(connection.source), anchor(connection.target)
        bend = max(60, abs(x2 - x1) // 2)
        kind = (
            "feedback"
            if connection.feedback
            else "redis" if connection.transport == "redis" else "memory"
        )
        parts.append(
            f'<path class="edge {kind}" d="M{x1},{y1} C{x1 + bend},{y1} '
            f'{x2 - bend},{y2} {x2},{y2}"><title>{_xml(edge_label(connection))}'
            "</title></path>"
        )
    for component in blueprint.components:
        x, y = places[component.name]
        parts.append(f'<g class="component" id="c-{component.name}">')
        if component.description:
            parts.append(f"<title>{_xml(component.description)}</title>")
        parts.append(
            f'<rect class="box" x="{x}" y="{y}" width="{BOX_WIDTH}" '
            f'height="{_height(component)}" rx="6"/>'
            f'<text class="name" x="{x + 10}" y="{y + 18}">{component.name}</text>'
            f'<text class="kind" x="{x + 10}" y="{y + 32}">{component.kind}</text>'
        )
        for ports, left in ((component.inputs, True), (component.outputs, False)):
            for index, port in enumerate(ports):
                top = y + BOX_HEAD + index * PORT_ROW
                px = x - 6 if left else x + BOX_WIDTH - 6
                tx = x + 12 if left else x + BOX_WIDTH - 12
                align = "start" if left else "end"
                ident = f"{component.name}-{port.name}"
                parts.append(
                    f'<rect class="port" id="p-{ident}" x="{px}" y="{top + 4}" '
                    'width="12" height="16" rx="2"/>'
                    f'<text class="port-name" x="{tx}" y="{top + 12}" '
                    f'text-anchor="{align}">{port.name}</text>'
                    f'<text class="numbers" id="n-{ident}" x="{tx}" y="{top + 25}" '
                    f'text-anchor="{align}"></text>'
                )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
