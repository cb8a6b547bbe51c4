"""The emitted rules against a real Prometheus (issue #20): Debian's prometheus, on
127.0.0.1 and a free port, scrapes each generated example under load every second.

Every recording rule and every dashboard query evaluates and returns series, and pausing a sink makes its
buffer alert go pending (in a test-only copy of the rules whose ``for`` is seconds,
not minutes). Outside CI the test skips when prometheus is missing; in CI it fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from generator.blueprint import Blueprint
from generator.loader import load_blueprint
from generator.ops.dashboard import panel_queries
from tests.redisenv import (
    delete_prefixed,
    free_port,
    missing,
    redis_url,
    unique_prefix,
)
from tests.test_served import ROOT, environment, served, wait_for

EXAMPLES = sorted(p.stem for p in (ROOT / "blueprints").glob("*.yaml"))
# The sink's user method waits while this file exists: the sink is paused.
PAUSABLE = '''
from pathlib import Path

import anyio

from ..bases import ReviewQueueBase
from ..schemas import ScoredOrder

PAUSE = Path(__file__).with_name("PAUSE")


class ReviewQueue(ReviewQueueBase):
    """Keeps nothing; waits while PAUSE exists."""

    async def consume(self, item: ScoredOrder) -> None:
        """Wait while paused."""
        while PAUSE.exists():
            await anyio.sleep(0.05)
'''


def prometheus() -> str:
    """The prometheus binary, or a skip (outside CI) / a failure (in CI)."""
    found = shutil.which("prometheus")
    if found is None:
        reason = "prometheus is missing: apt-get install prometheus (bash .ci/run does)"
        missing(reason)
    return found


def _fast_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """The rules with every 'for' a few seconds: what the test may wait for."""
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "3s"
    return rules


@pytest.fixture(params=EXAMPLES)
def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Path, int]]:
    name: str = request.param
    project = served(name, tmp_path)
    if name == "order_pipeline":
        component = project / name / "components" / "review_queue.py"
        component.write_text(PAUSABLE, encoding="utf-8")
    variables: dict[str, str] = {}
    blueprint = load_blueprint(project / ".portwright" / "blueprint.yaml")
    if blueprint.uses_redis:
        url, prefix = redis_url(), unique_prefix()
        upper = name.upper()
        variables = {f"{upper}_REDIS_URL": url, f"{upper}_REDIS_PREFIX": prefix}
    port = free_port()
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", name, "--port", str(port)],
        cwd=project,
        env=environment(**variables),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        yield project, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if variables:
            delete_prefixed(variables[f"{name.upper()}_REDIS_URL"], prefix)


@pytest.fixture
def scraper(
    service: tuple[Path, int], tmp_path: Path
) -> Iterator[tuple[Path, int, str]]:
    binary = prometheus()
    project, target = service
    rules = yaml.safe_load((project / "ops/prometheus/rules.yml").read_text())
    fast = tmp_path / "rules.yml"
    fast.write_text(yaml.safe_dump(_fast_rules(rules)), encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(fast)],
                "scrape_configs": [
                    {
                        "job_name": "service",
                        "static_configs": [{"targets": [f"127.0.0.1:{target}"]}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/-/ready", process, seconds=60)
        yield project, target, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class Load:
    """Sends a valid item to every endpoint of the blueprint, in turn, from a thread
    until stopped (refusals, 401 or 429, are answers too)."""

    def __init__(self, port: int, blueprint: Blueprint) -> None:
        self.stopped = threading.Event()
        self.sent = 0
        self.requests = [
            (c.method or "POST", c.path or "/", blueprint.schema(c.outputs[0].schema))
            for c in blueprint.components
            if c.kind == "api_endpoint"
        ]
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)

    def _run(self, port: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while not self.stopped.is_set():
                for method, path, schema in self.requests:
                    try:
                        client.request(method, path, json=schema.example())
                    except httpx.TransportError:
                        time.sleep(0.05)
                    self.sent += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self._thread.join(timeout=30)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result; an evaluation error fails the test."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = answer.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def poll(check: Any, seconds: float = 45) -> Any:
    """``check()`` until it returns something truthy, within a generous deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    return check()


def test_every_rule_returns_series_and_a_paused_sink_raises_its_alert(
    scraper: tuple[Path, int, str],
) -> None:
    project, target, url = scraper
    rules = yaml.safe_load((project / "ops/prometheus/rules.yml").read_text())
    records = sorted(
        {
            rule["record"]
            for group in rules["groups"]
            for rule in group["rules"]
            if "record" in rule
        }
    )
    # an example without SLOs records nothing: its guardrails are checked below
    assert bool(records) == any(
        c.objectives
        for c in load_blueprint(project / ".portwright" / "blueprint.yaml").components
    )
    blueprint = load_blueprint(project / ".portwright" / "blueprint.yaml")
    with Load(target, blueprint) as load:
        for record in records:
            assert poll(lambda r=record: query(url, r)), f"{record} returned no series"
        # every query of the dashboard, with Grafana's rate interval made concrete
        for panel in panel_queries(blueprint):
            expr = panel.replace("$__rate_interval", "1m")
            assert poll(lambda e=expr: query(url, e)), f"{expr} returned no series"
        # every rule evaluated without error, as Prometheus reports it
        groups = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        for group in groups:
            for rule in group["rules"]:
                assert rule["health"] == "ok", rule
        assert load.sent > 0
        if blueprint.name != "order_pipeline":
            return  # the pausable sink is order_pipeline's

        pause = project / "order_pipeline" / "components" / "PAUSE"
        pause.touch()
        alert = 'ALERTS{alertname="PortwrightBufferHigh",component="review_queue"}'
        found = poll(lambda: query(url, alert))
        pause.unlink()
    assert found, "the buffer alert of the paused sink never went pending"
    assert found[0]["metric"]["alertstate"] in ("pending", "firing")
    assert found[0]["metric"]["port"] == "in"
