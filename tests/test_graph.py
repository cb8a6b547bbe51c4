"""``portwright graph``: every example drawn in every format, and the README's diagram.

SVG needs Graphviz's ``dot`` (``bash .ci/run`` installs it): without it those tests
skip with the reason, except in CI (``CI=true``), where they fail. The message a user
without Graphviz gets is tested with a PATH that holds no ``dot``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from generator.blueprint import Blueprint
from generator.cli import app
from generator.drawing import FORMATS, edge_label, mermaid
from generator.loader import load_blueprint, load_text
from generator.planner import plan
from generator.render import render_plan, template_names, templates_root

from .redisenv import missing
from .test_partitions_blueprint import BASE, NAME

ROOT = Path(__file__).parent.parent
EXAMPLES = [
    *sorted((ROOT / "blueprints").glob("*.yaml")),
    ROOT / "tests" / "blueprints" / "probe" / "every_feature.yaml",
    ROOT / "tests" / "blueprints" / "ok" / "feedback_loop.yaml",
]
IDS = [path.stem for path in EXAMPLES]
FEEDBACK = ROOT / "tests" / "blueprints" / "ok" / "feedback_loop.yaml"
runner = CliRunner()


def needs_dot() -> None:
    """Skip (fail in CI) when Graphviz is not installed."""
    if shutil.which("dot"):
        return
    reason = (
        "Graphviz's dot is not installed (apt-get install graphviz; bash .ci/run does)"
    )
    missing(reason)


def drawn(path: Path, form: str) -> str:
    result = runner.invoke(app, ["graph", str(path), "--format", form])
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_complete(blueprint: Blueprint, text: str) -> None:
    """Every component, port and connection (with its settings) is in the drawing."""
    for component in blueprint.components:
        assert component.name in text
        assert component.kind in text
    for connection in blueprint.connections:
        assert edge_label(connection) in text


@pytest.mark.parametrize("form", FORMATS)
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_every_example_is_drawn_in_every_format(path: Path, form: str) -> None:
    if form == "svg":
        needs_dot()
    blueprint = load_blueprint(path)
    text = drawn(path, form)
    if form == "svg":
        assert text.lstrip().startswith(("<?xml", "<svg", "<!--"))
        # each node is a group titled with the component's name
        titles = set(re.findall(r"<title>([^<]*)</title>", text))
        assert {c.name for c in blueprint.components} <= titles
        assert len(re.findall(r'class="edge"', text)) == len(blueprint.connections)
    else:
        assert_complete(blueprint, text)
    if form == "dot":
        for component in blueprint.components:
            for port in (*component.inputs, *component.outputs):
                assert f"{port.name}: {port.schema}" in text


def test_the_dot_text_is_what_graphviz_reads() -> None:
    needs_dot()
    for path in EXAMPLES:
        done = subprocess.run(
            ["dot", "-Tcanon"],
            input=drawn(path, "dot"),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr, done.stderr


def test_connections_show_transport_buffer_and_overflow() -> None:
    blueprint = load_blueprint(ROOT / "blueprints" / "sensor_alerts.yaml")
    text = drawn(ROOT / "blueprints" / "sensor_alerts.yaml", "mermaid")
    routine = next(c for c in blueprint.connections if c.overflow == "drop_oldest")
    assert (
        f"{routine.source.name} → {routine.target.name} · memory · "
        f"buffer {routine.buffer_size} · drop_oldest"
    ) in text
    redis_text = drawn(ROOT / "blueprints" / "order_pipeline_redis.yaml", "mermaid")
    # a Redis stream keeps every item: no overflow policy, a thick arrow
    assert "==>" in redis_text
    assert '· redis · buffer 64"' in redis_text


def test_feedback_loops_are_marked() -> None:
    blueprint = load_blueprint(FEEDBACK)
    loop = next(c for c in blueprint.connections if c.feedback)
    chart = drawn(FEEDBACK, "mermaid")
    line = next(ln for ln in chart.splitlines() if edge_label(loop) in ln)
    assert "feedback" in edge_label(loop)
    assert " -. " in line and " .-> " in line  # dotted, unlike every other arrow
    assert sum(" -. " in ln for ln in chart.splitlines()) == 1
    graph = drawn(FEEDBACK, "dot")
    edge = next(ln for ln in graph.splitlines() if edge_label(loop) in ln)
    assert 'style="dashed"' in edge and "constraint=false" in edge


def test_mermaid_node_ids_cannot_be_keywords(tmp_path: Path) -> None:
    """A component called ``end`` would close a Mermaid flowchart; ids are prefixed."""
    text = (ROOT / "blueprints" / "order_pipeline.yaml").read_text("utf-8")
    assert "ledger" in text
    path = tmp_path / "keyword.yaml"
    path.write_text(re.sub(r"\bledger\b", "end", text), encoding="utf-8")
    chart = drawn(path, "mermaid")
    assert re.search(r"^\s+end\b", chart, re.MULTILINE) is None
    assert 'c_end["end<br/>(sink)"]' in chart


def test_the_output_option_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "graph.dot"
    path = EXAMPLES[0]
    result = runner.invoke(app, ["graph", str(path), "-f", "dot", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text("utf-8") == drawn(path, "dot")


def test_the_emitted_readme_draws_with_the_same_code() -> None:
    root = templates_root()
    for path in EXAMPLES:
        blueprint = load_blueprint(path)
        the_plan = plan(blueprint, path.read_text("utf-8"), template_names(root))
        readme = render_plan(the_plan, root)["README.md"]
        assert "```mermaid\n" + mermaid(blueprint) + "```" in readme


def test_svg_without_graphviz_says_how_to_install_it(tmp_path: Path) -> None:
    """Exit 1 (the blueprint is fine; a tool is missing), and the command to run."""
    empty = tmp_path / "bin"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "generator", "graph", str(EXAMPLES[0]), "-f", "svg"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": str(empty)},
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr
    assert "apt-get install graphviz" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    # the other formats need nothing
    done = subprocess.run(
        [sys.executable, "-m", "generator", "graph", str(EXAMPLES[0]), "-f", "dot"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": str(empty)},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def test_an_invalid_blueprint_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("portwright: 1\nname: Bad Name\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "generator", "graph", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {path}:")


def test_a_keyed_connection_shows_its_key_and_over_redis_its_partitions() -> None:
    first, _, unkeyed = load_text(BASE, NAME).connections
    assert (
        edge_label(first)
        == "out → in · redis · buffer 1024 · key symbol · 4 partitions"
    )
    assert edge_label(unkeyed) == "out → in · redis · buffer 1024"
    memory = BASE.replace("transport: redis\n", "").replace("    partitions: 4\n", "")
    first, _, _ = load_text(memory, NAME).connections
    assert edge_label(first) == "out → in · memory · buffer 1024 · block · key symbol"
