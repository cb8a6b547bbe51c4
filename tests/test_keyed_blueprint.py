"""``key`` in a blueprint (issue #15): a field of the schema, nested ``a.b`` allowed,
checked at load time (it exists, is a scalar, is required), given by a connection or
by the schema, emitted into the wiring, and kept by the emitted service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generator.loader import load_text
from tests.cli import run_cli
from tests.refusals import problems_of

NAME = "keyed.yaml"

BASE = """\
portwright: 1
name: keyed
schemas:
  Account:
    fields:
      id: str
      region: str | None
      tags: dict
      since: {type: int, default: 0}
  Trade:
    fields:
      account: Account
      symbol: str
      seq: int
      note: {type: str, default: ''}
  Fill:
    key: symbol
    extends: Trade
components:
  api:
    kind: api_endpoint
    route: POST /trades
    output: Trade
  book:
    kind: transformer
    input: Trade
    output: Fill
    concurrency: 8
    ordering: none
  store:
    kind: sink
    input: Fill
    concurrency: 4
connections:
  - from: api.out
    to: book.in
    key: account.id
  - book.out -> store.in
"""


def problems(text: str) -> list[str]:
    return problems_of(text, NAME)


def test_keys_resolve_from_the_connection_and_from_the_schema() -> None:
    blueprint = load_text(BASE, NAME)
    assert [(c.target.ref, c.key) for c in blueprint.connections] == [
        ("book.in", "account.id"),
        ("store.in", "symbol"),
    ]
    schemas = {s.name: s.key for s in blueprint.schemas}
    assert schemas == {"Account": None, "Trade": None, "Fill": "symbol"}


def test_a_schema_that_extends_a_keyed_one_is_keyed_alike() -> None:
    text = BASE.replace(
        "  Fill:\n    key: symbol\n    extends: Trade\n",
        "  Fill:\n    key: symbol\n    extends: Trade\n  Big:\n    extends: Fill\n",
    ).replace("output: Fill\n    concurrency: 8", "output: Big\n    concurrency: 8")
    blueprint = load_text(text, NAME)
    assert {s.name: s.key for s in blueprint.schemas}["Big"] == "symbol"
    # the connection carries Big into a port that takes Fill: Fill's key
    assert blueprint.connections[1].key == "symbol"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "acount.id",
            "key 'acount.id': schema 'Trade' has no field 'acount' (did you mean "
            "'account'?)",
        ),
        (
            "account.region",
            "key 'account.region': field Account.region may be null; a key must "
            "always have a value",
        ),
        (
            "account.since",
            "key 'account.since': field Account.since has a default, so an item may "
            "leave it out; a key must be required",
        ),
        (
            "account.tags",
            "key 'account.tags': field Account.tags is dict; a key must be a scalar "
            "such as str, int or uuid",
        ),
        (
            "account",
            "key 'account': field Trade.account is Account; a key must be a scalar "
            "such as str, int or uuid",
        ),
        (
            "symbol.id",
            "key 'symbol.id': field Trade.symbol is str, not a schema, so it has no "
            "field 'id'",
        ),
        (
            "note",
            "key 'note': field Trade.note has a default, so an item may leave it out; "
            "a key must be required",
        ),
    ],
    ids=[
        "unknown",
        "nullable",
        "defaulted",
        "dict",
        "a-schema",
        "past-a-scalar",
        "top",
    ],
)
def test_a_bad_connection_key_is_refused_at_its_line(key: str, expected: str) -> None:
    text = BASE.replace("    key: account.id\n", f"    key: {key}\n")
    assert problems(text) == [f"37: connections[0].key: {expected}"]


def test_a_bad_schema_key_is_refused_at_its_line() -> None:
    text = BASE.replace("    key: symbol\n", "    key: seqq\n")
    assert problems(text) == [
        "17: schemas.Fill.key: key 'seqq': schema 'Fill' has no field 'seqq' "
        "(did you mean 'seq'?)"
    ]


def test_a_key_that_is_not_a_field_name_is_refused_by_the_format() -> None:
    text = BASE.replace("    key: account.id\n", "    key: account..id\n")
    (problem,) = problems(text)
    assert problem.startswith("37: connections[0].key: ")


# Run inside the emitted project: the wiring as generated, the transformer replaced
# by one that holds every trade a while and finishes them out of order.
KEPT = """\
import anyio, random
from keyed.components.book import Book
from keyed.schemas import Account, Trade
from keyed.wiring import CONNECTIONS, build_service


class Slow(Book):
    rng = random.Random(3)
    inside: set[str] = set()
    most = 0

    async def transform(self, item):
        assert item.account.id not in self.inside
        self.inside.add(item.account.id)
        Slow.most = max(Slow.most, len(self.inside))
        for _ in range(self.rng.randrange(5)):
            await anyio.sleep(0)
        self.inside.discard(item.account.id)
        return await super().transform(item)


async def main():
    service = build_service(defaults=True, overrides={"book": Slow("book")})
    inlet = service.inlet("book.in")
    tap = service.tap("book.out")
    trades = [
        Trade(account=Account(id=f"a{i % 7}", region="x", tags={}), symbol="s", seq=i)
        for i in range(300)
    ]
    async with service.running():
        for item in trades:
            await inlet.send(item)
        with anyio.fail_after(30):
            while len(tap.items) < len(trades):
                await anyio.sleep(0.01)
    got = [t.seq for t in tap.items]
    for k in range(7):
        mine = [s for s in got if s % 7 == k]
        assert mine == sorted(mine), (k, mine)
    assert got != sorted(got) and Slow.most > 1
    print("kept", CONNECTIONS[0][5])


anyio.run(main)
"""


def test_the_emitted_service_keeps_each_keys_order(tmp_path: Path) -> None:
    blueprint = tmp_path / NAME
    blueprint.write_text(BASE)
    dest = tmp_path / "out"
    done = run_cli("generate", str(blueprint), "-o", str(dest))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate passed:" in done.stdout
    wiring = (dest / "keyed/wiring.py").read_text()
    assert (
        "'api.out', 'book.in', 1024, 'block', 'memory', 'account.id'"
        in wiring.replace('"', "'")
    )
    assert (
        "'book.out', 'store.in', 1024, 'block', 'memory', 'symbol'"
        in wiring.replace('"', "'")
    )
    ran = subprocess.run(
        [sys.executable, "-c", KEPT],
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout == "kept account.id\n"
