"""generated_examples/<stem>/ is exactly what blueprints/<stem>.yaml generates.

Refresh on purpose with: pytest tests/test_golden.py --update-golden
"""

import shutil
from pathlib import Path

import pytest

from generator.generation import generate
from tests.treediff import tree_diff

ROOT = Path(__file__).parent.parent
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))


@pytest.mark.parametrize("blueprint", BLUEPRINTS, ids=[b.stem for b in BLUEPRINTS])
def test_generated_examples_are_current(
    blueprint: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    fresh = tmp_path / blueprint.stem
    generate(blueprint, fresh, gate=False)
    golden = ROOT / "generated_examples" / blueprint.stem
    if request.config.getoption("--update-golden"):
        shutil.rmtree(golden, ignore_errors=True)
        shutil.copytree(fresh, golden)
    assert golden.is_dir(), f"no golden output; run: pytest {__file__} --update-golden"
    difference = tree_diff(golden, fresh)
    assert not difference, (
        f"generated_examples/{blueprint.stem} is stale; refresh it on purpose with "
        f"'pytest tests/test_golden.py --update-golden':\n{difference}"
    )


def test_every_golden_folder_has_its_blueprint() -> None:
    stems = {b.stem for b in BLUEPRINTS}
    folders = {p.name for p in (ROOT / "generated_examples").iterdir() if p.is_dir()}
    assert (
        folders <= stems
    ), f"golden output without a blueprint: {sorted(folders - stems)}"
