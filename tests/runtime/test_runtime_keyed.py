"""Keyed connections in memory: each key's items in order and never in the user
method together, other keys going on meanwhile (issue #15)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import runtime

from tests.runtime.support import Recorder

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Who:
    account: str


@dataclass(frozen=True)
class Trade:
    who: Who
    seq: int

    @property
    def account(self) -> str:
        return self.who.account


class Trades(runtime.Source):
    """Yields the trades it is given, in that order."""

    def __init__(self, name: str, trades: list[Trade]) -> None:
        super().__init__(name)
        self.trades = trades

    async def generate(self) -> AsyncIterator[Trade]:
        for trade in self.trades:
            yield trade


class Held(runtime.Transformer):
    """Lets each trade through once the test opens its gate; records who is inside."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.inside: list[Trade] = []
        self.entered: list[Trade] = []
        self.gates: dict[Trade, anyio.Event] = {}

    def gate(self, trade: Trade) -> anyio.Event:
        return self.gates.setdefault(trade, anyio.Event())

    async def transform(self, item: Trade) -> Trade:
        self.inside.append(item)
        self.entered.append(item)
        try:
            await self.gate(item).wait()
        finally:
            self.inside.remove(item)
        return item


class Shuffled(runtime.Transformer):
    """Takes a random while over each trade; fails the test if two of one account
    are ever inside together."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.inside: set[str] = set()
        self.most_inside = 0
        self.random = random.Random(15)

    async def transform(self, item: Trade) -> Trade:
        assert item.account not in self.inside, f"{item.account} twice at once"
        self.inside.add(item.account)
        self.most_inside = max(self.most_inside, len(self.inside))
        try:
            for _ in range(self.random.randrange(4)):
                await anyio.sleep(0)
        finally:
            self.inside.discard(item.account)
        return item


def pipeline(
    transformer: runtime.Transformer, trades: list[Trade], key: str | None
) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service("keyed")
    service.add(Trades("trades", trades))
    service.add(transformer)
    sink = service.add(Recorder("sink"))
    service.connect("trades.out", f"{transformer.name}.in", buffer_size=8, key=key)
    service.connect(f"{transformer.name}.out", "sink.in", buffer_size=8)
    return service, sink


async def until(condition: Any, seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.005)


def trade(account: str, seq: int) -> Trade:
    return Trade(Who(account), seq)


@pytest.mark.parametrize("ordering", ["input", "none"])
async def test_a_key_waits_for_its_own_item_while_other_keys_go_on(
    ordering: str,
) -> None:
    a0, a1, b0, c0 = trade("a", 0), trade("a", 1), trade("b", 0), trade("c", 0)
    held = Held("held", concurrency=8, ordering=ordering)
    service, sink = pipeline(held, [a0, a1, b0, c0], key="who.account")
    async with service.running():
        await until(lambda: len(held.entered) == 3)
        await anyio.sleep(0.05)  # a1 would have entered by now, were it let in
        assert held.entered == [a0, b0, c0]
        for item in (c0, b0, a0):
            held.gate(item).set()
        await until(lambda: len(held.entered) == 4)
        assert held.entered[3] == a1
        held.gate(a1).set()
        await until(lambda: len(sink.items) == 4)
    expected = [a0, a1, b0, c0] if ordering == "input" else [c0, b0, a0, a1]
    assert sink.items == expected


async def test_without_a_key_the_same_items_are_inside_together() -> None:
    a0, a1 = trade("a", 0), trade("a", 1)
    held = Held("held", concurrency=8)
    service, sink = pipeline(held, [a0, a1], key=None)
    async with service.running():
        await until(lambda: len(held.entered) == 2)
        assert held.inside == [a0, a1]
        held.gate(a0).set()
        held.gate(a1).set()
        await until(lambda: len(sink.items) == 2)


@pytest.mark.parametrize("key", ["account", "who.account"])
async def test_every_keys_order_holds_under_random_delays(key: str) -> None:
    rng = random.Random(7)
    seqs: dict[str, int] = {}
    trades = []
    for _ in range(600):
        account = f"k{rng.randrange(12)}"
        seqs[account] = seqs.get(account, -1) + 1
        trades.append(trade(account, seqs[account]))
    shuffled = Shuffled("shuffled", concurrency=16, ordering="none")
    service, sink = pipeline(shuffled, trades, key=key)
    async with service.running():
        await until(lambda: len(sink.items) == len(trades))
    by_key: dict[str, list[int]] = {}
    for item in sink.items:
        by_key.setdefault(item.account, []).append(item.seq)
    assert by_key == {a: list(range(n + 1)) for a, n in seqs.items()}
    assert shuffled.most_inside > 1  # other keys went on meanwhile
    assert sink.items != trades  # results left as they finished, not in input order


async def test_a_redis_connection_is_keyed_by_partitions() -> None:
    # Issue #15: a keyed Redis connection is one stream per partition, each read by
    # one replica at a time (tests/runtime/test_runtime_partitions.py).
    service = runtime.Service("keyed")
    service.add(Trades("trades", []))
    service.add(Recorder("sink"))
    connection = service.connect(
        "trades.out", "sink.in", transport="redis", key="account"
    )
    assert connection.keeps_key_order
    assert type(connection).__name__ == "PartitionedConnection"


async def test_a_transport_that_cannot_keep_key_order_is_refused_a_key() -> None:
    class Shared(runtime.ports.Connection):
        transport = "shared"
        keeps_key_order = False

    class SharedCarrier:
        def __init__(self, *args: object) -> None:
            pass

        def connect(self, source: Any, target: Any, **options: Any) -> Any:
            options.pop("key", None)
            options.pop("partitions", None)
            return Shared(source, target, **options)

    runtime.transport.register("shared", SharedCarrier)  # type: ignore[arg-type]
    service = runtime.Service("keyed")
    service.add(Trades("trades", []))
    service.add(Recorder("sink"))
    with pytest.raises(runtime.errors.WiringError) as caught:
        service.connect(
            "trades.out",
            "sink.in",
            transport="shared",  # type: ignore[arg-type]
            key="account",
        )
    assert str(caught.value) == (
        "connection trades.out -> sink.in is keyed by 'account', which transport "
        "'shared' cannot keep in order"
    )
