"""Headless Chromium for the page tests (Debian's ``chromium``, installed by
.ci/run), driven over the DevTools protocol: ``headless`` opens a page in a browser
of its own, ``page_of`` finds its DevTools socket, ``evaluate`` runs an expression
in it. Not ``--dump-dom``: virtual time does not wait for WebSocket traffic."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.redisenv import missing

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
    """The chromium binary, or a skip (outside CI) / a failure (in CI)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium is missing: apt-get install chromium (bash .ci/run does)")
    return found


@contextlib.contextmanager
def headless(url: str) -> Iterator[Path]:
    """Chromium showing ``url`` with a profile of its own, until the block ends:
    the file where it writes its DevTools port.

    The browser runs in a process group of its own, and the whole group is stopped
    before the profile is removed: its helpers (renderer, crashpad) outlive the
    main process for a moment and still write into the profile.
    """
    profile = Path(tempfile.mkdtemp(prefix="portwright-chromium-"))
    process = subprocess.Popen(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield profile / "DevToolsActivePort"
    finally:
        _stop_group(process)
        shutil.rmtree(profile, ignore_errors=True)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def page_of(active_port: Path, deadline: float) -> str:
    """The DevTools WebSocket of the page the browser opened."""
    while not active_port.exists() or not active_port.read_text().strip():
        assert time.monotonic() < deadline, "chromium did not open DevTools"
        await anyio.sleep(0.1)
    devtools = int(active_port.read_text().split()[0])
    async with httpx.AsyncClient(trust_env=False) as client:
        while True:
            listed = await client.get(f"http://127.0.0.1:{devtools}/json/list")
            pages = [target for target in listed.json() if target["type"] == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            assert time.monotonic() < deadline, "chromium opened no page"
            await anyio.sleep(0.1)


async def evaluate(page: Any, number: int, expression: str) -> dict[str, Any]:
    """What ``expression`` (a ``JSON.stringify(...)``) gives in the page; the
    call's ``number`` must differ from any other on the same socket."""
    call = {
        "id": number,
        "method": "Runtime.evaluate",
        "params": {"expression": expression, "returnByValue": True},
    }
    await page.send(json.dumps(call))
    while True:
        answer = json.loads(await page.recv())
        if answer.get("id") == number:
            break
    value = answer["result"]["result"].get("value")
    shown: dict[str, Any] = json.loads(value) if value else {}
    return shown
