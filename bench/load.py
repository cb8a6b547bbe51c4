"""A small HTTP/1.1 load generator, for when ``wrk`` is not installed (and quick mode).

``python -m bench.load --port P --path /orders --body-file F --connections 50
--duration 5 [--max-requests N]`` keeps ``connections`` keep-alive connections
busy (one request in flight on each, like wrk) for ``duration`` seconds or
``max-requests`` requests, whichever ends first, and prints JSON: requests, seconds,
rps, p50_ms, p99_ms, statuses. 127.0.0.1 only.

It runs in its own process, so it does not share the server's CPU time slice, but
on a 2-core machine a Python client saturates before a fast server does: its
figures are a lower bound, and the table says which tool measured them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

HOST = "127.0.0.1"


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    """One POST with a JSON body, keep-alive."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def _connection(
    port: int,
    request: bytes,
    deadline: float,
    budget: list[int],
    latencies: list[float],
    statuses: Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    clock = time.perf_counter
    try:
        while budget[0] > 0 and clock() < deadline:
            budget[0] -= 1
            started = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"transfer-encoding":
                    raise RuntimeError("chunked responses are not supported")
            if length:
                await reader.readexactly(length)
            latencies.append(clock() - started)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def load(
    port: int,
    path: str,
    body: bytes,
    *,
    connections: int,
    duration: float,
    max_requests: int,
) -> dict[str, object]:
    """Run the load; the figures as a dict."""
    request = request_bytes(port, path, body)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    budget = [max_requests]
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(
            _connection(port, request, deadline, budget, latencies, statuses)
            for _ in range(connections)
        )
    )
    seconds = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run the load, print JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    result = asyncio.run(
        load(
            args.port,
            args.path,
            args.body_file.read_bytes(),
            connections=args.connections,
            duration=min(args.duration, 60.0),
            max_requests=args.max_requests,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
