"""The same blueprint and generator version give byte-identical trees."""

import os
import subprocess
import sys
from pathlib import Path

from bench import synthetic
from tests.treediff import tree, tree_diff

ROOT = Path(__file__).parent.parent


def generate_with_seed(blueprint: Path, dest: Path, seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "generator",
            "generate",
            str(blueprint),
            "-o",
            str(dest),
            "--no-gate",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_two_hash_seeds_give_identical_trees(tmp_path: Path) -> None:
    blueprint = ROOT / "blueprints" / "sensor_alerts.yaml"
    generate_with_seed(blueprint, tmp_path / "a", "0")
    generate_with_seed(blueprint, tmp_path / "b", "4242")
    assert tree_diff(tmp_path / "a", tmp_path / "b") == ""
    files = tree(tmp_path / "a")
    assert len(files) > 10
    for path, data in files.items():  # no absolute paths or staging names leak in
        assert str(tmp_path).encode() not in data, path
        assert b".portwright-" not in data, path


def test_two_hash_seeds_give_identical_trees_for_many_components(
    tmp_path: Path,
) -> None:
    # 90 components: imports of many names and modules, sorted by portwright itself
    blueprint = tmp_path / "synthetic.yaml"
    blueprint.write_text(synthetic.blueprint_text(90), encoding="utf-8")
    generate_with_seed(blueprint, tmp_path / "a", "1")
    generate_with_seed(blueprint, tmp_path / "b", "31337")
    assert tree_diff(tmp_path / "a", tmp_path / "b") == ""
    wiring = (tmp_path / "a" / "synthetic_90" / "wiring.py").read_text()
    # in ruff's natural order, c2 before c10, as ruff's isort (which no longer runs) would
    assert wiring.index("components.c2_check ") < wiring.index("components.c10_check ")
