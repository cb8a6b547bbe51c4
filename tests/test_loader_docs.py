"""docs/blueprint.md states what the loader does: its example loads, and the numbers and
names it lists are the ones the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from generator import names
from generator.loader import load_blueprint, load_text
from generator.model import DEFAULT_PII_FIELDS, KINDS, RESERVED_PATHS, Defaults
from generator.yaml_source import MAX_DEPTH, MAX_EXPANDED_NODES, MAX_FILE_BYTES

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "blueprint.md").read_text(encoding="utf-8")


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)


def test_the_complete_example_is_the_order_pipeline_and_loads() -> None:
    example = _yaml_blocks()[0]

    blueprint = load_text(example, "docs/blueprint.md")

    assert blueprint.warnings == ()
    assert example == (ROOT / "blueprints" / "order_pipeline.yaml").read_text(
        encoding="utf-8"
    )
    assert blueprint == load_blueprint(
        ROOT / "blueprints" / "order_pipeline.yaml", "docs/blueprint.md"
    )


def test_limits() -> None:
    assert MAX_FILE_BYTES == 1024 * 1024 and "**1 MiB** (1,048,576 bytes)" in DOC
    assert f"**{MAX_EXPANDED_NODES:,} nodes**" in DOC
    assert f"deeper than **{MAX_DEPTH}** levels" in DOC


def test_defaults_table() -> None:
    defaults = Defaults()
    for key in ("buffer_size", "timeout_ms", "max_payload_kb", "burst_limit"):
        assert f"| `{key}` | {getattr(defaults, key)} |" in DOC, key
    assert f"| `overflow` | `{defaults.overflow}` |" in DOC
    assert f"| `pii_fields` | `[{', '.join(DEFAULT_PII_FIELDS)}]` |" in DOC


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_described(kind: str) -> None:
    assert f"| `{kind}` |" in DOC


def test_reserved_names_and_paths_are_listed() -> None:
    for schema in names.RESERVED_SCHEMAS:
        assert f"`{schema}`" in DOC, schema
    for path in RESERVED_PATHS:
        assert f"`{path}`" in DOC, path
    for component in ("app", "service", "settings", "runtime", "wiring", "main"):
        assert f"`{component}`" in DOC, component
    assert "`POST`, `PUT` or `PATCH`" in DOC


def test_the_schema_line_editors_read_is_shown() -> None:
    assert "# yaml-language-server: $schema=../docs/blueprint.schema.json" in DOC
