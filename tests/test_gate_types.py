"""The gate's type check (issue #21): the user's code is held to the blueprint's types.

A misspelt field, a wrong return type or a missing ``await`` in a user file of any
kind fails ``generate --force``, ``gate`` and ``regenerate``, naming the file and the
line (and, for a misspelt field, the field meant); a field renamed in the blueprint
fails ``regenerate`` on every user line still using the old name; every example's
fresh defaults pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator.gate import run_gate
from generator.generation import generate
from generator.typecheck import TypeProblem, parse

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))

BLUEPRINT = """\
portwright: 1
name: shop
schemas:
  Order:
    fields:
      order_id: {type: str, max_length: 64}
      amount: {type: float, gt: 0}
  Scored:
    extends: Order
    fields:
      risk: {type: float, ge: 0, le: 1}
components:
  api:
    kind: api_endpoint
    route: POST /orders
    output: Order
  feed:
    kind: source
    outputs: {out: Order}
  merge:
    kind: merger
    inputs: {a: Order, b: Order}
    output: Order
  keep:
    kind: filter
    input: Order
    output: Order
  score:
    kind: transformer
    input: Order
    output: Scored
  by_risk:
    kind: router
    input: Scored
    outputs: {high: Scored, low: Scored}
  ledger:
    kind: sink
    inputs: {high: Scored, low: Scored}
connections:
  - api.out -> merge.a
  - feed.out -> merge.b
  - merge.out -> keep.in
  - keep.out -> score.in
  - score.out -> by_risk.in
  - by_risk.high -> ledger.high
  - by_risk.low -> ledger.low
"""

# One user file per kind, each with the three mistakes, marked: ``# FIELD`` (a
# misspelt field of a blueprint schema), ``# RETURN`` (the wrong type out) and
# ``# AWAIT`` (a coroutine used without ``await``).
MISTAKES = {
    "feed": '''\
"""A source."""

from collections.abc import AsyncIterator

from ..bases import FeedBase
from ..schemas import Order


class Feed(FeedBase):
    """Orders from nowhere."""

    async def lookup(self) -> float:
        """A price, some day."""
        return 1.0

    async def generate(self) -> AsyncIterator[Order]:
        """One order."""
        order = Order(order_id="a", amount=1.0)
        print(order.amout)  # FIELD
        self.lookup()  # AWAIT
        yield "not an order"  # RETURN
''',
    "keep": '''\
"""A filter."""

from ..bases import KeepBase
from ..schemas import Order


class Keep(KeepBase):
    """Keeps what is worth it."""

    async def ready(self) -> bool:
        """Whether the shop is open."""
        return True

    def keep(self, item: Order) -> bool:
        """Keep the big ones."""
        self.ready()  # AWAIT
        if item.amout > 10:  # FIELD
            return True
        return item  # RETURN
''',
    "score": '''\
"""A transformer, async."""

from ..bases import ScoreBase
from ..schemas import Order, Scored


class Score(ScoreBase):
    """Scores orders."""

    async def risk_of(self, item: Order) -> float:
        """The risk, from a service."""
        return 0.5

    async def transform(self, item: Order) -> Scored | None:
        """Score ``item``."""
        risk: float = self.risk_of(item)  # AWAIT
        if item.amout > 100:  # FIELD
            return Scored(order_id=item.order_id, amount=item.amount, rsik=risk)  # KEYWORD
        return item  # RETURN
''',
    "by_risk": '''\
"""A router."""

from ..bases import ByRiskBase, ByRiskPort
from ..schemas import Scored


class ByRisk(ByRiskBase):
    """Routes by risk."""

    async def limit(self) -> float:
        """The threshold, from settings."""
        return 0.5

    def route(self, item: Scored) -> ByRiskPort | list[ByRiskPort] | None:
        """High or low."""
        self.limit()  # AWAIT
        if item.rsik > 0.5:  # FIELD
            return "high"
        return 3  # RETURN
''',
    "ledger": '''\
"""A sink."""

from ..bases import LedgerBase
from ..schemas import Scored


class Ledger(LedgerBase):
    """Writes the ledger."""

    async def store(self, item: Scored) -> None:
        """Store ``item``."""

    def consume(self, item: Scored) -> None:
        """Keep ``item``."""
        self.store(item)  # AWAIT
        print(item.amout)  # FIELD
        return item  # RETURN
''',
}
MEANT = {"amout": "amount", "rsik": "risk"}
#: what the emitted tests load, as the gate gives it (plugins do not load themselves)
PLUGINS = ("-p", "anyio.pytest_plugin", "-p", "pytest_timeout")
# right for the blueprint as it is; wrong once ``amount`` is renamed
KEEP_AMOUNT = '''\
"""A filter."""

from ..bases import KeepBase
from ..schemas import Order


class Keep(KeepBase):
    """Keeps what is worth something."""

    def keep(self, item: Order) -> bool:
        """Whether ``item`` is worth something."""
        return item.amount > 0  # USES
'''
LEDGER_AMOUNT = '''\
"""A sink."""

from ..bases import LedgerBase
from ..schemas import Scored


class Ledger(LedgerBase):
    """Writes the ledger."""

    def consume(self, item: Scored) -> None:
        """Log what was paid."""
        self.log.info("paid", extra={"amount": item.amount})  # USES
'''


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )


def expected_lines() -> dict[str, tuple[str, str | None]]:
    """``shop/components/x.py:N`` -> (the mistake, the field it meant) for each mark."""
    found: dict[str, tuple[str, str | None]] = {}
    for name, text in MISTAKES.items():
        for number, line in enumerate(text.splitlines(), 1):
            if "  # " in line:
                mark = line.rsplit("# ", 1)[1]
                meant = next((v for k, v in MEANT.items() if k in line), None)
                found[f"shop/components/{name}.py:{number}"] = (mark, meant)
    return found


def assert_named(output: str) -> None:
    """Every marked line of every kind is named, with the field meant where misspelt."""
    lines = output.splitlines()
    for where, (mark, meant) in expected_lines().items():
        named = [line for line in lines if f"{where}: " in line]
        assert named, f"{where} ({mark}) is not named in:\n{output}"
        if meant:
            assert any(f"(did you mean {meant!r}?)" in line for line in named), named


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("types")
    blueprint = folder / "shop.yaml"
    blueprint.write_text(BLUEPRINT)
    generate(blueprint, folder / "shop", gate=False)
    return folder


@pytest.fixture
def shop(pristine: Path, tmp_path: Path) -> Path:
    """A copy of the generated shop and its blueprint (``tmp_path / "shop.yaml"``)."""
    shutil.copy(pristine / "shop.yaml", tmp_path / "shop.yaml")
    shutil.copytree(pristine / "shop", tmp_path / "shop")
    return tmp_path / "shop"


def plant(project: Path) -> None:
    for name, text in MISTAKES.items():
        (project / "shop" / "components" / f"{name}.py").write_text(text)


def test_the_defaults_of_every_kind_pass_the_type_check(shop: Path) -> None:
    result = run_gate(shop)
    types = {s.name: s for s in result.steps}["types"]
    assert types.ok, types.output
    assert result.ok, [s.output for s in result.steps if not s.ok]


def test_mistakes_of_every_kind_fail_generate_force_gate_and_regenerate(
    shop: Path,
) -> None:
    plant(shop)
    before = {p: p.read_bytes() for p in shop.rglob("*") if p.is_file()}

    done = cli("generate", str(shop.parent / "shop.yaml"), "-o", str(shop), "--force")
    assert done.returncode == 1, done.stdout + done.stderr
    assert_named(done.stdout)

    done = cli("gate", str(shop))
    assert done.returncode == 1, done.stdout + done.stderr
    assert_named(done.stdout)
    assert "FAIL types" in done.stdout

    blueprint = shop / ".portwright" / "blueprint.yaml"
    blueprint.write_text(blueprint.read_text() + "description: A shop.\n")
    done = cli("regenerate", str(shop))
    assert done.returncode == 1, done.stdout + done.stderr
    assert_named(done.stdout)
    # the failed gate left the project as it was (the blueprint copy aside)
    blueprint.write_text(before[blueprint].decode())
    assert {p: p.read_bytes() for p in shop.rglob("*") if p.is_file()} == before


def test_a_field_renamed_in_the_blueprint_fails_regenerate_on_each_user_line(
    shop: Path,
) -> None:
    uses = {
        "keep": KEEP_AMOUNT,
        "ledger": LEDGER_AMOUNT,
    }
    lines: list[str] = []
    for name, text in uses.items():
        (shop / "shop" / "components" / f"{name}.py").write_text(text)
        number = next(
            n for n, line in enumerate(text.splitlines(), 1) if "USES" in line
        )
        lines.append(f"shop/components/{name}.py:{number}: ")
    assert run_gate(shop).ok  # the user code is right for the blueprint as it is

    blueprint = shop / ".portwright" / "blueprint.yaml"
    text = blueprint.read_text()
    blueprint.write_text(text.replace("      amount:", "      total:"))
    done = cli("regenerate", str(shop))
    assert done.returncode == 1, done.stdout + done.stderr
    for line in lines:
        named = [out for out in done.stdout.splitlines() if line in out]
        assert named and "amount" in named[0], f"{line} not named in:\n{done.stdout}"


@pytest.mark.parametrize("blueprint", EXAMPLES, ids=[b.stem for b in EXAMPLES])
def test_every_example_passes_the_gate_with_the_type_check(
    blueprint: Path, tmp_path: Path
) -> None:
    result = generate(blueprint, tmp_path / blueprint.stem).gate
    assert result is not None
    names = [s.name for s in result.steps]
    assert names.index("ruff") < names.index("types") < names.index("pytest")
    failed = {s.name: s.output for s in result.steps if not s.ok}
    assert result.ok, failed


def _report(*errors: dict[str, object]) -> str:
    return json.dumps({"errors": list(errors)})


def test_a_misspelt_keyword_of_a_schema_names_the_field_it_meant() -> None:
    description = (
        "Unexpected keyword argument `rsik` in function "
        "`shop.schemas.Scored.__init__`"
    )
    error = {
        "path": "shop/components/score.py",
        "line": 7,
        "name": "unexpected-keyword",
        "description": description,
        "concise_description": description,
    }
    fields = {"Scored": ("order_id", "amount", "risk")}
    (problem,) = parse(_report(error), fields)
    assert str(problem) == (
        f"shop/components/score.py:7: {description} [unexpected-keyword] "
        "(did you mean 'risk'?)"
    )
    # the same keyword of a class that is not a blueprint schema: no guess
    other = {**error, "description": description.replace("Scored", "Other")}
    assert parse(_report(other), fields)[0].suggestion is None


def test_pyrefly_hint_and_a_schema_attribute_without_one() -> None:
    hinted = {
        "path": "a.py",
        "line": 3,
        "name": "missing-attribute",
        "description": "Object of class `Order` has no attribute `amout`\n"
        "Did you mean `amount`?",
        "concise_description": "Object of class `Order` has no attribute `amout`",
    }
    bare = {**hinted, "line": 4, "description": hinted["concise_description"]}
    fields = {"Order": ("order_id", "amount")}
    problems = parse(_report(hinted, bare), fields)
    assert [p.suggestion for p in problems] == ["amount", "amount"]
    assert parse(_report(bare), {})[0] == TypeProblem(
        "a.py",
        4,
        "Object of class `Order` has no attribute `amout`",
        "missing-attribute",
    )
    with pytest.raises(ValueError):
        parse("INFO no report", fields)


def test_the_emitted_ci_type_checks_and_measures_coverage_of_owned_files(
    shop: Path,
) -> None:
    import yaml

    ci = yaml.safe_load((shop / ".github" / "workflows" / "ci.yml").read_text())
    runs = [str(s.get("run", "")) for s in ci["jobs"]["test"]["steps"]]
    assert "pyrefly check" in runs
    assert runs.index("pyrefly check") < runs.index("pytest --cov")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTHONPATH", None)
    checked = subprocess.run(
        [sys.executable, "-m", "pyrefly", "check"],
        cwd=shop,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "--cov", "-p", "pytest_cov", *PLUGINS],
        cwd=shop,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    report = tested.stdout
    assert "shop/wiring.py" in report or "files skipped due to complete" in report
    assert "runtime/" not in report and "components/" not in report
