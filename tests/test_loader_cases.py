"""One-line changes to a small valid blueprint, each with the exact problem it causes.

``BASE`` loads cleanly; every case replaces some of its lines (by number) and pins
what the loader reports, as ``line: key: message``.
"""

from __future__ import annotations

import pytest

from generator.errors import BlueprintError
from generator.loader import load_text

BASE_LINES = [
    "portwright: 1",  # 1
    "name: shop",  # 2
    "defaults:",  # 3
    "  buffer_size: 100",  # 4
    "  pii_fields: [email]",  # 5
    "schemas:",  # 6
    "  Order:",  # 7
    "    fields:",  # 8
    "      order_id: str",  # 9
    "      amount: {type: float, gt: 0}",  # 10
    "components:",  # 11
    "  api:",  # 12
    "    kind: api_endpoint",  # 13
    "    route: POST /orders",  # 14
    "    output: Order",  # 15
    "  store:",  # 16
    "    kind: sink",  # 17
    "    input: Order",  # 18
    "connections:",  # 19
    "  - api.out -> store.in",  # 20
]
BASE = "\n".join(BASE_LINES) + "\n"
NAME = "shop.yaml"


def _with(changes: dict[int, str]) -> str:
    lines = list(BASE_LINES)
    for number, text in changes.items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n"


def _problems(text: str) -> list[str]:
    with pytest.raises(BlueprintError) as caught:
        load_text(text, NAME)
    return [str(p).removeprefix(f"{NAME}:") for p in caught.value.problems]


def test_base_loads() -> None:
    blueprint = load_text(BASE, NAME)

    assert blueprint.name == "shop"
    assert blueprint.warnings == ()


CASES: list[tuple[str, dict[int, str], list[str]]] = [
    # -- the format version ----------------------------------------------------------
    (
        "version 2",
        {1: "portwright: 2"},
        [
            "1: portwright: format version 2 is not supported; this portwright reads version 1"
        ],
    ),
    (
        "version as text",
        {1: "portwright: '1'"},
        [
            "1: portwright: format version '1' is not supported; this portwright reads version 1"
        ],
    ),
    (
        "version true",
        {1: "portwright: true"},
        [
            "1: portwright: format version True is not supported; this portwright reads version 1"
        ],
    ),
    (
        "version 1.0",
        {1: "portwright: 1.0"},
        [
            "1: portwright: format version 1.0 is not supported; this portwright reads version 1"
        ],
    ),
    # -- the service name ------------------------------------------------------------
    (
        "service name is a keyword",
        {2: "name: class"},
        ["2: name: name 'class' is a Python keyword; choose another name"],
    ),
    (
        "service name shadows the tests package",
        {2: "name: tests"},
        [
            "2: name: name 'tests' would shadow the Python module of that name; choose another"
        ],
    ),
    (
        "service name too long",
        {2: "name: " + "s" * 65},
        [f"2: name: name '{'s' * 65}' is longer than 64 characters"],
    ),
    (
        "service name with a dot",
        {2: "name: my.shop"},
        [
            "2: name: name 'my.shop' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"
        ],
    ),
    (
        "service name with non-ASCII letters",
        {2: "name: caf\u00e9"},
        [
            "2: name: name 'caf\u00e9' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"
        ],
    ),
    (
        "service name with a trailing newline",
        {2: 'name: "shop\\n"'},
        [
            "2: name: name 'shop\\n' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"
        ],
    ),
    # -- defaults ----------------------------------------------------------------------
    (
        "buffer size zero",
        {4: "  buffer_size: 0"},
        ["4: defaults.buffer_size: must be > 0, got 0"],
    ),
    (
        "buffer size negative",
        {4: "  buffer_size: -1"},
        ["4: defaults.buffer_size: must be > 0, got -1"],
    ),
    (
        "buffer size absurd",
        {4: "  buffer_size: 10000001"},
        ["4: defaults.buffer_size: must be <= 10000000, got 10000001"],
    ),
    (
        "buffer size as text",
        {4: "  buffer_size: '100'"},
        ["4: defaults.buffer_size: expected an integer, got '100'"],
    ),
    (
        "buffer size as a float",
        {4: "  buffer_size: 100.0"},
        ["4: defaults.buffer_size: expected an integer, got 100.0"],
    ),
    (
        "overflow misspelt",
        {4: "  overflow: drop_olderst"},
        [
            "4: defaults.overflow: 'drop_olderst' is not one of: block, drop_newest, drop_oldest (did you mean 'drop_oldest'?)"
        ],
    ),
    (
        "pii field empty",
        {5: "  pii_fields: [email, '']"},
        ["5: defaults.pii_fields[1]: must not be empty, got ''"],
    ),
    (
        "pii field not text",
        {5: "  pii_fields: [email, 3]"},
        ["5: defaults.pii_fields[1]: expected a string (quote it), got 3"],
    ),
    # -- schemas and fields ----------------------------------------------------------
    (
        "schema name is lower case",
        {7: "  order:"},
        [
            # the shape is checked first; graph problems wait until it is right
            "7: schemas.order: schema name 'order' is not a valid name: use CamelCase (^[A-Z][A-Za-z0-9]*$)",
        ],
    ),
    (
        "schema name reserved",
        {7: "  UUID:", 15: "    output: UUID", 18: "    input: UUID"},
        [
            "7: schemas.UUID: schema name 'UUID' is reserved by the emitted code; choose another"
        ],
    ),
    (
        "field name is a keyword",
        {9: "      from: str"},
        [
            "9: schemas.Order.fields.from: field name 'from' is a Python keyword; choose another name"
        ],
    ),
    (
        "field name shadows BaseModel",
        {9: "      model_config: str"},
        [
            "9: schemas.Order.fields.model_config: field name 'model_config' shadows an attribute of pydantic's BaseModel"
        ],
    ),
    (
        "field name private",
        {9: "      _id: str"},
        [
            "9: schemas.Order.fields._id: field name '_id' starts with '_', which pydantic treats as private"
        ],
    ),
    (
        "field type unknown",
        {9: "      order_id: string"},
        [
            "9: schemas.Order.fields.order_id.type: unknown type 'string': use one of str, int, float, bool, datetime, date, uuid, dict, list[T], a schema name, or T | None"
        ],
    ),
    (
        "field bound not a number",
        {10: "      amount: {type: float, gt: zero}"},
        ["10: schemas.Order.fields.amount.gt: expected a number, got 'zero'"],
    ),
    (
        "field bound true",
        {10: "      amount: {type: float, gt: true}"},
        ["10: schemas.Order.fields.amount.gt: expected a number, got True"],
    ),
    (
        "field length negative",
        {10: "      amount: {type: str, max_length: -1}"},
        ["10: schemas.Order.fields.amount.max_length: must be >= 0, got -1"],
    ),
    (
        "field key misspelt",
        {10: "      amount: {type: float, gt: 0, descripton: total}"},
        [
            "10: schemas.Order.fields.amount.descripton: unknown key 'descripton' in field 'Order.amount' (did you mean 'description'?)"
        ],
    ),
    (
        "default against a pattern with a newline stays on one line",
        {10: '      amount: {type: str, pattern: "^a\\nb$", default: ab}'},
        [
            "10: schemas.Order.fields.amount.default: default 'ab' is not a valid 'str': String should match pattern '^a\\nb$'"
        ],
    ),
    # -- components and ports --------------------------------------------------------
    (
        "component name shadows a builtin",
        {16: "  list:", 20: "  - api.out -> list.in"},
        [
            "16: components.list: component name 'list' shadows a name the emitted code uses; choose another"
        ],
    ),
    (
        "component name is a keyword",
        {16: "  while:", 20: "  - api.out -> while.in"},
        [
            "16: components.while: component name 'while' is a Python keyword; choose another name"
        ],
    ),
    (
        "port name with a capital",
        {18: "    inputs: {Main: Order}", 20: "  - api.out -> store.Main"},
        [
            "18: components.store.inputs.Main: port name 'Main' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"
        ],
    ),
    (
        "kind misspelt",
        {17: "    kind: snk"},
        [
            "17: components.store.kind: unknown kind 'snk' (did you mean 'sink'?); kinds are: source, api_endpoint, transformer, filter, router, merger, sink, websocket_out, websocket_in, window, join"
        ],
    ),
    (
        "route with GET",
        {14: "    route: GET /orders"},
        [
            "14: components.api.route: route 'GET /orders' is not 'METHOD /path' with METHOD one of POST, PUT, PATCH and a path of letters, digits and ._~- (e.g. 'POST /orders')"
        ],
    ),
    (
        "route on a reserved path",
        {14: "    route: POST /openapi.json"},
        [
            "14: components.api.route: route 'POST /openapi.json' uses a path every service already serves; choose another"
        ],
    ),
    (
        "route with a trailing newline",
        {14: '    route: "POST /orders\\n"'},
        [
            "14: components.api.route: route 'POST /orders\\n' is not 'METHOD /path' with METHOD one of POST, PUT, PATCH and a path of letters, digits and ._~- (e.g. 'POST /orders')"
        ],
    ),
    (
        "component name with a newline stays on one line",
        {16: '  "store\\n":', 20: "  - api.out -> store.in"},
        [
            "16: components['store\\n']: component name 'store\\n' is not a valid name: use snake_case (^[a-z_][a-z0-9_]*$)"
        ],
    ),
    (
        "route in lower case",
        {14: "    route: post /orders"},
        [
            "14: components.api.route: route 'post /orders' is not 'METHOD /path' with METHOD one of POST, PUT, PATCH and a path of letters, digits and ._~- (e.g. 'POST /orders')"
        ],
    ),
    # -- connections -----------------------------------------------------------------
    (
        "connection without its arrow",
        {20: "  - api.out => store.in"},
        [
            "20: connections[0]: connection 'api.out => store.in' is not 'component.port -> component.port'"
        ],
    ),
    (
        "connection to a missing port",
        {20: "  - api.out -> store.inn"},
        [
            "18: components.store.input: input port store.in has no connection; add one such as '- <component>.<port> -> store.in'",
            "20: connections[0]: component 'store' has no input port 'inn' (did you mean 'in'?); its inputs: in",
        ],
    ),
    (
        "connection in mapping form, each end on its own line",
        {20: "  - from: api.out\n    to: stor.in"},
        [
            "18: components.store.input: input port store.in has no connection; add one such as '- <component>.<port> -> store.in'",
            "21: connections[0].to: unknown component 'stor' (did you mean 'store'?)",
        ],
    ),
    # -- endpoint security (issue #7) -----------------------------------------------
    (
        "auth misspelt",
        {15: "    output: Order\n    auth: apikey"},
        [
            "16: components.api.auth: 'apikey' is not one of: api_key, basic (did you mean 'api_key'?)"
        ],
    ),
    (
        "auth on a sink",
        {18: "    input: Order\n    auth: api_key"},
        [
            "19: components.store.auth: unknown key 'auth' in component 'store' "
            "(did you mean 'batch'?)"
        ],
    ),
    (
        "rate limit key misspelt",
        {15: "    output: Order\n    rate_limit: {requests: 5, per_second: 1}"},
        [
            "16: components.api.rate_limit.per_second: unknown key 'per_second' in component 'api' (did you mean 'per_seconds'?)"
        ],
    ),
    (
        "rate limit of zero requests",
        {15: "    output: Order\n    rate_limit: {requests: 0, per_seconds: 1}"},
        ["16: components.api.rate_limit.requests: must be > 0, got 0"],
    ),
    (
        "rate limit window as text",
        {15: "    output: Order\n    rate_limit: {requests: 5, per_seconds: '60'}"},
        ["16: components.api.rate_limit.per_seconds: expected an integer, got '60'"],
    ),
    (
        "rate limit per API key without API keys",
        {
            15: "    output: Order\n    rate_limit: {requests: 5, per_seconds: 1, key: api_key}"
        },
        [
            "16: components.api.rate_limit.key: rate_limit key 'api_key' counts per API key, but component 'api' has no auth; add 'auth: api_key' or use key 'client'"
        ],
    ),
    (
        "rate limit per user",
        {
            15: "    output: Order\n    rate_limit: {requests: 5, per_seconds: 1, key: user}"
        },
        ["16: components.api.rate_limit.key: 'user' is not one of: client, api_key"],
    ),
    (
        "trusted proxy with host bits",
        {5: "  trusted_proxies: [10.0.0.1/8]"},
        [
            "5: defaults.trusted_proxies[0]: '10.0.0.1/8' is not an IP network; write '10.0.0.0/8'"
        ],
    ),
    (
        "trusted proxy that is a name",
        {5: "  trusted_proxies: [proxy.internal]"},
        [
            "5: defaults.trusted_proxies[0]: 'proxy.internal' is not an IP network (e.g. '10.0.0.0/8', '192.0.2.7' or '2001:db8::/32')"
        ],
    ),
    (
        "trusted proxies as one string",
        {5: "  trusted_proxies: 10.0.0.0/8"},
        ["5: defaults.trusted_proxies: expected a list, got '10.0.0.0/8'"],
    ),
    (
        "connection buffer zero",
        {20: "  - {from: api.out, to: store.in, buffer_size: 0}"},
        ["20: connections[0].buffer_size: must be > 0, got 0"],
    ),
    (
        "no connections at all",
        {19: "connections: []", 20: ""},
        [
            "18: components.store.input: input port store.in has no connection; add one such as '- <component>.<port> -> store.in'"
        ],
    ),
    # -- transport and redis -----------------------------------------------------------
    (
        "unknown transport",
        {2: "name: shop\ntransport: kafka"},
        ["3: transport: 'kafka' is not one of: memory, redis"],
    ),
    (
        "transport of a connection, capitalised",
        {20: "  - {from: api.out, to: store.in, transport: Redis}"},
        [
            "20: connections[0].transport: 'Redis' is not one of: memory, redis (did you mean 'redis'?)"
        ],
    ),
    (
        "redis_url with another scheme",
        {4: "  redis_url: http://cache:6379"},
        [
            "4: defaults.redis_url: redis_url 'http://cache:6379' is not a redis://, rediss:// or unix:// URL without spaces (e.g. 'redis://127.0.0.1:6379/0')"
        ],
    ),
    (
        "redis_url with a password and a space is refused without the password",
        {4: "  redis_url: 'redis://:hunter2@cache:6379/0 x'"},
        [
            "4: defaults.redis_url: redis_url 'cache:6379/0 x' is not a redis://, rediss:// or unix:// URL without spaces (e.g. 'redis://127.0.0.1:6379/0')"
        ],
    ),
    (
        "max_retries zero",
        {4: "  max_retries: 0"},
        ["4: defaults.max_retries: must be > 0, got 0"],
    ),
    (
        "claim_idle_ms as text",
        {4: "  claim_idle_ms: '30000'"},
        ["4: defaults.claim_idle_ms: expected an integer, got '30000'"],
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [(changes, expected) for _, changes, expected in CASES],
    ids=[case[0] for case in CASES],
)
def test_change_reports_exactly(changes: dict[int, str], expected: list[str]) -> None:
    assert _problems(_with(changes)) == expected


def test_endpoint_security_resolves() -> None:
    text = _with(
        {
            5: "  trusted_proxies: [10.0.0.0/8, '2001:db8::1', 10.0.0.0/8]",
            15: "    output: Order\n    auth: api_key\n"
            "    rate_limit: {requests: 5, per_seconds: 60, key: api_key}",
        }
    )
    blueprint = load_text(text, NAME)

    api = blueprint.component("api")
    assert api.auth == "api_key"
    assert api.rate_limit is not None
    assert (api.rate_limit.requests, api.rate_limit.per_seconds) == (5, 60)
    assert api.rate_limit.key == "api_key"
    assert blueprint.trusted_proxies == ("10.0.0.0/8", "2001:db8::1/128")
    assert load_text(BASE, NAME).component("api").rate_limit is None


def test_unknown_top_level_key_without_a_close_match_has_no_hint() -> None:
    assert _problems(BASE + "owner: team-a\n") == [
        "21: owner: unknown key 'owner'",
    ]


def test_yaml_yes_and_on_are_not_names() -> None:
    # YAML 1.1 reads an unquoted 'on' as true: a port called 'on' must be quoted.
    text = _with({18: "    inputs: {on: Order}", 20: "  - api.out -> store.on"})
    assert _problems(text) == [
        "18: components.store.inputs: key True is not a string (quote it if you meant a name)",
    ]
    assert (
        load_text(text.replace("{on:", "{'on':"), NAME).component("store").input("on")
    )
