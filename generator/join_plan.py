"""What the emitted join tests feed each join component, from the blueprint.

Plain data on the blueprint's numbers (times in whole microseconds), so that the
emitted tests check the runtime's ``Join`` against the blueprint, not against
itself: which items pair, which time out, which are late.
"""

from __future__ import annotations

from typing import Any

from .blueprint import Blueprint
from .examples import example_item

#: microseconds per second: times and spans are counted in whole microseconds
_US = 1_000_000


def join_cases(blueprint: Blueprint) -> list[dict[str, Any]]:
    """Each join component as its emitted tests need it."""
    cases = []
    for component in blueprint.components:
        conf = component.join
        if conf is None:
            continue
        left = component.input("left")
        right = component.input("right")
        assert left is not None and right is not None  # the resolver checked
        cases.append(
            {
                "name": component.name,
                "left": left.schema,
                "right": right.schema,
                "key_left": conf.key_left,
                "key_right": conf.key_right,
                "time_left": conf.time_left,
                "time_right": conf.time_right,
                "within": round(conf.within * _US),
                "grace": round(conf.grace * _US),
                "unmatched": component.output("unmatched_left") is not None,
                "left_example": example_item(blueprint, left.schema),
                "right_example": example_item(blueprint, right.schema),
            }
        )
    return cases
