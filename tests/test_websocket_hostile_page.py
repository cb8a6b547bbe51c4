"""A websocket_out's page, built from a blueprint whose descriptions are hostile,
in headless Chromium: the generated service runs in its own process, the page a
``GET`` of the route returns connects to it and shows items as they arrive, and the
descriptions (``<script>``, ``</title><img onerror>``) show as their characters and
run nothing (docs/blueprint.md, "Live clients"; HARD-PARTS, "Pages that show
blueprint text")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from generator.generation import build
from generator.loader import load_text
from tests.browser import evaluate, headless, page_of
from tests.redisenv import free_port

#: each would change the title or add an element if it ran or were parsed as HTML
SCRIPT = "<script>document.title='pwned-script'</script>"
IMAGE = "</title><img src=x onerror=\"document.title='pwned-image'\">"
BLUEPRINT = f"""\
portwright: 1
name: hostile_live
description: {json.dumps("the service " + IMAGE + SCRIPT)}
schemas:
  Tick:
    fields: {{n: int}}
components:
  api: {{kind: api_endpoint, route: POST /ticks, output: Tick}}
  board:
    kind: websocket_out
    description: {json.dumps("the board " + SCRIPT + IMAGE)}
    route: /live/board
    input: Tick
  store: {{kind: sink, input: Tick}}
connections:
  - api.out -> board.in
  - api.out -> store.in
"""


def test_the_page_shows_items_and_its_hostile_descriptions_as_text(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    build(load_text(BLUEPRINT, "hostile.yaml"), BLUEPRINT, project)
    port = free_port()
    with _running(project, port), headless(f"http://127.0.0.1:{port}/live/board") as at:
        shown = asyncio.run(_shown(at, port))
    assert [json.loads(text) for text in shown["texts"]] == [{"n": n} for n in range(3)]
    assert shown["title"] == "board: live items"  # no script or handler ran
    assert shown["description"] == "the board " + SCRIPT + IMAGE
    assert shown["service"] == "the service " + IMAGE + SCRIPT
    assert shown["images"] == 0
    assert shown["scripts"] == 2  # the page's data and its own script, no other


@contextmanager
def _running(project: Path, port: int) -> Iterator[None]:
    """The generated service, served by its own entry point in its own process."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hostile_live", "--port", str(port)],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(project)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise AssertionError(log.read().decode()[-2000:]) from None
                    time.sleep(0.05)
            yield
        finally:
            process.terminate()
            process.wait(10)


_EXPRESSION = """JSON.stringify({
    status: document.getElementById("status").textContent,
    texts: [...document.querySelectorAll("li.item")].map(li => li.textContent),
    title: document.title,
    description: document.getElementById("description").textContent,
    service: document.getElementById("service").textContent,
    images: document.images.length,
    scripts: document.scripts.length,
})"""


async def _shown(active_port: Path, port: int) -> dict[str, Any]:
    """What the page shows once connected and sent three items (30 s at most)."""
    deadline = time.monotonic() + 30
    socket = await page_of(active_port, deadline)
    async with (
        httpx.AsyncClient(trust_env=False) as client,
        connect(socket, max_size=None) as page,
    ):
        sent = False
        for number in range(1, 10_000):
            shown = await evaluate(page, number, _EXPRESSION)
            if not sent and shown.get("status") == "connected":
                for n in range(3):  # the page is subscribed: send the items
                    posted = await client.post(
                        f"http://127.0.0.1:{port}/ticks", json={"n": n}
                    )
                    assert posted.status_code == 202, posted.text
                sent = True
            if len(shown.get("texts", ())) >= 3 or time.monotonic() > deadline:
                return shown
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")
