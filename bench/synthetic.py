"""Synthetic blueprints of N components, for the generation benchmark.

A blueprint is made of *cells* of eight components that use every kind:

    c<k>_api (api_endpoint) --live-->   c<k>_merge (merger) -> c<k>_check (filter)
    c<k>_poll (source)      --polled->  -> c<k>_score (transformer, with errors)
    -> c<k>_route (router: high, low) -> c<k>_store (sink, two inputs)
    c<k>_score.errors -> c<k>_dead (sink of ErrorRecord)

Each cell has its own two schemas (``Item<k>`` and ``Scored<k>``, which extends it),
so ``schemas.py``, ``bases.py``, ``wiring.py`` and the tests grow with N as they would
for a real service. A remainder of N modulo 8 is a chain: source -> transformers ->
sink (or a lone source).

Usage: ``python -m bench.synthetic N [OUT.yaml]`` writes (or prints) the blueprint;
every blueprint made here is checked with portwright's own loader.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from generator.blueprint import Blueprint
from generator.loader import load_text

CELL = 8


def _schemas(k: int, *, scored: bool) -> list[str]:
    item = [
        f"  Item{k}:",
        f"    description: What cell {k} takes in.",
        "    fields:",
        "      item_id: {type: str, max_length: 64}",
        "      email: {type: str, pii: true}",
        "      amount: {type: float, gt: 0}",
        "      at: datetime",
        "      tags: {type: 'list[str]', max_length: 8, default: []}",
    ]
    if not scored:
        return item
    return [
        *item,
        f"  Scored{k}:",
        f"    extends: Item{k}",
        "    fields:",
        "      risk: {type: float, ge: 0, le: 1}",
    ]


def _cell(k: int) -> tuple[list[str], list[str]]:
    c = f"c{k}"
    item, scored = f"Item{k}", f"Scored{k}"
    components = [
        f"  {c}_api:",
        "    kind: api_endpoint",
        f"    route: POST /{c}/items",
        f"    output: {item}",
        f"  {c}_poll:",
        "    kind: source",
        f"    outputs: {{out: {item}}}",
        f"  {c}_merge:",
        "    kind: merger",
        f"    inputs: {{live: {item}, polled: {item}}}",
        f"    output: {item}",
        f"  {c}_check:",
        "    kind: filter",
        f"    input: {item}",
        f"    output: {item}",
        f"  {c}_score:",
        "    kind: transformer",
        f"    input: {item}",
        f"    outputs: {{out: {scored}, errors: ErrorRecord}}",
        f"  {c}_route:",
        "    kind: router",
        f"    input: {scored}",
        f"    outputs: {{high: {scored}, low: {scored}}}",
        f"  {c}_store:",
        "    kind: sink",
        f"    inputs: {{high: {scored}, low: {scored}}}",
        f"  {c}_dead:",
        "    kind: sink",
        "    input: ErrorRecord",
    ]
    connections = [
        f"  - {c}_api.out -> {c}_merge.live",
        f"  - {c}_poll.out -> {c}_merge.polled",
        f"  - {c}_merge.out -> {c}_check.in",
        f"  - {c}_check.out -> {c}_score.in",
        f"  - {c}_score.out -> {c}_route.in",
        f"  - {c}_score.errors -> {c}_dead.in",
        f"  - {c}_route.high -> {c}_store.high",
        f"  - {{from: {c}_route.low, to: {c}_store.low, buffer_size: 64, overflow: drop_oldest}}",
    ]
    return components, connections


def _chain(k: int, length: int) -> tuple[list[str], list[str]]:
    """source -> transformer * (length - 2) -> sink; a lone source for length 1."""
    c, item = f"c{k}", f"Item{k}"
    names = [f"{c}_step{i}" for i in range(length)]
    components = [f"  {names[0]}:", "    kind: source", f"    outputs: {{out: {item}}}"]
    for name in names[1:-1]:
        components += [
            f"  {name}:",
            "    kind: transformer",
            f"    input: {item}",
            f"    output: {item}",
        ]
    if length > 1:
        components += [f"  {names[-1]}:", "    kind: sink", f"    input: {item}"]
    connections = [
        f"  - {before}.out -> {after}.in" for before, after in itertools.pairwise(names)
    ]
    return components, connections


def blueprint_text(components: int) -> str:
    """A valid blueprint of exactly ``components`` components (at least 1)."""
    if components < 1:
        raise ValueError(f"a blueprint needs at least one component, not {components}")
    cells, rest = divmod(components, CELL)
    schemas: list[str] = []
    parts: list[str] = []
    connections: list[str] = []
    for k in range(cells + (1 if rest else 0)):
        schemas += _schemas(k, scored=k < cells)
        made = _cell(k) if k < cells else _chain(k, rest)
        parts += made[0]
        connections += made[1]
    lines = [
        "portwright: 1",
        f"name: synthetic_{components}",
        f"description: A synthetic service of {components} components (bench/synthetic.py).",
        "version: 0.1.0",
        "defaults: {buffer_size: 256, overflow: block, timeout_ms: 1000}",
        "schemas:",
        *schemas,
        "components:",
        *parts,
        "connections:" if connections else "connections: []",
        *connections,
    ]
    return "\n".join(lines) + "\n"


def make(components: int, folder: Path) -> tuple[Path, Blueprint]:
    """Write the blueprint of ``components`` components into ``folder``; load it."""
    text = blueprint_text(components)
    blueprint = load_text(text, f"synthetic_{components}.yaml")
    if len(blueprint.components) != components:
        raise AssertionError(
            f"asked for {components} components, made {len(blueprint.components)}"
        )
    path = folder / f"synthetic_{components}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, blueprint


def main(argv: list[str]) -> int:
    """``python -m bench.synthetic N [OUT.yaml]``."""
    if len(argv) not in (1, 2) or not argv[0].isdigit():
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    text = blueprint_text(int(argv[0]))
    load_text(text, "synthetic.yaml")  # refuse to hand out an invalid blueprint
    if len(argv) == 2:
        Path(argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
