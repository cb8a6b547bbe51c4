"""Generated services served by ``python -m``, as a person starts and stops them.

Ctrl-C ends a service quietly, and the README's scale-out commands, run as written
(on the test Redis), give every replica its own address, listed by ``replicas``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from generator.generation import generate
from tests.redisenv import delete_prefixed, free_port, redis_url, unique_prefix

ROOT = Path(__file__).parent.parent


def served(package: str, folder: Path) -> Path:
    """The example ``package``, generated (without its gate) into ``folder``."""
    project = folder / package
    generate(ROOT / "blueprints" / f"{package}.yaml", project, gate=False)
    return project


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_PIPELINE")}
    env.pop("PYTHONPATH", None)
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **variables}


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {seconds} s")


def test_ctrl_c_stops_the_service_quietly_with_status_130(tmp_path: Path) -> None:
    project = served("order_pipeline", tmp_path)
    port = free_port()
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "order_pipeline", "--port", str(port)],
            cwd=project,
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/health", process)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.read_text(encoding="utf-8")
    assert process.returncode == 130, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    for line in text.splitlines():  # JSON log lines only, the drain among them
        assert isinstance(json.loads(line), dict), line
    assert "stopped; drained" in text


def readme_scale_out() -> list[str]:
    """The commands of the README's Redis section, one per line, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## One service, several processes", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the README's Redis section has no bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]


@pytest.fixture
def redis_env() -> Iterator[dict[str, str]]:
    """The README's variable, pointed at the test Redis, under a prefix of our own."""
    url = redis_url()
    prefix = unique_prefix()
    yield {
        "ORDER_PIPELINE_REDIS_REDIS_URL": url,
        "ORDER_PIPELINE_REDIS_REDIS_PREFIX": prefix,
    }
    delete_prefixed(url, prefix)


def test_the_readme_scale_out_commands_give_each_replica_its_own_address(
    tmp_path: Path, redis_env: dict[str, str]
) -> None:
    project = served("order_pipeline_redis", tmp_path)
    commands = readme_scale_out()
    exports = [c for c in commands if c.startswith("export ")]
    assert [c.split("=", 1)[0] for c in exports] == [
        "export ORDER_PIPELINE_REDIS_REDIS_URL"
    ]
    servers = [c for c in commands if "--port" in c]
    workers = [c for c in servers if "score" in c]
    assert len(workers) == 1, "the worker's command is given once, to run twice"
    listing = [c for c in commands if c.endswith(" replicas")]
    assert listing, "the README says how to list the replicas"
    env = environment(**redis_env)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for command in [*servers, *workers]:  # the worker's command, twice
            processes.append(
                subprocess.Popen(
                    shlex.split(command),
                    cwd=project,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            time.sleep(0.5)  # as a person would start them, one after the other
        deadline = time.monotonic() + 60
        while True:
            shown = subprocess.run(
                shlex.split(listing[0]),
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()
            if len(shown) == len(processes) or time.monotonic() > deadline:
                break
            for process in processes:
                assert process.poll() is None, f"a replica exited: {process.args}"
            time.sleep(0.5)
        urls = [line.split()[0] for line in shown]
        assert len(set(urls)) == len(processes), shown
        scraped = subprocess.run(
            [*shlex.split(listing[0]), "--file-sd"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        targets = {t for group in json.loads(scraped) for t in group["targets"]}
        assert targets == {url.removeprefix("http://") for url in urls}
        for url in urls:
            for path in ("/health", "/metrics"):
                assert httpx.get(url + path, timeout=5).status_code == 200, url + path
            deadline = time.monotonic() + 30
            while httpx.get(url + "/ready", timeout=5).status_code != 200:
                assert time.monotonic() < deadline, f"{url}/ready stayed 503"
                time.sleep(0.2)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for process in processes:  # uvicorn re-raises the SIGTERM it drained on
        assert process.returncode in (0, -signal.SIGTERM), process.args


def test_the_emitted_readme_tracing_command_writes_the_requests_trace(
    tmp_path: Path,
) -> None:
    project = served("order_pipeline", tmp_path)
    section = (project / "README.md").read_text("utf-8").split("## Tracing", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the emitted README's Tracing section has no bash block"
    (command,) = [c for c in block.group(1).splitlines() if "=console" in c]
    *variables, python, flag, package = shlex.split(command)
    assert (python, flag, package) == ("python", "-m", "order_pipeline")
    port = free_port()
    env = environment(**dict(v.split("=", 1) for v in variables))
    process = subprocess.Popen(
        [sys.executable, "-m", package, "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        body = {
            "order_id": "o-1",
            "customer_email": "a@example.com",
            "amount": 12.5,
            "event_time": "2026-12-06T12:00:00Z",
        }
        answer = httpx.post(f"http://127.0.0.1:{port}/orders", json=body, timeout=10)
        assert answer.status_code == 202, answer.text
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    spans = [
        json.loads(line)
        for line in (project / "spans.jsonl").read_text("utf-8").splitlines()
    ]
    names = {span["name"] for span in spans}
    assert "POST /orders" in names, names
    assert len({span["context"]["trace_id"] for span in spans}) == 1
