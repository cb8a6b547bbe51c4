"""Operations (issue #20): SLOs and guardrails in the blueprint, the Prometheus rules,
their promtool tests and the runbook, checked by promtool on every example."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from generator.errors import BlueprintError
from generator.generation import generate
from generator.loader import load_blueprint, load_text
from generator.ops.rules import RULE_TESTS, RULES, rule_tests_yaml, rules_yaml
from generator.ops.runbook import RUNBOOK, runbook_markdown
from generator.planner import plan
from generator.render import template_names
from tests.redisenv import missing

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))

BASE = """\
portwright: 1
name: shop
schemas:
  Order: {fields: {id: str}}
components:
  api:
    kind: api_endpoint
    route: POST /orders
    output: Order
{api}
  store:
    kind: sink
    input: Order
{store}
connections:
  - api.out -> store.in
"""


def _blueprint(api: str = "", store: str = "", defaults: str = "") -> str:
    text = BASE.replace("{api}\n", api + "\n").replace("{store}\n", store + "\n")
    return text + defaults


def promtool() -> str:
    """promtool, or a skip (outside CI) / a failure (in CI) saying how to get it."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is missing: apt-get install prometheus (bash .ci/run does)"
        missing(reason)
    return found


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_promtool_checks_and_tests_the_rules_of_every_example(
    example: Path, tmp_path: Path
) -> None:
    tool = promtool()
    blueprint = load_blueprint(example)
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_yaml(blueprint))
    tests = tmp_path / "rules.test.yml"
    tests.write_text(rule_tests_yaml(blueprint))
    checked = subprocess.run(
        [tool, "check", "rules", "--lint-fatal", str(rules)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", str(tests)], capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_fails_a_rule_that_does_not_fire_as_its_test_says(
    tmp_path: Path,
) -> None:
    """The rule tests can fail: a buffer threshold the test series never reach."""
    tool = promtool()
    blueprint = load_text(_blueprint())
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_yaml(blueprint).replace(" > 0.8", " > 1.5"))
    tests = tmp_path / "rules.test.yml"
    tests.write_text(rule_tests_yaml(blueprint))
    tested = subprocess.run(
        [tool, "test", "rules", str(tests)], capture_output=True, text=True
    )
    assert tested.returncode != 0
    assert "PortwrightBufferHigh" in tested.stdout + tested.stderr


def test_every_example_plans_rules_rule_tests_and_runbook() -> None:
    for example in EXAMPLES:
        planned = plan(load_blueprint(example), example.read_text(), template_names())
        paths = {f.path for f in planned.files}
        assert {RULES, RULE_TESTS, RUNBOOK} <= paths, example


def test_slo_rules_follow_the_blueprint() -> None:
    blueprint = load_text(
        _blueprint(
            api="    slo: {availability: 99.5%, latency: {p95: 100ms}, window: 28d}",
            store="    slo: {freshness: {p99: 5s}}",
        )
    )
    document = yaml.safe_load(rules_yaml(blueprint))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    records = {(r.get("record"), r["labels"].get("slo")) for r in rules}
    for slo in ("api-availability", "api-latency", "store-freshness"):
        for window in ("5m", "30m", "1h", "6h", "3d"):
            assert (f"slo:sli_error:ratio_rate{window}", slo) in records
    assert ("slo:sli_error:ratio_rate28d", "api-availability") in records
    latency = next(
        r["expr"]
        for r in rules
        if r.get("record") == "slo:sli_error:ratio_rate5m"
        and r["labels"]["slo"] == "api-latency"
    )
    assert 'le="0.1"' in latency and "http_request_duration_seconds" in latency
    freshness = next(
        r["expr"]
        for r in rules
        if r.get("record") == "slo:sli_error:ratio_rate1h"
        and r["labels"]["slo"] == "store-freshness"
    )
    assert 'le="5.0"' in freshness and "message_age_seconds" in freshness
    budget = next(
        r["expr"]
        for r in rules
        if r.get("record") == "slo:error_budget:ratio"
        and r["labels"]["slo"] == "api-availability"
    )
    assert budget == "vector(0.005)"
    page = next(
        r
        for r in rules
        if r.get("alert") == "PortwrightErrorBudgetBurn"
        and r["labels"]["severity"] == "page"
        and r["labels"]["slo"] == "api-availability"
    )
    assert "ratio_rate1h" in page["expr"] and "ratio_rate5m" in page["expr"]
    assert "(14.4 * 0.005)" in page["expr"] and "(6 * 0.005)" in page["expr"]
    assert page["annotations"]["runbook_url"] == "ops/RUNBOOK.md#slo-api-availability"


def test_without_slo_there_are_no_slo_rules() -> None:
    text = rules_yaml(load_text(_blueprint()))
    assert "slo:" not in text and "PortwrightErrorBudgetBurn" not in text


def test_every_alert_has_summary_description_and_a_runbook_section() -> None:
    for example in EXAMPLES:
        blueprint = load_blueprint(example)
        document = yaml.safe_load(rules_yaml(blueprint))
        runbook = runbook_markdown(blueprint)
        anchors = set(re.findall(r'<a id="([^"]+)"></a>', runbook))
        alerts = [
            rule
            for group in document["groups"]
            for rule in group["rules"]
            if "alert" in rule
        ]
        assert alerts
        for rule in alerts:
            notes = rule["annotations"]
            assert notes["summary"] and notes["description"], rule
            path, anchor = notes["runbook_url"].split("#")
            assert path == RUNBOOK and anchor in anchors, rule
            component = rule["labels"].get("component")
            if component is not None:
                assert component in notes["description"], rule


def test_guardrail_thresholds_come_from_defaults_and_the_component() -> None:
    blueprint = load_text(
        _blueprint(
            store="    guardrails: {buffer_utilization: 95%}",
            defaults="defaults:\n  guardrails: {buffer_utilization: 60%}\n",
        )
    )
    rules = yaml.safe_load(rules_yaml(blueprint))["groups"][-1]["rules"]
    buffer = {
        r["labels"]["component"]: r
        for r in rules
        if r["alert"] == "PortwrightBufferHigh"
    }
    assert set(buffer) == {"store"}  # an api_endpoint has no input buffer
    assert buffer["store"]["expr"].endswith("> 0.95")
    assert "95%" in buffer["store"]["annotations"]["description"]
    assert (
        load_text(_blueprint()).component("store").guardrails.buffer_utilization == 80
    )


@pytest.mark.parametrize(
    ("api", "store", "line", "message"),
    [
        ("    slo: {availability: 99.9}", "", 10, "expected a string"),
        ("    slo: {availability: 99.9 pct}", "", 10, "is not a percentage"),
        ("    slo: {availability: 100%}", "", 10, "less than 100%"),
        ("    slo: {availability: 99%, window: 30m}", "", 10, "whole number of days"),
        ("    slo: {latency: {p99: 300ms}}", "", 10, "choose one of"),
        ("    slo: {latency: {p99: 250ms, p50: 10ms}}", "", 10, "exactly one quantile"),
        ("    slo: {window: 7d}", "", 10, "names 'availability'"),
        ("", "    slo: {availability: 99%}", 14, "availability"),
        ("", "    slo: {freshness: {p99: 7s}}", 14, "message age histogram"),
        ("", "    guardrails: {lag: 0}", 14, "lag"),
        ("", "    guardrails: {buffer_utilization: 101%}", 14, "up to 100%"),
    ],
)
def test_misused_slo_and_guardrails_are_refused_at_their_line(
    api: str, store: str, line: int, message: str
) -> None:
    with pytest.raises(BlueprintError) as caught:
        load_text(_blueprint(api=api, store=store), "shop.yaml")
    text = str(caught.value)
    assert f"shop.yaml:{line}:" in text, text
    assert message in text, text


def test_the_emitted_readme_gives_probe_settings_and_points_to_ops(
    tmp_path: Path,
) -> None:
    project = tmp_path / "order_pipeline"
    generate(ROOT / "blueprints" / "order_pipeline.yaml", project, gate=False)
    readme = (project / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Kubernetes probes", 1)[1].split("```yaml\n", 1)[1]
    probes = yaml.safe_load(block.split("```", 1)[0])
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    for path in (RULES, RULE_TESTS, RUNBOOK, "ops/grafana/order_pipeline.json"):
        assert path.split("/")[-1] in readme
        assert (project / path).is_file(), path
    assert (project / "order_pipeline" / "status.svg").is_file()
