"""The live kinds in a blueprint: websocket_out and websocket_in are loaded with
their defaults, misuse is refused at load with its line, and the emitted project
wires them, depends on what serves them, and passes its gate with their tests."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from generator.blueprint import Live
from generator.errors import BlueprintError
from generator.generation import build
from generator.loader import load_text
from generator.planner import LIVE_DEPENDENCY
from tests.cli import generate_gated

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "blueprints" / "live_prices.yaml"
NAME = "desk.yaml"

BASE_LINES = [
    "portwright: 1",  # 1
    "name: desk",  # 2
    "schemas:",  # 3
    "  Quote:",  # 4
    "    fields:",  # 5
    "      symbol: str",  # 6
    "      price: {type: float, gt: 0}",  # 7
    "      tags: list[str]",  # 8
    "components:",  # 9
    "  api:",  # 10
    "    kind: api_endpoint",  # 11
    "    route: POST /quotes",  # 12
    "    output: Quote",  # 13
    "  feed:",  # 14
    "    kind: websocket_in",  # 15
    "    route: /live/in",  # 16
    "    output: Quote",  # 17
    "  screens:",  # 18
    "    kind: websocket_out",  # 19
    "    route: /live/quotes",  # 20
    "    inputs: {http: Quote, live: Quote}",  # 21
    "    subscribe_by: [symbol]",  # 22
    "  store: {kind: sink, input: Quote}",  # 23
    "connections:",  # 24
    "  - api.out -> screens.http",  # 25
    "  - feed.out -> screens.live",  # 26
    "  - api.out -> store.in",  # 27
]


def _with(changes: dict[int, str]) -> str:
    lines = list(BASE_LINES)
    for number, text in sorted(changes.items(), reverse=True):
        lines[number - 1 : number] = text.split("\n")
    return "\n".join(lines) + "\n"


def _problems(text: str) -> list[str]:
    with pytest.raises(BlueprintError) as caught:
        load_text(text, NAME)
    return [str(p).removeprefix(f"{NAME}:") for p in caught.value.problems]


def test_the_live_kinds_load_with_their_defaults() -> None:
    blueprint = load_text(_with({}), NAME)
    screens = blueprint.component("screens")
    assert screens.live == Live(
        route="/live/quotes",
        max_connections=1000,
        heartbeat_ms=30_000,
        slow_client="disconnect",
        send_queue=1024,
        subscribe_by=("symbol",),
        max_frame_bytes=65536,
    )
    assert [p.name for p in screens.inputs] == ["http", "live"]
    assert screens.outputs == ()
    feed = blueprint.component("feed")
    assert feed.live is not None and feed.live.max_frame_bytes == 64 * 1024
    assert (feed.auth, feed.rate_limit) == (None, None)


def test_every_key_of_the_live_kinds_is_read() -> None:
    text = _with(
        {
            17: "    output: Quote\n    auth: api_key\n    max_frame_bytes: 512\n"
            "    rate_limit: {requests: 5, per_seconds: 1, key: api_key}\n"
            "    max_connections: 3\n    heartbeat: 500ms",
            22: "    subscribe_by: [symbol, price]\n    slow_client: drop_oldest\n"
            "    send_queue: 8\n    page: false",
        }
    )
    blueprint = load_text(text, NAME)
    feed = blueprint.component("feed")
    assert feed.live is not None
    assert (feed.live.max_frame_bytes, feed.live.max_connections) == (512, 3)
    assert feed.live.heartbeat_ms == 500
    assert feed.auth == "api_key"
    assert feed.rate_limit is not None and feed.rate_limit.key == "api_key"
    screens = blueprint.component("screens")
    assert screens.live is not None
    assert screens.live.subscribe_by == ("symbol", "price")
    assert (screens.live.slow_client, screens.live.send_queue) == ("drop_oldest", 8)
    assert screens.live.page is False


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {16: "    route: /quotes"},
            "16: components.feed.route: route '/quotes' is already used by "
            "component 'api'; give the WebSocket a path of its own (e.g. "
            "'/quotes/live')",
        ),
        (
            {20: "    route: /live/in/"},
            "20: components.screens.route: route '/live/in/' is already used by "
            "component 'feed'; give the WebSocket a path of its own (e.g. "
            "'/live/in/live')",
        ),
        (
            {22: "    subscribe_by: [symbl]"},
            "22: components.screens.subscribe_by[0]: subscribe_by field 'symbl' is "
            "not a field of 'Quote' (input 'http') (did you mean 'symbol'?)",
        ),
        (
            {22: "    subscribe_by: [tags]"},
            "22: components.screens.subscribe_by[0]: subscribe_by field 'tags' of "
            "'Quote' is a 'list[str]'; a client filters by a value written in the "
            "query (a str, number, bool, date, ...), not a list or a schema",
        ),
        (
            {22: "    subscribe_by: [symbol, symbol]"},
            "22: components.screens.subscribe_by[1]: subscribe_by names 'symbol' twice",
        ),
        (
            {8: "      key: str", 22: "    subscribe_by: [key]"},
            "22: components.screens.subscribe_by[0]: subscribe_by field 'key' would "
            "be the query parameter '?key=', which asks for one key of a keyed "
            "input; a client filters by the connection's key with it already",
        ),
        (
            {20: "    route: POST /live/quotes"},
            "20: components.screens.route: route 'POST /live/quotes' is not a path "
            "of letters, digits and ._~- without '.' or '..' segments (e.g. "
            "'/live/prices'); a WebSocket route has no method",
        ),
        (
            {20: "    route: /metrics"},
            "20: components.screens.route: route '/metrics' uses a path every "
            "service already serves; choose another",
        ),
        (
            {
                17: "    output: Quote\n    rate_limit: {requests: 1, per_seconds: 1, "
                "key: api_key}"
            },
            "18: components.feed.rate_limit.key: rate_limit key 'api_key' counts per "
            "API key, but component 'feed' has no auth; add 'auth: api_key' or use "
            "key 'client'",
        ),
        (
            {17: "    output: Quote\n    auth: basic"},
            "18: components.feed.auth: 'basic' is not one of: api_key",
        ),
    ],
    ids=[
        "route-of-an-endpoint",
        "route-of-another-websocket",
        "unknown-subscribe-field",
        "list-subscribe-field",
        "subscribe-field-twice",
        "subscribe-by-key",
        "route-with-a-method",
        "reserved-route",
        "rate-limit-per-key-without-auth",
        "basic-auth",
    ],
)
def test_misuse_is_refused_at_load_with_its_line(
    changes: dict[int, str], expected: str
) -> None:
    assert expected in _problems(_with(changes))


def test_a_websocket_out_with_an_output_is_refused() -> None:
    problems = _problems(_with({22: "    output: Quote"}))
    assert len(problems) == 1
    assert problems[0].startswith("22: components.screens")
    assert "'output'" in problems[0]


def test_a_websocket_in_with_an_input_is_refused() -> None:
    problems = _problems(_with({17: "    output: Quote\n    input: Quote"}))
    assert len(problems) == 1
    assert problems[0].startswith("18: components.feed")
    assert "'input'" in problems[0]


def _pyproject(text: str, folder: Path) -> dict[str, object]:
    folder.mkdir()
    built = build(load_text(text, NAME), text, folder / "project")
    return tomllib.loads(built.contents["pyproject.toml"].decode())


def test_the_project_depends_on_websockets_only_with_live_components(
    tmp_path: Path,
) -> None:
    live = _pyproject(_with({}), tmp_path / "live")
    plain_text = "\n".join(BASE_LINES[:13]) + "\n  store: {kind: sink, input: Quote}\n"
    plain_text += "connections:\n  - api.out -> store.in\n"
    plain = _pyproject(plain_text, tmp_path / "plain")
    assert LIVE_DEPENDENCY in live["project"]["dependencies"]  # type: ignore[index]
    assert LIVE_DEPENDENCY not in plain["project"]["dependencies"]  # type: ignore[index]


def test_the_wiring_makes_each_live_component_as_the_blueprint_says(
    tmp_path: Path,
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    built = build(load_text(text, EXAMPLE.name), text, tmp_path / "project")
    wiring = built.contents["live_prices/wiring.py"].decode()
    assert (
        "        WebSocketOut(\n"
        '            "screens",\n'
        '            inputs={"in": Price},\n'
        "            burst_limit=256,\n"
        '            route="/live/prices",\n'
        "            max_connections=500,\n"
        "            heartbeat_s=20.0,\n"
        "            queue_size=256,\n"
        '            slow_client="drop_oldest",\n'
        '            subscribe_by=("venue",),\n'
        "        ),\n"
    ) in wiring
    assert (
        "        WebSocketIn(\n"
        '            "desk",\n'
        '            route="/live/desk",\n'
        "            schema=Price,\n"
        "            max_frame_bytes=4096,\n"
        "            max_connections=20,\n"
        "            heartbeat_s=30.0,\n"
        '            auth="api_key",\n'
        '            rate_limit=RateLimit(200, 1, "api_key"),\n'
        "        ),\n"
    ) in wiring
    assert "tests/test_websockets.py" in built.contents


def test_the_example_passes_its_gate_with_its_websocket_tests(tmp_path: Path) -> None:
    project = generate_gated(
        tmp_path, EXAMPLE.name, EXAMPLE.read_text(encoding="utf-8")
    )
    tests = (project / "tests" / "test_websockets.py").read_text(encoding="utf-8")
    for test in (
        "test_every_client_receives_every_item_in_order",
        "test_a_client_receives_only_what_it_asked_for",
        "test_each_frame_is_an_item_and_a_bad_one_is_answered",
        "test_a_frame_past_its_cap_is_answered_as_too_large",
        "test_a_handshake_past_max_connections_is_refused_1013",
        "test_a_client_without_credentials_is_refused_1008",
    ):
        assert f"def {test}(" in tests


SMALL = """\
portwright: 1
name: ticker
schemas:
  Tick:
    fields: {n: int}
components:
  clock: {kind: source, every: 1h, output: Tick}
  board: {kind: websocket_out, route: /ticks, input: Tick, page: false}
  inbox: {kind: websocket_in, route: /inbox, output: Tick, max_frame_bytes: 2000000}
  store: {kind: sink, input: Tick}
connections:
  - clock.out -> board.in
  - inbox.out -> store.in
"""


def test_a_small_live_project_without_filters_or_auth_passes_its_gate(
    tmp_path: Path,
) -> None:
    project = generate_gated(tmp_path, "ticker.yaml", SMALL)
    tests = (project / "tests" / "test_websockets.py").read_text(encoding="utf-8")
    assert "test_a_client_receives_only_what_it_asked_for" not in tests
    assert "test_a_client_without_credentials_is_refused_1008" not in tests
    assert "test_a_frame_past_its_cap" not in tests  # 2 MB: not sent in a test
    # 'page: false': the wiring says so, and the emitted test expects a 404
    wiring = (project / "ticker" / "wiring.py").read_text(encoding="utf-8")
    assert "            page=False,\n" in wiring
    assert '    ("/ticks", False),\n' in tests


def test_the_emitted_readme_lists_each_live_route(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    built = build(load_text(text, EXAMPLE.name), text, tmp_path / "project")
    readme = built.contents["README.md"].decode()
    assert "### Live routes (WebSocket)" in readme
    assert (
        "| `/live/prices` | websocket_out | `Price` out to every client "
        "| `venue`, `key` | none |"
    ) in readme
    assert (
        "| `/live/desk` | websocket_in | `Price` in, one per text frame | none "
        "| API key (header or first frame) |"
    ) in readme
    assert "its items come from its sources" not in readme
