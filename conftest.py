"""Make the emitted runtime importable as ``runtime`` for this repository's tests.

The runtime lives in ``templates/project/package/runtime/`` and uses only relative
imports, so the same files run here as the top-level package ``runtime`` and in every
emitted project as ``<service>.runtime``.
"""

import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).parent / "templates" / "project" / "package"))


@pytest.fixture
def rt() -> ModuleType:
    """The runtime package, as the shared pattern tests expect it."""
    import runtime

    return runtime


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden`` rewrites generated_examples/ on purpose, never silently."""
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="refresh generated_examples/ from blueprints/ instead of comparing",
    )
