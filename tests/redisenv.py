"""A Redis for the tests that need one, and a private Redis for those that break it.

The shared Redis comes from ``PORTWRIGHT_REDIS_URL`` (``bash .ci/run`` starts one on
a free port), a shared Redis Cluster from ``PORTWRIGHT_REDIS_CLUSTER_URL`` (three
masters, which ``bash .ci/run`` starts too; the URL is ``redis+cluster://`` and one
node, as a service takes it). Without them these tests skip with the reason, except
in CI (``CI=true``), where a skipped Redis test would hide a broken transport: there
they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

VARIABLE = "PORTWRIGHT_REDIS_URL"
CLUSTER_VARIABLE = "PORTWRIGHT_REDIS_CLUSTER_URL"


def in_ci() -> bool:
    """Whether this runs in CI, where Redis tests must not be skipped."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing(reason: str, *, in_ci_too: str = "") -> NoReturn:
    """Skip for ``reason``; in CI, which installs and starts everything, fail
    instead (with ``in_ci_too`` added)."""
    if in_ci():
        pytest.fail(reason + in_ci_too)
    pytest.skip(reason)


def redis_url() -> str:
    """The shared Redis's URL; skips (fails in CI) when there is none."""
    url = os.environ.get(VARIABLE)
    if url:
        return url
    reason = f"no Redis for this test: set {VARIABLE} (bash .ci/run starts one)"
    missing(reason, in_ci_too="; in CI the Redis tests must run")


def redis_cluster_url() -> str:
    """The shared Redis Cluster's URL (``redis+cluster://host:port``); skips (fails
    in CI) when there is none."""
    url = os.environ.get(CLUSTER_VARIABLE)
    if url:
        return url
    reason = (
        f"no Redis Cluster for this test: set {CLUSTER_VARIABLE} "
        "(bash .ci/run starts one)"
    )
    missing(reason, in_ci_too="; in CI the Redis Cluster tests must run")


def redis_server_binary() -> str:
    """The redis-server program, for tests that start and kill their own Redis."""
    binary = shutil.which("redis-server")
    if binary:
        return binary
    missing("redis-server is not installed (bash .ci/run installs it)")


def free_port() -> int:
    """A TCP port nobody listens on, now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_prefix() -> str:
    """A key prefix no other test uses, so tests can share one Redis."""
    return f"test-{uuid.uuid4().hex[:10]}:"


def client_for_url(url: str) -> Any:
    """A synchronous client of ``url``: redis-py's cluster client for a cluster."""
    import redis

    if "+cluster://" in url:
        return redis.RedisCluster.from_url(url.replace("+cluster", "", 1))
    return redis.Redis.from_url(url)


def stream_key(url: str, prefix: str, name: str) -> str:
    """The key of the service's stream ``name`` (``svc.component.port``), as the
    transport names it on ``url``: in braces on a cluster."""
    key = prefix + name
    return "{" + key + "}" if "+cluster://" in url else key


def delete_prefixed(url: str, prefix: str) -> None:
    """Delete every key that starts with ``prefix`` (on a cluster, also in braces:
    a stream's name there is a hash tag)."""
    import redis

    if "+cluster://" in url:
        cluster = redis.RedisCluster.from_url(url.replace("+cluster", "", 1))
        try:
            for pattern in (prefix + "*", "{" + prefix + "*"):
                for key in cluster.scan_iter(match=pattern, count=1000):
                    cluster.delete(key)  # one by one: keys of many slots
        finally:
            cluster.close()
        return
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class PrivateRedis:
    """A redis-server of one test's own, on 127.0.0.1, with an append-only file
    synced on every write: what it acknowledged survives a kill -9 and a restart."""

    def __init__(self, folder: Path) -> None:
        self.binary = redis_server_binary()
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again), and wait until it answers and has loaded its data."""
        import redis

        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.folder),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--logfile", str(self.folder / "redis.log"),
            ],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
                client.ping()
                client.close()
                return
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "the private redis-server did not start"
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: no shutdown, no last save."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    """A running ``PrivateRedis``; killed at the end whatever happens."""
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()
