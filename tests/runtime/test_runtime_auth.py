"""API keys (SHA-256 digests, constant-time) and users (bcrypt, off the event loop)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import bcrypt
import pytest
import runtime
import runtime.auth
from pydantic import BaseModel
from starlette.datastructures import Headers

from tests.runtime.support import client_for

pytestmark = pytest.mark.anyio

KEY = "test-key-" + "k" * 32  # made up here; never a real secret
OTHER_KEY = "test-key-" + "o" * 32


class Order(BaseModel):
    order_id: str


ORDER = {"order_id": "o-1"}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A users file with 'ann' (password 'open sesame'), hashed once per module."""
    path = tmp_path_factory.mktemp("auth") / "users"
    path.write_text(
        "# who may post\n" + runtime.user_entry("ann", "open sesame") + "\n"
    )
    return path


def build(auth: str, **settings: Any) -> tuple[runtime.Service, runtime.Tap]:
    service = runtime.Service("shop", settings=runtime.ServiceSettings(**settings))
    service.add(
        runtime.ApiEndpoint("orders", route="/orders", schema=Order, auth=auth)  # type: ignore[arg-type]
    )
    return service, service.tap("orders.out")


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


async def test_an_api_key_is_accepted_as_bearer_or_x_api_key() -> None:
    service, tap = build(
        "api_key",
        api_keys=(runtime.api_key_digest(OTHER_KEY), runtime.api_key_digest(KEY)),
    )
    async with service.running(), client_for(service) as client:
        bearer = await client.post(
            "/orders", json=ORDER, headers={"authorization": f"Bearer {KEY}"}
        )
        header = await client.post("/orders", json=ORDER, headers={"x-api-key": KEY})
        both = await client.post(
            "/orders",
            json=ORDER,
            headers={"authorization": f"Bearer {KEY}", "x-api-key": KEY},
        )

    assert (bearer.status_code, header.status_code, both.status_code) == (202,) * 3
    assert len(tap.items) == 3


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"authorization": "Bearer"},
        {"authorization": f"Basic {KEY}"},
        {"authorization": f"Bearer {KEY}x"},
        {"x-api-key": runtime.api_key_digest(KEY)},  # the digest is not the key
        # every credential sent must hold, not just one of them
        {"authorization": "Basic dXNlcjpwdw==", "x-api-key": KEY},
        {"authorization": f"Bearer {OTHER_KEY}", "x-api-key": KEY},
        {"authorization": f"Bearer {KEY}", "x-api-key": "wrong"},
        [("x-api-key", KEY), ("x-api-key", "wrong")],
    ],
)
async def test_anything_but_a_known_key_is_401_before_the_body_is_read(
    headers: dict[str, str] | list[tuple[str, str]],
) -> None:
    service, tap = build("api_key", api_keys=(runtime.api_key_digest(KEY),))
    read = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield b'{"order_id": "o-1"}'

    async with service.running(), client_for(service) as client:
        response = await client.post("/orders", content=body(), headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == 'Bearer realm="shop"'
    assert not read
    assert tap.items == []


async def test_without_configured_keys_every_request_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, tap = build("api_key")
    async with service.running(), client_for(service) as client:
        response = await client.post("/orders", json=ORDER, headers={"x-api-key": ""})

    assert response.status_code == 401
    assert "none are configured" in caplog.text
    assert tap.items == []


def test_the_key_comparison_looks_at_every_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Constant time: hmac.compare_digest against every stored digest, whichever
    # matches (the loop does not stop at the match).
    digests = tuple(hashlib.sha256(f"k{i}".encode()).digest() for i in range(5))
    compared: list[bytes] = []
    real = runtime.auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(runtime.auth.hmac, "compare_digest", spy)
    auth = runtime.ApiKeyAuth(digests, "shop")
    identity = anyio.run(auth.authenticate, Headers({"x-api-key": "k0"}))

    assert compared == list(digests)
    assert identity == f"key:{digests[0].hex()[:16]}"


async def test_keys_come_from_a_file_of_digests(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# clients\n\nsha256:{runtime.api_key_digest(KEY)}\n")
    service, _ = build("api_key", api_keys_file=str(keys))
    async with service.running(), client_for(service) as client:
        response = await client.post("/orders", json=ORDER, headers={"x-api-key": KEY})

    assert response.status_code == 202


def test_a_key_by_mistake_in_place_of_a_digest_is_refused_and_not_repeated(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    service, _ = build("api_key", api_keys_file=str(keys))
    with pytest.raises(runtime.SettingsError) as caught:
        runtime.create_app(service)
    assert f"{keys}:1: not a SHA-256 digest" in str(caught.value)
    assert KEY not in str(caught.value)
    with pytest.raises(runtime.SettingsError) as caught:
        runtime.ServiceSettings.from_env("shop", {"SHOP_API_KEYS": KEY})
    assert "SHOP_API_KEYS" in str(caught.value)
    assert KEY not in str(caught.value)


async def test_a_user_with_the_right_password_is_accepted(users_file: Path) -> None:
    service, tap = build("basic", basic_users_file=str(users_file))
    async with service.running(), client_for(service) as client:
        accepted = await client.post(
            "/orders", json=ORDER, headers=basic("ann", "open sesame")
        )
        wrong = await client.post("/orders", json=ORDER, headers=basic("ann", "nope"))
        unknown = await client.post(
            "/orders", json=ORDER, headers=basic("bob", "open sesame")
        )
        missing = await client.post("/orders", json=ORDER)
        garbage = await client.post(
            "/orders", json=ORDER, headers={"authorization": "Basic !!!"}
        )
        too_long = await client.post(
            "/orders", json=ORDER, headers=basic("ann", "x" * 100)
        )

    assert accepted.status_code == 202
    for refused in (wrong, unknown, missing, garbage, too_long):
        assert refused.status_code == 401
        assert (
            refused.headers["www-authenticate"] == 'Basic realm="shop", charset="UTF-8"'
        )
    assert len(tap.items) == 1


async def test_a_password_check_does_not_stall_the_event_loop(
    users_file: Path,
) -> None:
    service, _ = build("basic", basic_users_file=str(users_file))
    async with service.running(), client_for(service) as client:
        done: list[float] = []

        async def login() -> None:
            await client.post("/orders", json=ORDER, headers=basic("ann", "wrong"))
            done.append(time.monotonic())

        async with anyio.create_task_group() as group:
            group.start_soon(login)
            await anyio.sleep(0.02)  # the check is running now (it takes ~0.25 s)
            started = time.monotonic()
            health = await client.get("/health")
            answered = time.monotonic()

    assert health.status_code == 200
    assert answered - started < 0.1
    assert done and done[0] > answered  # the login was still being checked


def test_a_users_file_is_checked_when_the_app_is_made(tmp_path: Path) -> None:
    weak = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    cases = {
        f"ann:{weak}\n": "the hash of 'ann' has 4 rounds",
        "ann:plain-password\n": "the entry of 'ann' is not a bcrypt hash",
        f"bad name:{weak}\n": "not a valid user name",
    }
    for text, problem in cases.items():
        users = tmp_path / "users"
        users.write_text(text)
        service, _ = build("basic", basic_users_file=str(users))
        with pytest.raises(runtime.SettingsError, match=problem):
            runtime.create_app(service)
    service, _ = build("basic", basic_users_file=str(tmp_path / "absent"))
    with pytest.raises(
        runtime.SettingsError, match="SHOP_BASIC_USERS_FILE: cannot read"
    ):
        runtime.create_app(service)


def test_user_entries_use_12_rounds() -> None:
    name, hashed = runtime.user_entry("ann", "pw").split(":", 1)
    assert name == "ann"
    assert hashed.startswith("$2b$12$")
    assert bcrypt.checkpw(b"pw", hashed.encode())
    with pytest.raises(ValueError, match="1-72 bytes"):
        runtime.user_entry("ann", "x" * 73)
    with pytest.raises(ValueError, match="user name"):
        runtime.user_entry("a:b", "pw")


def credentials(
    *args: str, stdin: str = ""
) -> tuple[int, str, str]:  # exit status, stdout, stderr
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "stdin", io.StringIO(stdin)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        status = runtime.auth.credentials_main("shop", list(args))
    return status, out.getvalue(), err.getvalue()


def test_the_credentials_command_prints_only_what_is_stored(tmp_path: Path) -> None:
    key_file = tmp_path / "client.key"
    status, out, err = credentials("api-key", "--key-file", str(key_file))
    assert status == 0, err
    key = key_file.read_text().strip()
    assert out == f"sha256:{runtime.api_key_digest(key)}\n"
    assert key not in out + err
    assert key_file.stat().st_mode & 0o777 == 0o600
    status, _, err = credentials("api-key", "--key-file", str(key_file))
    assert status == 2 and "exists" in err  # never overwrites a key
    assert key_file.read_text().strip() == key

    _, out, _ = credentials("api-key", "--stdin", stdin=KEY + "\n")
    assert out == f"sha256:{runtime.api_key_digest(KEY)}\n"

    status, out, err = credentials("user", "ann", stdin="open sesame\n")
    assert status == 0, err
    name, hashed = out.strip().split(":", 1)
    assert name == "ann" and bcrypt.checkpw(b"open sesame", hashed.encode())
    assert "open sesame" not in out + err
