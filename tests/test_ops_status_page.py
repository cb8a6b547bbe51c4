"""The status page in a real browser (issue #20): Debian's chromium, headless, loads
``/status`` of a generated service; every component is drawn, the numbers change
while load runs, and a hostile description shows as text and runs nothing.

Outside CI the test skips when chromium is missing; in CI (CI=true) it fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.generation import generate
from generator.loader import load_blueprint
from tests.browser import chromium
from tests.redisenv import free_port
from tests.test_ops_prometheus import Load
from tests.test_served import ROOT, environment, wait_for

# Each lands somewhere else: the page's HTML text and inline JSON (the service's
# description) and the drawing's SVG title (a component's).
HOSTILE_SERVICE = "</title></script><script>document.title='PWNED'</script><img src=x>"
HOSTILE_COMPONENT = "</title><img src=x onerror=\"document.title='PWNED'\">"


def hostile_blueprint(folder: Path) -> Path:
    text = (ROOT / "blueprints" / "order_pipeline.yaml").read_text(encoding="utf-8")
    # JSON strings are YAML double-quoted scalars: the text arrives as written
    text = re.sub(
        r"^description: .*$",
        lambda _: f"description: {json.dumps(HOSTILE_SERVICE)}",
        text,
        count=1,
        flags=re.M,
    )
    text = text.replace(
        "  score:\n", f"  score:\n    description: {json.dumps(HOSTILE_COMPONENT)}\n", 1
    )
    path = folder / "order_pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    blueprint = hostile_blueprint(tmp_path)
    project = tmp_path / "order_pipeline"
    generate(blueprint, project, gate=False)
    port = free_port()
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "order_pipeline", "--port", str(port)],
        cwd=project,
        env=environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        yield blueprint, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def browse(binary: str, url: str, profile: Path, *extra: str) -> str:
    """What headless chromium shows of ``url`` after the page ran ~3 s of timers."""
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=3000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def numbers(dom: str, ident: str) -> str:
    match = re.search(rf'id="{re.escape(ident)}"[^>]*>([^<]*)<', dom)
    assert match is not None, f"{ident} is not on the page"
    return match.group(1)


def test_the_status_page_shows_every_component_and_live_numbers(
    service: tuple[Path, int], tmp_path: Path
) -> None:
    binary = chromium()
    blueprint_path, port = service
    blueprint = load_blueprint(blueprint_path)
    url = f"http://127.0.0.1:{port}/status"
    idle = browse(binary, url, tmp_path / "profile-1", "--dump-dom")
    with Load(port, blueprint):
        busy = browse(binary, url, tmp_path / "profile-2", "--dump-dom")
        shot = tmp_path / "status.png"
        browse(
            binary,
            url,
            tmp_path / "profile-3",
            f"--screenshot={shot}",
            "--window-size=1600,900",
        )
    assert shot.stat().st_size > 0  # kept under the pytest tmp dir as the artifact

    for component in blueprint.components:
        assert f'id="c-{component.name}"' in busy, component.name
        for port_ in (*component.inputs, *component.outputs):
            assert numbers(busy, f"n-{component.name}-{port_.name}"), port_.ref
    # the numbers moved: idle, nothing passes the scorer; under load, items do
    assert numbers(idle, "n-score-in").startswith("0/s")
    assert not numbers(busy, "n-score-in").startswith("0/s")

    # the hostile descriptions are text: no element was made of them, nothing ran
    for dom in (idle, busy):
        assert "<img" not in dom
        title = re.search(r"<title>(.*?)</title>", dom, re.S)
        assert title is not None and "PWNED" not in title.group(1)
        assert "&lt;img src=x&gt;" in dom  # the service's, shown as text
