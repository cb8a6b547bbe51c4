"""Live clients: websocket_out pushes in order, filters, refuses past
max_connections and without credentials, drops or closes slow clients, closes
silent ones; websocket_in validates each frame as the HTTP ingress does, caps
frames, and stops reading while its output is full; 1001 on shutdown; metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import runtime
from pydantic import BaseModel, Field
from runtime import app as served_app
from runtime.websocket import GOING_AWAY, POLICY, TRY_AGAIN_LATER, LiveClient
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.runtime.support import Recorder

KEY = "k-" + "7" * 30


class Quote(BaseModel):
    symbol: str = Field(max_length=8)
    price: float = Field(gt=0)


def out_service(
    settings: dict[str, Any] | None = None, **options: Any
) -> tuple[runtime.Service, runtime.Inlet]:
    """A service whose inlet feeds a websocket_out at /quotes."""
    service = runtime.Service(
        "desk", settings=runtime.ServiceSettings(**(settings or {}))
    )
    service.add(
        runtime.WebSocketOut("quotes", route="/quotes", inputs={"in": Quote}, **options)
    )
    inlet = service.inlet("quotes.in")
    return service, inlet


@contextmanager
def serving(service: runtime.Service) -> Iterator[TestClient]:
    with TestClient(runtime.create_app(service)) as client:
        yield client


def push(client: TestClient, inlet: runtime.Inlet, *quotes: Quote) -> None:
    """Send quotes in through the inlet, on the app's event loop."""

    async def send() -> None:
        for quote in quotes:
            await inlet.send(quote)

    assert client.portal is not None
    client.portal.call(send)


def clients_of(service: runtime.Service, name: str) -> int:
    component = service.components[name]
    assert isinstance(component, runtime.WebSocketOut | runtime.WebSocketIn)
    return len(component.live.clients)


def wait_for_clients(client: TestClient, service: runtime.Service, n: int) -> None:
    """Wait until ``n`` clients are counted (a handshake returns before)."""

    async def until() -> None:
        import anyio

        with anyio.fail_after(5):
            while clients_of(service, "quotes") != n:
                await anyio.sleep(0.001)

    assert client.portal is not None
    client.portal.call(until)


def test_every_client_receives_every_item_in_order_with_its_ids() -> None:
    service, inlet = out_service()
    quotes = [Quote(symbol="ACME", price=i + 1) for i in range(50)]
    with (
        serving(service) as client,
        client.websocket_connect("/quotes") as first,
        client.websocket_connect("/quotes") as second,
    ):
        wait_for_clients(client, service, 2)
        push(client, inlet, *quotes)
        for socket in (first, second):
            frames = [socket.receive_json() for _ in quotes]
            assert [f["item"] for f in frames] == [q.model_dump() for q in quotes]
            assert all(f["type"] == "item" for f in frames)
            assert len({f["id"] for f in frames}) == len(quotes)
            assert frames[0]["correlation_id"] == frames[0]["id"]
            assert frames[0]["event_time"].endswith("+00:00")


def test_subscribe_by_sends_a_client_only_the_items_it_asked_for() -> None:
    service, inlet = out_service(subscribe_by=["symbol"])
    with (
        serving(service) as client,
        client.websocket_connect("/quotes?symbol=ACME") as acme,
        client.websocket_connect("/quotes") as everything,
    ):
        wait_for_clients(client, service, 2)
        push(
            client,
            inlet,
            Quote(symbol="ACME", price=1),
            Quote(symbol="INIT", price=2),
            Quote(symbol="ACME", price=3),
        )
        assert [acme.receive_json()["item"]["price"] for _ in range(2)] == [1, 3]
        assert [everything.receive_json()["item"]["price"] for _ in range(3)] == [
            1,
            2,
            3,
        ]


class Tick(BaseModel):
    symbol: str
    live: bool
    price: float


def test_subscribe_by_compares_a_value_as_its_json_writes_it() -> None:
    service = runtime.Service("desk")
    service.add(
        runtime.WebSocketOut(
            "quotes", route="/quotes", inputs={"in": Tick}, subscribe_by=["live"]
        )
    )
    inlet = service.inlet("quotes.in")
    with (
        serving(service) as client,
        client.websocket_connect("/quotes?live=true") as live,
        client.websocket_connect("/quotes?live=True") as python_spelling,
    ):
        wait_for_clients(client, service, 2)
        push(
            client,
            inlet,
            Tick(symbol="A", live=False, price=1),
            Tick(symbol="B", live=True, price=2),
        )
        assert live.receive_json()["item"]["symbol"] == "B"
        client.portal.call(_stop, service)  # type: ignore[union-attr]
        # what was queued is sent before the close: 'True' matched nothing
        with pytest.raises(WebSocketDisconnect) as closed:
            python_spelling.receive_json()
        assert closed.value.code == GOING_AWAY


def keyed_service() -> tuple[runtime.Service, runtime.Inlet]:
    """A websocket_out fed by a connection keyed by ``symbol``."""
    service = runtime.Service("desk")
    service.add(runtime.WebSocketOut("quotes", route="/quotes", inputs={"in": Quote}))
    service.add(Relay("relay", inputs={"in": Quote}, outputs={"out": Quote}))
    service.connect("relay.out", "quotes.in", key="symbol")
    return service, service.inlet("relay.in")


def test_key_sends_a_client_only_the_items_of_that_key() -> None:
    service, inlet = keyed_service()
    with (
        serving(service) as client,
        client.websocket_connect("/quotes?key=ACME") as acme,
        client.websocket_connect("/quotes") as everything,
    ):
        wait_for_clients(client, service, 2)
        push(
            client,
            inlet,
            Quote(symbol="INIT", price=1),
            Quote(symbol="ACME", price=2),
            Quote(symbol="INIT", price=3),
            Quote(symbol="ACME", price=4),
        )
        assert [acme.receive_json()["item"]["price"] for _ in range(2)] == [2, 4]
        assert [everything.receive_json()["item"]["price"] for _ in range(4)] == [
            1,
            2,
            3,
            4,
        ]


def test_key_on_a_route_whose_input_is_not_keyed_is_refused_1008() -> None:
    service, _ = out_service()
    with serving(service) as client:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/quotes?key=ACME") as socket,
        ):
            socket.receive_json()
        assert refused.value.code == POLICY
        assert "not" in refused.value.reason


def test_subscribe_by_a_field_the_input_lacks_is_refused_at_wiring() -> None:
    with pytest.raises(runtime.WiringError, match="'sector' is not a field"):
        runtime.WebSocketOut(
            "quotes", route="/quotes", inputs={"in": Quote}, subscribe_by=["sector"]
        )


def test_a_handshake_past_max_connections_is_closed_1013_and_counted() -> None:
    service, _ = out_service(max_connections=1)
    with serving(service) as client, client.websocket_connect("/quotes"):
        wait_for_clients(client, service, 1)
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/quotes") as extra,
        ):
            extra.receive_json()
        assert refused.value.code == TRY_AGAIN_LATER
        metrics = client.get("/metrics").text
    assert 'portwright_websocket_refused_total{component="quotes"} 1.0' in metrics
    assert 'portwright_websocket_clients{component="quotes"} 1.0' in metrics


def test_auth_takes_a_header_or_a_first_frame_and_refuses_others_1008() -> None:
    digests = (runtime.api_key_digest(KEY),)
    service, inlet = out_service(auth="api_key", settings={"api_keys": digests})
    with serving(service) as client:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/quotes") as nobody,
        ):
            nobody.send_json({"api_key": "wrong"})
            nobody.receive_json()
        assert refused.value.code == POLICY
        with (
            client.websocket_connect("/quotes", headers={"x-api-key": KEY}) as program,
            client.websocket_connect("/quotes") as browser,
        ):
            browser.send_json({"api_key": KEY})
            wait_for_clients(client, service, 2)
            push(client, inlet, Quote(symbol="ACME", price=1))
            assert program.receive_json()["item"]["price"] == 1
            assert browser.receive_json()["item"]["price"] == 1


def test_a_slow_client_is_closed_1008_and_counted() -> None:
    service, _ = out_service(queue_size=4)
    component = service.components["quotes"]
    assert isinstance(component, runtime.WebSocketOut)
    stuck = LiveClient(_Unsent(), component.live)  # type: ignore[arg-type]
    for price in range(1, 6):
        stuck.offer(f'{{"price":{price}}}')
    assert stuck.closing == (POLICY, "too slow: the send queue is full")
    assert not stuck.queue  # nothing more is sent to it
    stuck.offer("late")
    assert not stuck.queue
    assert component.live.counts.slow_disconnected == 1


def test_drop_oldest_keeps_the_newest_frames_and_counts_the_dropped() -> None:
    service, _ = out_service(queue_size=3, slow_client="drop_oldest")
    component = service.components["quotes"]
    assert isinstance(component, runtime.WebSocketOut)
    stuck = LiveClient(_Unsent(), component.live)  # type: ignore[arg-type]
    for frame in "abcde":
        stuck.offer(frame)
    assert list(stuck.queue) == ["c", "d", "e"]
    assert stuck.closing is None
    assert component.live.counts.slow_dropped == 2


def test_a_client_silent_through_a_heartbeat_is_pinged_then_closed() -> None:
    service, _ = out_service(heartbeat_s=0.02)
    with serving(service) as client, client.websocket_connect("/quotes") as silent:
        assert silent.receive_json() == {"type": "ping"}
        with pytest.raises(WebSocketDisconnect) as closed:
            silent.receive_json()
        assert closed.value.code == POLICY
        component = service.components["quotes"]
        assert isinstance(component, runtime.WebSocketOut)
        assert component.live.counts.heartbeat_timeouts == 1


def test_clients_get_what_was_queued_then_1001_when_the_service_stops() -> None:
    service, inlet = out_service()
    with serving(service) as client, client.websocket_connect("/quotes") as socket:
        wait_for_clients(client, service, 1)
        push(client, inlet, Quote(symbol="ACME", price=1))
        assert socket.receive_json()["item"]["price"] == 1
        assert client.portal is not None
        client.portal.call(_stop, service)
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == GOING_AWAY


HOSTILE = '</title><img src=x onerror="alert(1)"><script>alert(2)</script>'


def test_a_get_of_the_route_is_a_page_with_the_descriptions_escaped() -> None:
    service, _ = out_service(auth="api_key")
    app = runtime.create_app(
        service,
        description="the desk " + HOSTILE,
        endpoint_descriptions={"quotes": "quotes " + HOSTILE},
    )
    with TestClient(app) as client:
        page = client.get("/quotes")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "<img" not in text and "alert(2)</script>" not in text
    assert '<p id="description">quotes &lt;/title&gt;&lt;img src=x onerror=' in text
    assert '<p id="service">the desk &lt;/title&gt;' in text
    assert '{"route": "/quotes", "auth": "api_key"}' in text
    assert "/quotes" not in client.get("/openapi.json").text  # a page, not an API


def test_without_a_page_a_get_of_the_route_is_not_found_and_clients_still_connect() -> (
    None
):
    service, inlet = out_service(page=False)
    with serving(service) as client:
        assert client.get("/quotes").status_code == 404
        with client.websocket_connect("/quotes") as socket:
            wait_for_clients(client, service, 1)
            push(client, inlet, Quote(symbol="ACME", price=1.0))
            assert socket.receive_json()["item"]["symbol"] == "ACME"


def test_the_page_data_cannot_end_its_script_element() -> None:
    service = runtime.Service("desk")
    out = service.add(
        runtime.WebSocketOut(
            "quotes", route="/a</script><script>x", inputs={"in": Quote}
        )
    )
    page = runtime.websocket.live_page(out, "", "")
    assert '"/a\\u003c/script\\u003e\\u003cscript\\u003ex"' in page
    assert page.count("</script>") == 2  # the data's and the script's own


# -- websocket_in ---------------------------------------------------------------


def in_service(**options: Any) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service("desk")
    service.add(
        runtime.WebSocketIn(
            "orders", route="/orders", schema=Quote, max_payload_kb=1, **options
        )
    )
    recorder = service.add(Recorder("book", inputs={"in": Quote}))
    service.connect("orders.out", "book.in")
    return service, recorder


def test_each_frame_becomes_an_item_and_a_bad_one_is_answered_like_http() -> None:
    service, recorder = in_service()
    with serving(service) as client:
        with client.websocket_connect("/orders") as socket:
            socket.send_json({"symbol": "ACME", "price": 1})
            socket.send_json({"symbol": "much too long", "price": -1})
            socket.send_text("{not json")
            socket.send_text(json.dumps({"symbol": "X", "price": 1.5}) + " " * 1100)
            socket.send_json({"symbol": "INIT", "price": 2})
            invalid = socket.receive_json()
            broken = socket.receive_json()
            large = socket.receive_json()
        http = client.post("/nothing-here")  # the app still answers
    assert http.status_code == 404
    assert invalid["type"] == "problem" and invalid["frame"] == 2
    assert invalid["error"] == "invalid_body"
    assert {tuple(e["loc"]) for e in invalid["detail"]} == {
        ("body", "symbol"),
        ("body", "price"),
    }
    assert all("input" not in e for e in invalid["detail"])  # never echoed
    assert (broken["frame"], broken["error"]) == (3, "invalid_body")
    assert (large["frame"], large["error"]) == (4, "payload_too_large")
    assert [q.symbol for q in recorder.items] == ["ACME", "INIT"]
    component = service.components["orders"]
    assert isinstance(component, runtime.WebSocketIn)
    assert (component.live.counts.frames_in, component.live.counts.problems) == (5, 3)


def test_a_full_output_stops_reading_and_loses_nothing() -> None:
    service = runtime.Service("desk")
    service.add(runtime.WebSocketIn("orders", route="/orders", schema=Quote))
    gate = service.add(_Held("book", inputs={"in": Quote}))
    service.connect("orders.out", "book.in", buffer_size=2)
    sent = 40
    with serving(service) as client, client.websocket_connect("/orders") as socket:
        for price in range(1, sent + 1):
            socket.send_json({"symbol": "ACME", "price": price})
        assert client.portal is not None
        client.portal.call(gate.holding.wait)
        # held: the buffer is full, so the server reads no further frames
        component = service.components["orders"]
        assert isinstance(component, runtime.WebSocketIn)
        read = component.live.counts.frames_in
        assert read < sent
        client.portal.call(_release, gate)
        client.portal.call(gate.all_in, sent)
    assert [q.price for q in gate.items] == list(range(1, sent + 1))


def test_websocket_in_refuses_past_max_connections_1013() -> None:
    service, _ = in_service(max_connections=1)
    with serving(service) as client, client.websocket_connect("/orders") as first:
        first.send_json({"symbol": "ACME", "price": 1})
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/orders") as extra,
        ):
            extra.receive_json()
    assert refused.value.code == TRY_AGAIN_LATER


def test_a_rate_limited_frame_is_answered_and_the_connection_stays_open() -> None:
    service, recorder = in_service(rate_limit=runtime.RateLimit(2, 60))
    with serving(service) as client, client.websocket_connect("/orders") as socket:
        for price in (1, 2, 3):
            socket.send_json({"symbol": "ACME", "price": price})
        limited = socket.receive_json()
    assert (limited["frame"], limited["error"]) == (3, "rate_limited")
    assert [q.price for q in recorder.items] == [1, 2]


def test_max_frame_bytes_caps_a_frame_in_bytes() -> None:
    service, recorder = in_service(max_frame_bytes=40)
    small = json.dumps({"symbol": "ACME", "price": 1})
    with serving(service) as client, client.websocket_connect("/orders") as socket:
        socket.send_text(small + " " * (40 - len(small)))  # 40 bytes: taken
        socket.send_text(small + " " * (41 - len(small)))  # 41: refused
        socket.send_json({"symbol": "INIT", "price": 2})
        large = socket.receive_json()
    assert (large["frame"], large["error"]) == (2, "payload_too_large")
    assert large["detail"] == "frame exceeds 40 bytes"
    assert [q.symbol for q in recorder.items] == ["ACME", "INIT"]


# -- helpers ----------------------------------------------------------------------


class Relay(runtime.Transformer):
    """Passes each item on (so a keyed connection can feed the websocket_out)."""

    def transform(self, item: Any) -> Any:
        return item


class _Unsent:
    """A socket nobody sends on (the sender task of its client never runs)."""

    client = None


class _Held(runtime.Sink):
    """Holds its first item until released; then keeps everything."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.items: list[Any] = []

    async def setup(self) -> None:
        import anyio

        self.holding = anyio.Event()
        self.release = anyio.Event()
        self.more = anyio.Event()

    async def consume(self, item: Any) -> None:
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        self.items.append(item)
        self.more.set()

    async def all_in(self, count: int) -> None:
        import anyio

        with anyio.fail_after(5):
            while len(self.items) < count:
                self.more = anyio.Event()
                await self.more.wait()


async def _release(gate: _Held) -> None:
    gate.release.set()


async def _stop(service: runtime.Service) -> None:
    service.stop()


def test_serve_leaves_a_live_clients_liveness_to_its_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn's protocol pings are off: a client that reads nothing is closed by
    the route (its slow-client policy, 1008, counted), not by uvicorn with 1011
    after 40 s of unanswered pings."""
    seen: list[Any] = []

    def record(self: Any, sockets: Any = None) -> None:
        seen.append(self.config)
        for sock in sockets or ():
            sock.close()

    monkeypatch.setattr(served_app._DrainingServer, "run", record)
    service = runtime.Service("pings")
    assert runtime.serve(runtime.create_app(service), host="127.0.0.1", port=0) == 0
    (config,) = seen
    assert config.ws_ping_interval is None and config.ws_ping_timeout is None
