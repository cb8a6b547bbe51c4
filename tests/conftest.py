"""Fixtures shared by every test here."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio, the loop uvicorn serves on.

    anyio's own fixture runs each test on every backend it finds importable, so a
    machine with trio installed (CI's, with an older trio than this anyio expects)
    would run them on trio too, which the runtime does not serve on.
    """
    return "asyncio"
