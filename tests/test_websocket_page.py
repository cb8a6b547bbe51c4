"""examples/live.html in headless Chromium (Debian's ``chromium``, installed by
.ci/run): it subscribes to a running service's websocket_out, sends three items
to its websocket_in, and shows them as they arrive, as text: a hostile field runs
nothing. Driven over the DevTools protocol (a page polled for what it shows), not
``--dump-dom``: virtual time does not wait for WebSocket traffic."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.websocket import served
from tests.browser import evaluate, headless, page_of
from tests.redisenv import free_port

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "examples" / "live.html"
HOSTILE = "</li><img src=x onerror=\"document.title='pwned'\"><script>x=1</script>"


def test_the_page_shows_items_as_they_arrive_and_runs_nothing_they_hold() -> None:
    port = free_port()
    query = urllib.parse.urlencode(
        {
            "service": f"ws://127.0.0.1:{port}",
            "out": "/live",
            "in": "/feed",
            "symbol": HOSTILE,
        }
    )
    with served(port), headless(f"{PAGE.as_uri()}?{query}") as active_port:
        shown = asyncio.run(_shown(active_port))
    assert shown["count"] == 3
    assert [json.loads(text)["seq"] for text in shown["texts"]] == [0, 1, 2]
    assert all(json.loads(text)["symbol"] == HOSTILE for text in shown["texts"])
    assert shown["title"] == "portwright live items"  # the onerror never ran
    assert shown["images"] == 0 and shown["scripts"] == 1  # only the page's own


async def _shown(active_port: Path) -> dict[str, Any]:
    """What the page shows once three items arrived (30 s at most)."""
    deadline = time.monotonic() + 30
    expression = """JSON.stringify({
        count: document.querySelectorAll("li.item").length,
        texts: [...document.querySelectorAll("li.item")].map(li => li.textContent),
        title: document.title,
        images: document.images.length,
        scripts: document.scripts.length,
    })"""
    async with connect(await page_of(active_port, deadline), max_size=None) as page:
        for number in range(1, 10_000):
            shown = await evaluate(page, number, expression)
            if shown.get("count", 0) >= 3 or time.monotonic() > deadline:
                return shown
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")
