"""Schemathesis against each example, served by its own ``python -m``.

Each blueprint in ``blueprints/`` is generated (without its gate) into a temporary
folder, with the templates as they are now, and served on 127.0.0.1 (a free port) with a made-up API key. schemathesis reads the OpenAPI
document the service publishes and sends what it derives from it (documented
examples, boundary values, fuzzed bodies and headers, requests without the key):
no answer may be a 5xx other than 503 with ``Retry-After``, every status, content
type, header and body must be the documented one, and an endpoint that requires a
key must refuse requests without a valid one. The run is bounded in examples and time.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from generator.generation import generate

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))
CHECKS = (
    "no_server_error_but_503_with_retry_after",  # tests/schemathesis_checks.py
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
)
TIME_BUDGET_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_alive(url: str, server: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the service exited with {server.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the service did not answer {url} within {seconds} s")


def service_variables(package: str, digest: str) -> dict[str, str]:
    """The served example's settings: an API key, and the test Redis when there is one."""
    variables = {f"{package.upper()}_API_KEYS": digest}
    redis_url = os.environ.get("PORTWRIGHT_REDIS_URL")
    if redis_url:
        variables[f"{package.upper()}_REDIS_URL"] = redis_url
    return variables


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **variables}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_schemathesis_finds_no_server_error_and_nothing_undocumented(
    example: Path, tmp_path: Path
) -> None:
    package = example.stem  # each example's blueprint is named after its service
    project = tmp_path / package
    generate(example, project, gate=False)
    key = secrets.token_urlsafe(24)  # made up for this run
    digest = hashlib.sha256(key.encode()).hexdigest()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", package, "--host", "127.0.0.1", "--port", str(port)],
            cwd=project,
            env=environment(**service_variables(package, digest)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_alive(f"{base}/health", server, 30)
            run = subprocess.run(
                [
                    sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
                    "run", f"{base}/openapi.json",
                    "--checks", ",".join(CHECKS),
                    "--phases", "examples,coverage,fuzzing",
                    "--max-examples", "15",
                    "--max-time", str(TIME_BUDGET_S),
                    "--seed", "7",
                    "--request-timeout", "10",
                    "--header", f"X-API-Key: {key}",
                    "--no-color",
                ],
                cwd=tmp_path,
                env=environment(
                    SCHEMATHESIS_HOOKS="schemathesis_checks",
                    PYTHONPATH=str(Path(__file__).parent),
                ),
                capture_output=True,
                text=True,
                timeout=TIME_BUDGET_S * 8,
                check=False,
            )  # fmt: skip
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "Tested: " in output  # it did test the operations
    # uvicorn re-raises the SIGTERM it handled once it has drained: either is clean
    assert server.returncode in (0, -signal.SIGTERM), server_log.read_text()[-3000:]
    # what the service logged while it was attacked: JSON lines only, no key
    lines = server_log.read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line
    assert key not in server_log.read_text(encoding="utf-8")
