"""A timer's cron ``schedule``, checked by the very parser the service runs.

The runtime's ``cron.py`` (plain Python, standard library only) is loaded from the
template tree, so ``validate`` refuses exactly what the emitted service would.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

__all__ = ["schedule_problem"]

# any fixed time works: a schedule that matches no date fails from every one
_SOME_TIME = 1_767_225_600.0  # 2026-01-01 00:00 UTC


@cache
def _cron() -> ModuleType:
    # imported here: the loader needs this module, and render needs the planner
    from .render import templates_root

    path = templates_root() / "project" / "package" / "runtime" / "cron.py"
    spec = importlib.util.spec_from_file_location("portwright_runtime_cron", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def schedule_problem(text: str) -> str | None:
    """Why ``text`` is not a schedule the runtime can run, or None."""
    cron = _cron()
    try:
        cron.Cron.parse(text).next_after(_SOME_TIME)
    except cron.CronError as exc:
        return str(exc)
    return None
