"""A served service drains what it accepted when the process gets SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

PACKAGE = Path(__file__).resolve().parents[2] / "templates" / "project" / "package"

SERVICE = textwrap.dedent("""
    import sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[3])

    import anyio
    import runtime
    from pydantic import BaseModel


    class Order(BaseModel):
        order_id: int
        email: str


    class SlowLedger(runtime.Sink):
        async def consume(self, item: Order) -> None:
            await anyio.sleep(0.01)
            with Path(sys.argv[1]).open("a") as ledger:
                ledger.write(f"{item.order_id}\\n")


    settings = runtime.ServiceSettings(port=int(sys.argv[2]), drain_timeout_s=20)
    service = runtime.Service("demo", pii_fields={"email"}, settings=settings)
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.add(SlowLedger("ledger", inputs={"in": Order}))
    service.connect("orders.out", "ledger.in", buffer_size=100)
    runtime.serve(runtime.create_app(service))
    """)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_sigterm_drains_every_accepted_message_then_exits(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    ledger = tmp_path / "ledger.txt"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(ledger), str(port), str(PACKAGE)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.05)
            accepted = [
                client.post("/orders", json={"order_id": n, "email": "e@x.org"})
                for n in range(40)
            ]
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    finally:
        process.kill()

    assert {response.status_code for response in accepted} == {202}
    # about 0.4 s of work was still queued at the signal: all of it was done
    assert ledger.read_text().split() == [str(n) for n in range(40)]
    assert process.returncode in (0, -signal.SIGTERM)
    lines = [json.loads(line) for line in errors.splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("stopped; drained") for line in lines)
    assert "e@x.org" not in errors
