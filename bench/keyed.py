"""Issue #15: the Redis transport on a Redis Cluster of three masters against one Redis.

The same two hops with acknowledgement as section 5 (``redis_transport.portwright``:
source -> stream A -> score -> stream B -> sink, in one process, every entry
acknowledged once what it caused is written), run alternately on a single
``redis-server`` and on a cluster of three masters (``redis+cluster://``, redis-py's
cluster client), each round on streams of its own; medians of interleaved rounds.
Goal: the cluster is not slower (ratio >= 1.0).

A stream is one hash slot, so one stream's traffic goes to one master: these two
streams use at most two of the three. The cluster scales a service with many
streams (components, ports; with keyed streams, partitions) spread over the masters,
and the client process must scale with it (replicas): one Python process is the
bottleneck long before one Redis is. The single Redis is ``PORTWRIGHT_REDIS_URL`` or
a private one, the cluster ``PORTWRIGHT_REDIS_CLUSTER_URL`` or three private
cluster-enabled ``redis-server``s on free ports; both stopped at the end.

Keyed against unkeyed (``keyed_rows``): the same two hops, the middle one run by two
replicas in processes of their own (``python -m bench.keyed replica ...``), the first
connection keyed by ``order_id`` with 4 partitions (each owned by one replica under a
lease, acknowledgements and writes fenced; leases of 2 s) against the same connection
unkeyed (both replicas in one consumer group); this process runs the source and the
sink. Each round starts its replicas, waits until both read (keyed: all four leases
held), then opens the source's gate; the clock runs from the gate to the last item at
the sink. Goal: keyed >= 0.8 x unkeyed.

Keyed on the cluster against keyed on one Redis (``keyed_cluster_rows``): the keyed
rounds above on each. Goal: the cluster is not slower (ratio >= 1.0).

Usage on its own: ``python -m bench.keyed [items] [rounds]``,
``python -m bench.keyed keyed [items]``, ``python -m bench.keyed spread [items]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from .redis_transport import (
    ROUND_TIMEOUT_S,
    Order,
    Result,
    Scored,
    _delete_prefixed,
    order,
    portwright,
    redis_server,
    score,
)
from .table import REPO, Goal, Row, median

SECTION = "9 keyed streams and redis cluster"
CLUSTER_VARIABLE = "PORTWRIGHT_REDIS_CLUSTER_URL"
Log = Callable[[str], None]


def measure(url: str, items: int) -> Result:
    """One round of two hops on ``url``, on streams of its own, deleted afterwards."""
    prefix = f"pwbench-{uuid.uuid4().hex[:8]}:"
    try:
        return anyio.run(portwright, url, prefix, items)
    finally:
        delete_prefixed(url, prefix)


def delete_prefixed(url: str, prefix: str) -> None:
    """Delete the round's keys (on a cluster, the braced stream names, one by one)."""
    if "+cluster://" not in url:
        _delete_prefixed(url, prefix)
        return
    import redis

    with redis.RedisCluster.from_url(url.replace("+cluster", "", 1)) as client:
        for pattern in (prefix + "*", "{" + prefix + "*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)


def _free_ports(count: int) -> list[int]:
    """``count`` free ports whose cluster bus port (+10000) is free too."""
    import socket

    def free(port: int) -> bool:
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False

    found: list[int] = []
    while len(found) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + 10000 < 65536 and port not in found and free(port + 10000):
            found.append(port)
    return found


@contextmanager
def redis_cluster(log: Log) -> Iterator[str | None]:
    """``PORTWRIGHT_REDIS_CLUSTER_URL``, else three private masters; None if neither."""
    url = os.environ.get(CLUSTER_VARIABLE)
    if url:
        yield url
        return
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        yield None
        return
    ports = _free_ports(3)
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="pwbench-cluster-") as folder:
        try:
            for port in ports:
                node = Path(folder) / str(port)
                node.mkdir()
                processes.append(
                    subprocess.Popen(
                        [server, "--bind", "127.0.0.1", "--port", str(port),
                         "--cluster-enabled", "yes",
                         "--cluster-config-file", str(node / "nodes.conf"),
                         "--save", "", "--appendonly", "no", "--dir", str(node)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            _wait_for_cli(cli, ports)
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                check=True,
                timeout=60,
            )  # fmt: skip
            _wait_for_cluster(cli, ports[0])
            log(f"redis cluster: three private masters on 127.0.0.1: {ports}")
            yield f"redis+cluster://127.0.0.1:{ports[0]}"
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_for_cli(cli: str, ports: list[int], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    for port in ports:
        while (
            subprocess.run(
                [cli, "-p", str(port), "ping"], capture_output=True, check=False
            ).stdout.strip()
            != b"PONG"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.05)


def _wait_for_cluster(cli: str, port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while (
        b"cluster_state:ok"
        not in subprocess.run(
            [cli, "-p", str(port), "cluster", "info"], capture_output=True, check=False
        ).stdout
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the redis cluster did not come up")
        time.sleep(0.1)


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """Two hops with ack: a cluster of three masters against one Redis."""
    with redis_server(log) as single, redis_cluster(log) as cluster:
        if single is None or cluster is None:
            why = "no redis-server (or redis-cli) to start, and no URLs given"
            return [
                Row(SECTION, "cluster vs single", None, "", note=f"not measured: {why}")
            ]
        items = 2_000 if quick else 20_000
        rounds = 1 if quick else 5
        targets = {"single": single, "cluster": cluster}
        for url in targets.values():  # warm-up, not counted
            measure(url, max(items // 10, 200))
        results: dict[str, list[Result]] = {name: [] for name in targets}
        for r in range(rounds):
            names = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in names:
                results[name].append(measure(targets[name], items))
            log(
                f"cluster: round {r + 1}/{rounds}: "
                + ", ".join(f"{n} {results[n][-1].rate:,.0f}/s" for n in targets)
            )
        keyed = keyed_rows(single, quick=quick, log=log)
        spread = keyed_cluster_rows(single, cluster, quick=quick, log=log)
    rate = {name: median(r.rate for r in rs) for name, rs in results.items()}
    cpu = {name: median(r.cpu_us for r in rs) for name, rs in results.items()}
    note = f"{items:,} orders x {rounds} rounds, one process, two streams"
    return [
        *keyed,
        *spread,
        Row(
            SECTION,
            "two hops with ack on a 3-master cluster: items/s vs one Redis",
            rate["cluster"],
            "items/s",
            rate["single"],
            "one redis-server",
            Goal(">=", 1.0, text="ratio >= 1"),
            note=note,
        ),
        Row(
            SECTION,
            "two hops with ack on a 3-master cluster: CPU per item vs one Redis",
            cpu["cluster"],
            "us",
            cpu["single"],
            "one redis-server",
            note="this process only; the cluster client routes by slot",
        ),
    ]


# -- keyed against unkeyed, two replicas ----------------------------------------------

PARTITIONS = 4
REPLICAS = 2
LEASE_TTL_MS = 2000


def _service(url: str, prefix: str, components: str, consumer: str, keyed: bool,
             items: int = 0, result: Result | None = None,
             gate: anyio.Event | None = None) -> object:  # fmt: skip
    """The bench service: ``orders`` -> (keyed or not) -> ``score`` -> ``sink``."""
    import runtime as rt

    class Orders(rt.Source):
        async def generate(self) -> object:
            if gate is not None:
                await gate.wait()
            for number in range(items):
                yield order(number)

    class Score(rt.Transformer):
        def transform(self, item: Order) -> Scored:
            return score(item)

    class Count(rt.Sink):
        def consume(self, item: Scored) -> None:
            if result is not None:
                result.count()

    settings = rt.ServiceSettings(
        redis_url=url,
        redis_prefix=prefix,
        redis_consumer=consumer,
        redis_lease_ttl_ms=LEASE_TTL_MS,
        components=components,
    )
    service = rt.Service("bench", settings=settings)
    service.add(Orders("orders", outputs={"out": Order}))
    service.add(Score("score", inputs={"in": Order}, outputs={"out": Scored}))
    service.add(Count("sink", inputs={"in": Scored}))
    if keyed:
        service.connect(
            "orders.out", "score.in", transport="redis", key="order_id",
            partitions=PARTITIONS,
        )  # fmt: skip
    else:
        service.connect("orders.out", "score.in", transport="redis")
    service.connect("score.out", "sink.in", transport="redis")
    return service


def replica(url: str, prefix: str, name: str, keyed: bool) -> None:
    """One replica of ``score`` until SIGTERM."""
    import signal

    service = _service(url, prefix, "score", name, keyed)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(service.run)  # type: ignore[attr-defined]
            group.start_soon(_announce, service, url, prefix, name)
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    service.stop()  # type: ignore[attr-defined]
                    return

    anyio.run(main)


def _even_names() -> list[str]:
    """Replica names the rendezvous assignment gives equal shares of the partitions
    (some pairs of names would leave one replica none: nothing to compare then)."""
    from runtime.redis.partitions import assignment

    for n in range(100):
        names = [f"r{n}-{i}" for i in range(REPLICAS)]
        shares = list(assignment(PARTITIONS, names).values())
        if all(shares.count(name) == PARTITIONS // REPLICAS for name in names):
            return names
    raise RuntimeError("no even assignment found")


def _client(url: str) -> Any:
    """A plain redis-py client of ``url``: a cluster client for ``redis+cluster://``."""
    import redis

    if "+cluster://" in url:
        return redis.RedisCluster.from_url(url.replace("+cluster", "", 1))
    return redis.Redis.from_url(url)


def _stream(url: str, name: str) -> str:
    """A stream's key as the transport names it (braced, a hash tag, on a cluster)."""
    return "{" + name + "}" if "+cluster://" in url else name


async def _announce(service: object, url: str, prefix: str, name: str) -> None:
    """Say this replica runs (``<prefix>ready.<name>``), once its service does."""
    import runtime as rt

    while service.state is not rt.ServiceState.RUNNING:  # type: ignore[attr-defined]
        await anyio.sleep(0.01)
    await anyio.sleep(0.1)  # its readers' first calls
    with _client(url) as client:
        client.set(f"{prefix}ready.{name}", 1)


def _reading(url: str, prefix: str, keyed: bool) -> bool:
    """Whether both replicas read: every lease held (keyed), or two consumers."""

    with _client(url) as client:
        if keyed:
            owners = {
                client.hget(
                    _stream(url, f"{prefix}bench.orders.out.score.in.p{n}")
                    + ".lease.score.in",
                    "owner",
                )
                for n in range(PARTITIONS)
            }
            return None not in owners and len(owners) == REPLICAS
        ready = [client.get(f"{prefix}ready.{n}") for n in _even_names()[:REPLICAS]]
        return None not in ready


async def _round(url: str, prefix: str, items: int, keyed: bool) -> Result:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'templates/project/package'}",
    }
    command = [sys.executable, "-m", "bench.keyed", "replica", url, prefix]
    mode = "keyed" if keyed else "unkeyed"
    processes = [
        subprocess.Popen([*command, name, mode], cwd=REPO, env=env)
        for name in _even_names()
    ]
    gate = anyio.Event()
    result = Result(items)
    service = _service(url, prefix, "orders,sink", "main", keyed, items, result, gate)
    try:
        async with service.running():  # type: ignore[attr-defined]
            with anyio.fail_after(60):
                while not _reading(url, prefix, keyed):
                    await anyio.sleep(0.05)
            result.started = time.perf_counter()
            result.cpu_started = time.process_time()
            gate.set()
            with anyio.fail_after(ROUND_TIMEOUT_S):
                await result.done.wait()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return result


def measure_keyed(url: str, items: int, keyed: bool) -> Result:
    """One round, keyed or not, on keys of its own, deleted afterwards."""
    prefix = f"pwbench-{uuid.uuid4().hex[:8]}:"
    try:
        return anyio.run(_round, url, prefix, items, keyed)
    finally:
        delete_prefixed(url, prefix)


def keyed_rows(url: str, *, quick: bool, log: Log) -> list[Row]:
    """Keyed (4 partitions) against unkeyed, two replicas of the middle hop."""
    items = 2_000 if quick else 20_000
    rounds = 1 if quick else 5
    results: dict[str, list[Result]] = {"keyed": [], "unkeyed": []}
    for r in range(rounds):
        names = ["keyed", "unkeyed"] if r % 2 == 0 else ["unkeyed", "keyed"]
        for name in names:
            results[name].append(measure_keyed(url, items, name == "keyed"))
        log(
            f"keyed: round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {results[n][-1].rate:,.0f}/s" for n in results)
        )
    rate = {name: median(r.rate for r in rs) for name, rs in results.items()}
    return [
        Row(
            SECTION,
            f"two hops with ack, keyed ({PARTITIONS} partitions, {REPLICAS} replicas): "
            "items/s vs unkeyed",
            rate["keyed"],
            "items/s",
            rate["unkeyed"],
            f"unkeyed, {REPLICAS} replicas",
            Goal(">=", 0.8, text="ratio >= 0.8"),
            note=f"{items:,} orders x {rounds} rounds; middle hop in {REPLICAS} "
            f"processes, lease {LEASE_TTL_MS} ms",
        )
    ]


def keyed_cluster_rows(
    single: str, cluster: str, *, quick: bool, log: Log
) -> list[Row]:
    """Keyed (4 partitions, 2 replicas of the middle hop) on the cluster against the
    same on one Redis: the shape a cluster can help, its partition streams spread
    over the masters and read by several processes."""
    items = 2_000 if quick else 20_000
    rounds = 1 if quick else 5
    targets = {"single": single, "cluster": cluster}
    results: dict[str, list[Result]] = {name: [] for name in targets}
    for r in range(rounds):
        names = list(targets) if r % 2 == 0 else list(reversed(targets))
        for name in names:
            results[name].append(measure_keyed(targets[name], items, keyed=True))
        log(
            f"keyed on the cluster: round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {results[n][-1].rate:,.0f}/s" for n in targets)
        )
    rate = {name: median(r.rate for r in rs) for name, rs in results.items()}
    return [
        Row(
            SECTION,
            f"keyed two hops ({PARTITIONS} partitions, {REPLICAS} replicas) on a "
            "3-master cluster: items/s vs one Redis",
            rate["cluster"],
            "items/s",
            rate["single"],
            "the same on one redis-server",
            Goal(">=", 1.0, text="ratio >= 1"),
            note=f"{items:,} orders x {rounds} rounds; the partition streams "
            "spread over the masters",
        )
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["replica"]:
    replica(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "keyed")
elif __name__ == "__main__" and sys.argv[1:2] == ["spread"]:
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    with redis_server(print) as one, redis_cluster(print) as many:
        if one is None or many is None:
            raise SystemExit("no Redis: install redis-server and redis-cli")
        for row in keyed_cluster_rows(one, many, quick=count < 5000, log=print):
            print(row)
elif __name__ == "__main__" and sys.argv[1:2] == ["keyed"]:
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    with redis_server(print) as one:
        if one is None:
            raise SystemExit("no Redis: install redis-server")
        for row in keyed_rows(one, quick=count < 5000, log=print):
            print(row)
elif __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with redis_server(print) as one, redis_cluster(print) as many:
        if one is None or many is None:
            raise SystemExit("no Redis: install redis-server and redis-cli")
        for _ in range(repeat):
            for label, address in (("single", one), ("cluster", many)):
                done = measure(address, count)
                print(
                    f"{label}: {done.rate:,.0f} items/s, {done.cpu_us:.0f} us CPU/item"
                )
