"""What the loader says about a blueprint it refuses, as a test compares it."""

from __future__ import annotations

import pytest

from generator.errors import BlueprintError
from generator.loader import load_text


def problems_of(text: str, name: str) -> list[str]:
    """Each problem of blueprint ``text`` (read as file ``name``) as ``line: key:
    message``, the file's name left out; the test fails when the text loads."""
    with pytest.raises(BlueprintError) as caught:
        load_text(text, name)
    return [str(p).removeprefix(f"{name}:") for p in caught.value.problems]
