"""A join over keyed Redis connections: its state per partition in Redis, updated in
the script that acknowledges both inputs and writes the pairs (issue #16).

The service of tests/runtime/join_replica.py: this process runs the sources
(``orders`` and ``payments``: accounts spread over the partitions, fixed event
times) and the sinks; each replica of the join ``pairs`` is a process of its own,
killed with SIGKILL (from here, or by itself at a chosen step of a commit) or
paused past its lease with SIGSTOP. Once every event is acknowledged, each source
sends one last item per partition, far later, which expires every item still held:
then the pairs and the items never paired must equal a plain nested loop exactly,
each sent once (one Redis: the outputs are written by the acknowledging script).
Waits are on conditions with a generous deadline, never on a duration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import runtime
from pydantic import BaseModel
from runtime.redis.joinstore import COMMIT_JOIN
from runtime.redis.partitions import partition_of

from tests.redisenv import (
    client_for_url,
    delete_prefixed,
    redis_cluster_url,
    redis_url,
    unique_prefix,
)
from tests.runtime.join_replica import (
    PARTITIONS,
    WITHIN_S,
    Order,
    Pair,
    Payment,
    build,
    settings_for,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "templates" / "project" / "package"
SCRIPT = ROOT / "tests" / "runtime" / "join_replica.py"
KEYS = 60
TTL_MS = 1500
DEADLINE_S = 60
T0 = 1_700_000_000.0
#: an order every STEP_S, a payment every STEP_S too, offset by a third of it
STEP_S = 0.01
#: the last item of each partition: far past every event plus the grace
FLUSH_T = T0 + 1_000_000.0
#: each input stream: (partition, name after the service's prefix)
STREAMS = [
    (n, f"{source}.out.pairs.{port}.p{n}")
    for source, port in (("orders", "left"), ("payments", "right"))
    for n in range(PARTITIONS)
]
GROUPS = {"left": "pairs.left", "right": "pairs.right"}


def order(n: int) -> Order:
    return Order(
        account=f"acct-{n % KEYS}",
        seq=n,
        at=datetime.fromtimestamp(T0 + n * STEP_S, UTC),
    )


def payment(n: int) -> Payment:
    return Payment(
        account=f"acct-{(n * 7) % KEYS}",
        seq=n,
        at=datetime.fromtimestamp(T0 + n * STEP_S + STEP_S / 3, UTC),
    )


def flush_accounts(side: str) -> list[str]:
    """One account per partition, of no event (nor of the other side's flush: the
    two never pair): its item expires the others."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < PARTITIONS:
        account = f"flush-{side}-{n}"
        found.setdefault(partition_of(account, PARTITIONS), account)
        n += 1
    return list(found.values())


def reference(count: int) -> tuple[set[tuple[int, int]], set[int], set[int]]:
    """The pairs (order, payment), and the orders and payments never paired, by a
    plain nested loop (over the payments of the order's account)."""
    orders, payments = [order(n) for n in range(count)], [
        payment(n) for n in range(count)
    ]
    by_account: dict[str, list[Payment]] = {}
    for p in payments:
        by_account.setdefault(p.account, []).append(p)
    pairs = {
        (o.seq, p.seq)
        for o in orders
        for p in by_account.get(o.account, [])
        if abs(o.at.timestamp() - p.at.timestamp()) <= WITHIN_S
    }
    paired_orders = {o for o, _ in pairs}
    paired_payments = {p for _, p in pairs}
    return (
        pairs,
        {o.seq for o in orders} - paired_orders,
        {p.seq for p in payments} - paired_payments,
    )


class Events(runtime.Source):
    """``count`` events of one side; from ``count // 2`` on they wait for
    ``gate``; then one flush item per partition, once ``flush`` is set."""

    def __init__(self, name: str, schema: type[BaseModel], count: int) -> None:
        super().__init__(name, outputs={"out": schema})
        self.schema, self.count = schema, count
        self.gate, self.flush = anyio.Event(), anyio.Event()

    async def generate(self) -> Any:
        make = order if self.schema is Order else payment
        for n in range(self.count):
            if n == self.count // 2:
                await self.gate.wait()
            yield make(n)
        await self.flush.wait()
        for account in flush_accounts(self.name):
            yield self.schema(
                account=account, seq=-1, at=datetime.fromtimestamp(FLUSH_T, UTC)
            )


class Keep(runtime.Sink):
    """Every item that came, as it came (a copy twice is kept twice)."""

    def __init__(self, name: str, schema: type[BaseModel]) -> None:
        super().__init__(name, inputs={"in": schema})
        self.items: list[Any] = []

    def consume(self, item: Any) -> None:
        self.items.append(item)


class Replicas:
    """The replicas of ``pairs``, each a process; their logs in ``folder``."""

    def __init__(self, url: str, prefix: str, folder: Path) -> None:
        self.url, self.prefix, self.folder = url, prefix, folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, die: str = "") -> None:
        env = {**os.environ, "PYTHONPATH": f"{PACKAGE}{os.pathsep}{ROOT}"}
        env.pop("JOIN_REPLICA_DIE", None)
        if die:
            env["JOIN_REPLICA_DIE"] = die
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, str(SCRIPT), self.url, self.prefix, name, str(TTL_MS)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=15)

    def signal(self, name: str, number: int) -> None:
        self.processes[name].send_signal(number)

    def killed(self, name: str) -> bool:
        return self.processes[name].poll() == -signal.SIGKILL

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(params=["redis", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    return redis_url() if request.param == "redis" else redis_cluster_url()


@pytest.fixture
def replicas(url: str, tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(url, unique_prefix(), tmp_path)
    yield group
    group.stop_all()
    delete_prefixed(url, group.prefix)


def streams(url: str, prefix: str) -> list[tuple[str, str]]:
    """Each input stream and its group: on a Cluster, partition n of both inputs
    under the tag ``{<prefix>jr.pairs.p<n>}``."""
    return [
        (
            (
                "{" + f"{prefix}jr.pairs.p{n}" + "}." + name
                if "+cluster://" in url
                else f"{prefix}jr.{name}"
            ),
            GROUPS["left" if ".left." in name else "right"],
        )
        for n, name in STREAMS
    ]


def lease_owners(url: str, prefix: str) -> list[str | None]:
    with client_for_url(url) as client:
        owners = [
            client.hget(f"{s}.lease.{g}", "owner") for s, g in streams(url, prefix)
        ]
    return [None if o is None else o.decode() for o in owners]


def unread(url: str, prefix: str, count: int) -> int:
    """Events not yet written, read and acknowledged (0: all are in the state)."""
    left = 0
    with client_for_url(url) as client:
        written = sum(
            int(client.xinfo_stream(s)["entries-added"])  # (acknowledged: trimmed)
            for s, _ in streams(url, prefix)
            if client.exists(s)
        )
        left += 2 * count - written
        for stream, group in streams(url, prefix):
            if not client.exists(stream):
                continue
            for row in client.xinfo_groups(stream):
                if row["name"].decode() == group:
                    left += int(row["pending"]) + int(row["lag"] or 0)
    return left


def held(url: str, prefix: str) -> int:
    """Items held in the partitions' states (the watermarks aside)."""
    with client_for_url(url) as client:
        return sum(
            int(client.hlen(f"{s}.state.{g}"))
            - int(client.hexists(f"{s}.state.{g}", "~watermark"))
            for s, g in streams(url, prefix)
            if g == GROUPS["left"]
        )


async def until(
    condition: Callable[[], bool], what: str, detail: Callable[[], str] = str
) -> None:
    with anyio.move_on_after(DEADLINE_S):
        while not condition():
            await anyio.sleep(0.05)
        return
    pytest.fail(f"gave up waiting: {what} {detail()}")


class Main:
    """The sources and sinks, run in the test's process."""

    def __init__(self, url: str, prefix: str, count: int) -> None:
        self.count = count
        self.orders = Events("orders", Order, count)
        self.payments = Events("payments", Payment, count)
        self.keep = Keep("keep", Pair)
        self.lonely_orders = Keep("lonely_orders", Order)
        self.lonely_payments = Keep("lonely_payments", Payment)
        settings = settings_for(
            url,
            prefix,
            "main",
            TTL_MS,
            "orders,payments,keep,lonely_orders,lonely_payments",
        )
        self.service = build(
            settings,
            self.orders,
            self.payments,
            {"keep": self.keep, "lonely_orders": self.lonely_orders,
             "lonely_payments": self.lonely_payments},
        )  # fmt: skip

    def go(self) -> None:
        """Let the second half of the events flow."""
        self.orders.gate.set()
        self.payments.gate.set()

    async def finish(self, url: str, prefix: str) -> None:
        """Once every event is in the state: the flush items, then every unpaired
        item out."""
        _, orders, payments = reference(self.count)
        await until(
            lambda: unread(url, prefix, self.count) == 0,
            "every event acknowledged",
            lambda: f"({unread(url, prefix, self.count)} left; owners {lease_owners(url, prefix)})",
        )
        self.orders.flush.set()
        self.payments.flush.set()
        await until(
            lambda: len(self.lonely_orders.items) >= len(orders)
            and len(self.lonely_payments.items) >= len(payments),
            "every unpaired item",
            lambda: f"({len(self.lonely_orders.items)}/{len(orders)}, "
            f"{len(self.lonely_payments.items)}/{len(payments)})",
        )
        # what stays held: the flush items (one per partition and side)
        await until(
            lambda: held(url, prefix) == 2 * PARTITIONS, "only the flush items held"
        )

    def assert_exact(self, url: str) -> None:
        """The pairs and the unpaired items are the nested loop's: on one Redis
        each sent once; on a Cluster (the outbox's relay: at least once) a copy
        is the same item again, never another."""
        pairs, orders, payments = reference(self.count)
        got = Counter((p.order, p.payment) for p in self.keep.items)
        lonely_o = Counter(o.seq for o in self.lonely_orders.items)
        lonely_p = Counter(p.seq for p in self.lonely_payments.items)
        assert set(got) == pairs
        assert set(lonely_o) == orders
        assert set(lonely_p) == payments
        if "+cluster://" not in url:
            assert max(got.values()) == 1
            assert max(lonely_o.values()) == max(lonely_p.values()) == 1


async def test_pairs_are_exact_when_a_replica_is_killed_midway(
    replicas: Replicas,
) -> None:
    url, prefix = replicas.url, replicas.prefix
    main = Main(url, prefix, 6_000)
    replicas.start("r-a")
    replicas.start("r-b")
    async with main.service.running():
        await until(
            lambda: set(lease_owners(url, prefix)) == {"r-a", "r-b"},
            "r-a and r-b share the partitions",
        )
        main.go()  # the second half flows while r-a dies
        await until(lambda: len(main.keep.items) >= 200, "some pairs")
        replicas.kill("r-a")
        await until(lambda: set(lease_owners(url, prefix)) == {"r-b"}, "r-b owns all")
        replicas.start("r-c")  # restarted (as a new member): it takes some back
        await until(lambda: "r-c" in lease_owners(url, prefix), "r-c takes some")
        await main.finish(url, prefix)
    main.assert_exact(url)


@pytest.mark.parametrize("die", ["before:5", "after:5"])
async def test_pairs_are_exact_whatever_step_a_replica_dies_at(
    url: str, replicas: Replicas, die: str
) -> None:
    prefix = replicas.prefix
    main = Main(url, prefix, 2_000)
    main.go()
    replicas.start("r-a", die=die)
    async with main.service.running():
        await until(lambda: replicas.killed("r-a"), f"r-a dies at {die}")
        replicas.start("r-b")
        await main.finish(url, prefix)
    main.assert_exact(url)


async def test_pairs_are_exact_when_a_replica_paused_past_its_lease_comes_back(
    url: str, replicas: Replicas
) -> None:
    prefix = replicas.prefix
    main = Main(url, prefix, 4_000)
    replicas.start("r-a")
    replicas.start("r-b")
    async with main.service.running():
        await until(
            lambda: set(lease_owners(url, prefix)) == {"r-a", "r-b"},
            "r-a and r-b share the partitions",
        )
        main.go()
        await until(lambda: len(main.keep.items) >= 200, "some pairs")
        replicas.signal("r-a", signal.SIGSTOP)  # holding batches, state, leases
        await until(lambda: set(lease_owners(url, prefix)) == {"r-b"}, "r-b owns all")
        replicas.signal("r-a", signal.SIGCONT)  # its commits are refused: stale
        await until(lambda: "r-a" in lease_owners(url, prefix), "r-a takes some back")
        await main.finish(url, prefix)
    main.assert_exact(url)


@pytest.mark.parametrize("stale", ["left", "right"])
def test_a_stale_token_on_either_side_writes_nothing(url: str, stale: str) -> None:
    """``COMMIT_JOIN`` under an old token of either lease: no acknowledgement, no
    state, no output; under both current tokens, all of them (on a Cluster every
    key under the partition's one tag, as the join names them)."""
    prefix = unique_prefix()
    tag = "{" + f"{prefix}jr.pairs.p0" + "}" if "+cluster://" in url else prefix
    names = {side: f"{tag}jr.{side}.p0" for side in ("left", "right")}
    state, out = f"{tag}jr.state", f"{tag}jr.out"
    try:
        with client_for_url(url) as client:
            ids: dict[str, bytes] = {}
            for side, stream in names.items():
                client.xgroup_create(stream, side, id="0", mkstream=True)
                client.xadd(stream, {"data": b"{}"})
                ((_, ((ids[side], _),)),) = client.xreadgroup(
                    side, "r-a", {stream: ">"}
                )
                client.hset(f"{stream}.lease", mapping={"owner": "r-a", "token": "7"})
            commit = client.register_script(COMMIT_JOIN)
            keys = [names["left"], names["right"], f"{names['left']}.lease"]
            keys += [f"{names['right']}.lease", state, out]

            def run(tokens: dict[str, str]) -> int:
                args = ["left", "right", tokens["left"], tokens["right"], 0]
                args += [1, ids["left"], 1, ids["right"]]
                args += [2, b"l1-0", b'["k", 1.0, false, {}]', b"~watermark", b"1.0"]
                args += [0, 1, out, 1, b'{"item": 1}']
                return int(commit(keys=keys, args=args))

            tokens = {"left": "7", "right": "7", stale: "6"}
            assert run(tokens) == -1
            assert [client.xpending(names[s], s)["pending"] for s in names] == [1, 1]
            assert not client.exists(state) and not client.exists(out)
            assert run({"left": "7", "right": "7"}) == 2
            assert [client.xpending(names[s], s)["pending"] for s in names] == [0, 0]
            assert client.hlen(state) == 2 and client.xlen(out) == 1
    finally:
        delete_prefixed(url, prefix)


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_only_a_join_s_inputs_share_a_tag_per_partition_on_a_cluster(
    where: str,
) -> None:
    """On a Cluster, partition n of both inputs of the join under one hash tag
    (one slot: one script reaches both); its output, and everything on one Redis,
    named as any other connection."""
    url = "redis://127.0.0.1:1/0" if where == "redis" else "redis+cluster://h:1"
    service = build(settings_for(url, "x:", "r-a", TTL_MS, "pairs"))
    left, right = (
        next(c for c in service.connections if c.target.address == f"pairs.{side}")
        for side in ("left", "right")
    )
    out = next(c for c in service.connections if c.source.address == "pairs.out")
    names = [*left.streams, *right.streams, out.stream]  # type: ignore[attr-defined]
    if where == "cluster":
        assert names == [
            *(f"{{x:jr.pairs.p{n}}}.orders.out.pairs.left.p{n}" for n in range(4)),
            *(f"{{x:jr.pairs.p{n}}}.payments.out.pairs.right.p{n}" for n in range(4)),
            "{x:jr.pairs.out}",
        ]
    else:
        assert names == [
            *(f"x:jr.orders.out.pairs.left.p{n}" for n in range(4)),
            *(f"x:jr.payments.out.pairs.right.p{n}" for n in range(4)),
            "x:jr.pairs.out",
        ]
