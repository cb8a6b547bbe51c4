"""HTTP ingress: an emitted api_endpoint under 50 concurrent connections.

The service is a blueprint of one ``api_endpoint`` (the ``Order`` schema of the
order_pipeline example) feeding one sink, generated with ``gate=False`` and started
as its users start it: ``python -m ingress_bench --host 127.0.0.1 --port P``
(log level WARNING). The baselines (``bench/servers.py``) are served by uvicorn with
the same settings and the same model: the idiomatic FastAPI endpoint
(``order: Order`` in, 202 out) and a bare Starlette endpoint (read the body, 202).

All three servers run at once, each in its own process on a free port of 127.0.0.1,
started and stopped here. The load comes from another process: ``wrk -t1 -c50``
with a POST script when wrk is installed, else ``bench/load.py`` (a Python client,
which saturates first: its figures are lower bounds). Rounds alternate the three
servers (the order flips each round); the figures are medians.

Beside requests per second, each run reads the server process's CPU time (from
``/proc``, where there is one) and divides it by the requests answered: on a
shared machine, where a server may get less than a core while it is measured,
CPU per request says what the server costs when requests per second say mostly
how busy the neighbours were.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from generator.generation import generate

from .table import REPO, Goal, Row, median

SECTION = "4 http ingress"
PACKAGE = "ingress_bench"
ROUTE = "/orders"
CONNECTIONS = 50
BODY = json.dumps(
    {
        "order_id": "o-1",
        "customer_email": "ann@example.com",
        "amount": 80.5,
        "currency": "EUR",
        "event_time": "2024-05-01T12:00:00Z",
    }
).encode()
BLUEPRINT = f"""\
portwright: 1
name: {PACKAGE}
description: One api_endpoint feeding one sink (bench/ingress.py).
schemas:
  Order:
    fields:
      order_id: {{type: str, max_length: 64}}
      customer_email: {{type: str, pii: true}}
      amount: {{type: float, gt: 0}}
      currency: {{type: str, pattern: "^[A-Z]{{3}}$", default: USD}}
      event_time: datetime
components:
  orders_api:
    kind: api_endpoint
    route: POST {ROUTE}
    output: Order
  keep:
    kind: sink
    input: Order
connections:
  - orders_api.out -> keep.in
"""
SERVERS = ("emitted", "fastapi", "starlette")
Log = Callable[[str], None]


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """The requests-per-second and latency rows."""
    project = prepare(work)
    wrk = shutil.which("wrk")
    use_wrk = wrk is not None and not quick
    rounds, seconds = (1, 1.0) if quick else (5, 5.0)
    commands = {name: server_command(name, project) for name in SERVERS}
    results = measure(commands, work, wrk if use_wrk else None, rounds, seconds, log)
    tool = (
        f"wrk -t1 -c{CONNECTIONS}, {seconds:g} s x {rounds}"
        if use_wrk
        else f"bench/load.py -c{CONNECTIONS}, {seconds:g} s x {rounds}"
    ) + f"; uvicorn {uvicorn_stack()}"
    rows = []
    if wrk is None and not quick:
        rows.append(
            Row(
                SECTION,
                "wrk",
                None,
                "",
                note="wrk is not installed (apt-get install -y wrk): the figures "
                "below come from bench/load.py, a Python client that saturates "
                "first (lower bounds)",
            )
        )
    return rows + _rows(results, tool)


def uvicorn_stack() -> str:
    """What uvicorn's ``auto`` settings pick here: its HTTP parser and event loop."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http}+{loop}"


def prepare(work: Path) -> Path:
    """Generate the one-endpoint service into ``work``; its project folder."""
    project = work / PACKAGE
    blueprint = work / f"{PACKAGE}.yaml"
    blueprint.write_text(BLUEPRINT, encoding="utf-8")
    generate(blueprint, project, gate=False)
    (work / "body.json").write_bytes(BODY)
    (work / "post.lua").write_text(_wrk_script(), encoding="utf-8")
    return project


def server_command(name: str, project: Path) -> tuple[list[str], Path]:
    """How to start server ``name`` (emitted, fastapi, starlette): command, cwd."""
    if name == "emitted":
        return [sys.executable, "-m", PACKAGE, "--host", "127.0.0.1"], project
    command = [sys.executable, "-m", "bench.servers", name, "--project", str(project)]
    return [*command, "--package", PACKAGE], REPO


def measure(
    commands: dict[str, tuple[list[str], Path]],
    work: Path,
    wrk: str | None,
    rounds: int,
    seconds: float,
    log: Log,
) -> dict[str, list[dict[str, float]]]:
    """Start every server, warm each up, then load them in alternating rounds."""
    body, script = work / "body.json", work / "post.lua"
    names = list(commands)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with _Servers(commands, work) as servers:
        for name in names:  # warm-up: imports, first requests
            _load(wrk, servers.port[name], body, script, 1.0)
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                pid = servers.processes[name].pid
                before = _cpu_seconds(pid)
                result = _load(wrk, servers.port[name], body, script, seconds)
                after = _cpu_seconds(pid)
                if before is not None and after is not None and result["requests"]:
                    result["cpu_us"] = (after - before) / result["requests"] * 1e6
                results[name].append(result)
            log(f"http: round {r + 1}/{rounds} done")
    return results


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far, or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rows(results: dict[str, list[dict[str, float]]], tool: str) -> list[Row]:
    m = {
        name: {key: median(r[key] for r in runs) for key in ("rps", "p50_ms", "p99_ms")}
        for name, runs in results.items()
    }
    cpu = {
        name: median(r["cpu_us"] for r in runs)
        for name, runs in results.items()
        if all("cpu_us" in r for r in runs)
    }
    failed = {name: sum(r["non_2xx"] for r in runs) for name, runs in results.items()}
    note = tool
    if any(failed.values()):
        note += "; non-2xx answers: " + ", ".join(
            f"{k} {v:g}" for k, v in failed.items()
        )
    emitted, fastapi, starlette = m["emitted"], m["fastapi"], m["starlette"]
    return [
        Row(
            SECTION,
            "emitted api_endpoint: requests/s vs bare Starlette",
            emitted["rps"],
            "req/s",
            starlette["rps"],
            "Starlette, read body, 202",
            Goal(">=", 0.7, text="ratio >= 0.7"),
            note,
        ),
        Row(
            SECTION,
            "emitted api_endpoint: requests/s vs idiomatic FastAPI",
            emitted["rps"],
            "req/s",
            fastapi["rps"],
            "FastAPI, order: Order, 202",
            Goal(">=", 2.0, text="ratio >= 2"),
            note,
        ),
        Row(
            SECTION,
            "emitted api_endpoint: p50 latency vs idiomatic FastAPI",
            emitted["p50_ms"],
            "ms",
            fastapi["p50_ms"],
            "FastAPI",
            note=note,
        ),
        Row(
            SECTION,
            "emitted api_endpoint: p99 latency vs idiomatic FastAPI",
            emitted["p99_ms"],
            "ms",
            fastapi["p99_ms"],
            "FastAPI",
            Goal("<=", 1.0, text="ratio <= 1"),
            note,
        ),
        Row(
            SECTION,
            "bare Starlette p99 latency (for reference)",
            starlette["p99_ms"],
            "ms",
            fastapi["p99_ms"],
            "FastAPI",
            note=note,
        ),
        *_cpu_rows(cpu, note),
    ]


def _cpu_rows(cpu: dict[str, float], note: str) -> list[Row]:
    """Server CPU per request, against each baseline (lower is better)."""
    if set(cpu) != set(SERVERS):
        return []
    return [
        Row(
            SECTION,
            f"emitted api_endpoint: server CPU per request vs {label}",
            cpu["emitted"],
            "us",
            cpu[name],
            label,
            note=note,
        )
        for name, label in (("starlette", "bare Starlette"), ("fastapi", "FastAPI"))
    ]


def _wrk_script() -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(BODY.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def _load(
    wrk: str | None, port: int, body: Path, script: Path, seconds: float
) -> dict[str, float]:
    """One bounded load run against 127.0.0.1:``port``."""
    if wrk is not None:
        command = [
            wrk,
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{ROUTE}",
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=seconds + 60
        )
        return _parse_wrk(done.stdout)
    command = [
        sys.executable,
        "-m",
        "bench.load",
        "--port",
        str(port),
        "--path",
        ROUTE,
        "--body-file",
        str(body),
        "--connections",
        str(CONNECTIONS),
        "--duration",
        str(seconds),
    ]
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    result = json.loads(done.stdout)
    ok = result["statuses"].get("202", 0)
    return {
        "rps": result["rps"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "non_2xx": result["requests"] - ok,
        "requests": result["requests"],
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _parse_wrk(output: str) -> dict[str, float]:
    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match is None:
            raise RuntimeError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    requests = re.search(r"^\s*(\d+) requests in", output, re.M)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    failed = int(non_2xx.group(1)) if non_2xx else 0
    if errors:
        failed += sum(int(g) for g in errors.groups())
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": failed,
        "requests": float(requests.group(1)) if requests else 0.0,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Servers:
    """Servers, each in its own process on a free port; stopped (SIGTERM) on exit.

    Each command gets ``--port P`` appended.
    """

    def __init__(self, commands: dict[str, tuple[list[str], Path]], work: Path) -> None:
        self.commands = commands
        self.work = work
        self.port: dict[str, int] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}

    def __enter__(self) -> _Servers:
        try:
            for name in self.commands:
                self._start(name)
            for name in self.commands:
                self._wait_ready(name)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, name: str) -> None:
        port = _free_port()
        env = {**os.environ, f"{PACKAGE.upper()}_LOG_LEVEL": "WARNING"}
        env.pop("PYTHONPATH", None)
        command, cwd = self.commands[name]
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 (closed in __exit__)
        self.logs[name] = log
        self.port[name] = port
        self.processes[name] = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def _wait_ready(self, name: str, timeout: float = 60.0) -> None:
        """Until a POST gets 202 (the emitted service answers 503 while starting)."""
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = (self.work / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"{name} server exited at start:\n{log[-2000:]}")
            try:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port[name], timeout=2
                )
                connection.request(
                    "POST", ROUTE, BODY, {"Content-Type": "application/json"}
                )
                status = connection.getresponse().status
                connection.close()
                if status == 202:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} server not ready after {timeout:g} s")

    def __exit__(self, *exc: object) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs.values():
            log.close()
