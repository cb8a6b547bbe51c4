"""The memory transport runs the shared transport suite."""

from __future__ import annotations

import pytest
import runtime

from tests.runtime.transport_suite import TransportSuite


class TestMemoryTransport(TransportSuite):
    @pytest.fixture
    def transport(self) -> str:
        return "memory"

    @pytest.fixture
    def settings(self) -> runtime.ServiceSettings:
        return runtime.ServiceSettings(drain_timeout_s=20)
