"""examples/live.html in headless Chromium (Debian's ``chromium``, installed by
.ci/run): it subscribes to a running service's websocket_out, sends three items
to its websocket_in, and shows them as they arrive, as text: a hostile field runs
nothing. Driven over the DevTools protocol (a page polled for what it shows), not
``--dump-dom``: virtual time does not wait for WebSocket traffic."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.websocket import served
from tests.redisenv import free_port, missing

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "examples" / "live.html"
HOSTILE = "</li><img src=x onerror=\"document.title='pwned'\"><script>x=1</script>"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "no chromium: apt-get install -y chromium (bash .ci/run does)"
        missing(reason)
    return found


def test_the_page_shows_items_as_they_arrive_and_runs_nothing_they_hold() -> None:
    browser = chromium()
    port = free_port()
    query = urllib.parse.urlencode(
        {
            "service": f"ws://127.0.0.1:{port}",
            "out": "/live",
            "in": "/feed",
            "symbol": HOSTILE,
        }
    )
    with (
        served(port),
        tempfile.TemporaryDirectory(prefix="portwright-chromium-") as profile,
    ):
        process = subprocess.Popen(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"{PAGE.as_uri()}?{query}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            shown = asyncio.run(_shown(Path(profile) / "DevToolsActivePort"))
        finally:
            process.terminate()
            process.wait(10)
    assert shown["count"] == 3
    assert [json.loads(text)["seq"] for text in shown["texts"]] == [0, 1, 2]
    assert all(json.loads(text)["symbol"] == HOSTILE for text in shown["texts"])
    assert shown["title"] == "portwright live items"  # the onerror never ran
    assert shown["images"] == 0 and shown["scripts"] == 1  # only the page's own


async def _shown(active_port: Path) -> dict[str, Any]:
    """What the page shows once three items arrived (30 s at most)."""
    deadline = time.monotonic() + 30
    while not active_port.exists() or not active_port.read_text().strip():
        assert time.monotonic() < deadline, "chromium did not open DevTools"
        await asyncio.sleep(0.1)
    devtools = int(active_port.read_text().split()[0])
    async with httpx.AsyncClient(trust_env=False) as client:
        while True:
            pages = [
                target
                for target in (
                    await client.get(f"http://127.0.0.1:{devtools}/json/list")
                ).json()
                if target["type"] == "page"
            ]
            if pages:
                break
            assert time.monotonic() < deadline, "chromium opened no page"
            await asyncio.sleep(0.1)
    expression = """JSON.stringify({
        count: document.querySelectorAll("li.item").length,
        texts: [...document.querySelectorAll("li.item")].map(li => li.textContent),
        title: document.title,
        images: document.images.length,
        scripts: document.scripts.length,
    })"""
    async with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as page:
        for number in range(1, 10_000):
            await page.send(
                json.dumps(
                    {
                        "id": number,
                        "method": "Runtime.evaluate",
                        "params": {"expression": expression, "returnByValue": True},
                    }
                )
            )
            while True:
                answer = json.loads(await page.recv())
                if answer.get("id") == number:
                    break
            shown: dict[str, Any] = json.loads(answer["result"]["result"]["value"])
            if shown["count"] >= 3 or time.monotonic() > deadline:
                return shown
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")
