"""The Grafana dashboard of every project (issue #20): SLOs on top, one row per
component, every panel on the Prometheus data source variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.loader import load_blueprint, load_text
from generator.ops.dashboard import dashboard_json, dashboard_path, panel_queries
from generator.planner import plan
from generator.render import template_names

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_one_row_per_component_and_slos_on_top(example: Path) -> None:
    blueprint = load_blueprint(example)
    board = json.loads(dashboard_json(blueprint))
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    expected = [f"{c.name} ({c.kind})" for c in blueprint.components]
    has_slos = any(c.objectives for c in blueprint.components)
    assert rows == (["SLOs"] if has_slos else []) + expected
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
    queries = [t["expr"] for p in panels for t in p["targets"]]
    assert queries == panel_queries(blueprint)
    assert board["templating"]["list"][0]["type"] == "datasource"
    assert "null" not in dashboard_json(blueprint)


def test_a_component_row_shows_its_rates_utilization_age_errors_and_lag() -> None:
    blueprint = load_blueprint(ROOT / "blueprints" / "order_pipeline_redis.yaml")
    board = json.loads(dashboard_json(blueprint))
    titles = {p["title"] for p in board["panels"]}
    for title in (
        "Messages in / out",
        "Buffer utilization",
        "Message age",
        "Errors and drops",
    ):
        assert f"score: {title}" in titles
    assert any(t.endswith(": Redis lag and pending") for t in titles)
    assert "orders_api: Requests answered" in titles
    assert "orders_api-availability: error budget left" in titles
    assert "orders_api: Buffer utilization" not in titles  # it has no input buffer


def test_without_slos_there_is_no_slo_row() -> None:
    blueprint = load_text(
        "portwright: 1\nname: shop\nschemas:\n  Order: {fields: {id: str}}\n"
        "components:\n  api: {kind: api_endpoint, route: POST /o, output: Order}\n"
        "  store: {kind: sink, input: Order}\nconnections:\n  - api.out -> store.in\n"
    )
    board = json.loads(dashboard_json(blueprint))
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == [
        "api (api_endpoint)",
        "store (sink)",
    ]


def test_every_example_plans_its_dashboard() -> None:
    for example in EXAMPLES:
        blueprint = load_blueprint(example)
        planned = plan(blueprint, example.read_text(), template_names())
        files = {f.path: f for f in planned.files}
        assert files[dashboard_path(blueprint)].content == dashboard_json(blueprint)
