"""Fixtures shared by the runtime's own tests."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio, the loop uvicorn serves on."""
    return "asyncio"
