"""Who may send to an endpoint: holders of an API key, or users with a password.

- ``auth: api_key``: the client sends ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>``. The service knows only the keys' SHA-256 digests
  (``<SERVICE>_API_KEYS``, ``<SERVICE>_API_KEYS_FILE``); the digest of what was sent
  is compared with every known digest in constant time (``hmac.compare_digest``,
  all of them, wherever the match is). Keys are random (256 bits from
  ``new_api_key``), so a fast, unsalted digest is enough to store them.
- ``auth: basic``: HTTP Basic authentication against ``name:<bcrypt hash>`` lines
  (``<SERVICE>_BASIC_USERS_FILE``), for endpoints people use. Hashes need at least
  12 rounds, so a check costs a quarter of a second of CPU by design: it runs in a
  worker thread (at most one per CPU), never on the event loop, and an unknown user
  costs the same as a wrong password.

``python -m <service>.credentials`` (``credentials_main``) makes a new key or a user
entry and prints only what the service stores.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
import bcrypt
from starlette.datastructures import Headers

from .errors import SettingsError, Unauthorized
from .settings import ServiceSettings

__all__ = [
    "BCRYPT_ROUNDS",
    "ApiKeyAuth",
    "BasicAuth",
    "Credentials",
    "api_key_digest",
    "credentials_main",
    "new_api_key",
    "user_entry",
]

BCRYPT_ROUNDS = 12
API_KEY_HEADER = "x-api-key"
_DIGEST = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")
_USER = re.compile(r"[^:\s]{1,128}")
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_BYTES = 72
# Checked when the user is unknown, so that the answer takes as long as for a wrong
# password: a bcrypt hash (12 rounds) of a random password nobody knows.
_NOBODY = b"$2b$12$a/9ufGoCDyQ/5Vrx8/kPHeH49yFJvT4nbJ5jlhuhi4SFqN1wRivBe"


def new_api_key() -> str:
    """A new random API key: 256 bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def api_key_digest(key: str) -> str:
    """The SHA-256 digest (hex) the service stores for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def user_entry(name: str, password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """The ``name:<bcrypt hash>`` line the users file holds for ``name``."""
    if not _USER.fullmatch(name):
        raise ValueError("a user name is 1-128 characters, without ':' or spaces")
    secret = password.encode("utf-8")
    if not secret or len(secret) > _BCRYPT_MAX_BYTES:
        raise ValueError(f"a password is 1-{_BCRYPT_MAX_BYTES} bytes (UTF-8)")
    hashed = bcrypt.hashpw(secret, bcrypt.gensalt(rounds)).decode("ascii")
    return f"{name}:{hashed}"


@dataclass(frozen=True)
class Credentials:
    """The API key digests and the users a service accepts."""

    api_keys: tuple[bytes, ...] = ()
    users: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def load(cls, service: str, settings: ServiceSettings) -> Credentials:
        """From the settings, and the files they name (read now, once)."""
        prefix = service.upper()
        digests = [bytes.fromhex(digest) for digest in settings.api_keys]
        if settings.api_keys_file:
            digests += _read_digests(
                Path(settings.api_keys_file), f"{prefix}_API_KEYS_FILE"
            )
        users: dict[str, bytes] = {}
        if settings.basic_users_file:
            users = _read_users(
                Path(settings.basic_users_file), f"{prefix}_BASIC_USERS_FILE"
            )
        return cls(tuple(dict.fromkeys(digests)), users)


def _lines(path: Path, variable: str) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SettingsError(f"{variable}: cannot read {path}: {reason}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def _read_digests(path: Path, variable: str) -> list[bytes]:
    digests = []
    for number, line in _lines(path, variable):
        match = _DIGEST.fullmatch(line)
        if match is None:  # the line is not repeated: it may be a key by mistake
            raise SettingsError(
                f"{variable}: {path}:{number}: not a SHA-256 digest (64 hex digits); "
                "store the digest the credentials command prints, never the key"
            )
        digests.append(bytes.fromhex(match.group(1)))
    return digests


def _read_users(path: Path, variable: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, line in _lines(path, variable):
        name, _, hashed = line.partition(":")
        where = f"{variable}: {path}:{number}"
        if not _USER.fullmatch(name) or name in users:
            problem = "a repeated user" if name in users else "not a valid user name"
            raise SettingsError(f"{where}: {problem}; a line is 'name:<bcrypt hash>'")
        match = _BCRYPT.fullmatch(hashed)
        if match is None:
            raise SettingsError(f"{where}: the entry of {name!r} is not a bcrypt hash")
        if int(match.group(1)) < BCRYPT_ROUNDS:
            raise SettingsError(
                f"{where}: the hash of {name!r} has {int(match.group(1))} rounds; "
                f"make it again with the credentials command ({BCRYPT_ROUNDS} rounds)"
            )
        users[name] = hashed.encode("ascii")
    return users


class ApiKeyAuth:
    """Accepts a request that carries one of the known API keys."""

    scheme = "api_key"

    def __init__(self, digests: tuple[bytes, ...], realm: str) -> None:
        self.digests = digests
        self.challenge = {"www-authenticate": f'Bearer realm="{realm}"'}

    async def authenticate(self, headers: Headers) -> str:
        """The key's identity (``key:<digest prefix>``); raises ``Unauthorized``.

        Every credential sent must hold: an ``Authorization`` header that is not a
        bearer token, or one that disagrees with ``X-API-Key``, is refused even
        beside a valid key.
        """
        keys = _presented_keys(headers)
        if not keys:
            raise Unauthorized(
                "this endpoint needs an API key: send 'Authorization: Bearer <key>' "
                "or 'X-API-Key: <key>'",
                self.challenge,
            )
        if len(set(keys)) != 1 or not keys[0]:
            raise Unauthorized("the API key is not valid", self.challenge)
        presented = hashlib.sha256(keys[0].encode("latin-1")).digest()
        matched = None
        for digest in self.digests:  # all of them: the time says nothing
            if hmac.compare_digest(digest, presented):
                matched = digest
        if matched is None:
            raise Unauthorized("the API key is not valid", self.challenge)
        return f"key:{matched.hex()[:16]}"


def _presented_keys(headers: Headers) -> list[str]:
    """Every key the request sends ("" for an ``Authorization`` that is no bearer)."""
    keys = []
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        keys.append(token.strip() if scheme.lower() == "bearer" else "")
    for key in headers.getlist(API_KEY_HEADER):
        keys.append(key.strip())
    return keys


class BasicAuth:
    """Accepts a request with the name and password of a known user (HTTP Basic)."""

    scheme = "basic"

    def __init__(self, users: Mapping[str, bytes], realm: str) -> None:
        self.users = users
        self.challenge = {"www-authenticate": f'Basic realm="{realm}", charset="UTF-8"'}
        self._threads: anyio.CapacityLimiter | None = None

    async def authenticate(self, headers: Headers) -> str:
        """The user's identity (``user:<name>``); raises ``Unauthorized``."""
        presented = _basic_credentials(headers.get("authorization"))
        if presented is None:
            raise Unauthorized(
                "this endpoint needs a user name and password (HTTP Basic)",
                self.challenge,
            )
        name, password = presented
        stored = self.users.get(name)
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(os.cpu_count() or 1)
        valid = await anyio.to_thread.run_sync(
            _check_password, password, stored or _NOBODY, limiter=self._threads
        )
        if not valid or stored is None:
            raise Unauthorized("the user name or password is not valid", self.challenge)
        return f"user:{name}"


def _basic_credentials(authorization: str | None) -> tuple[str, bytes] | None:
    if authorization is None:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        name, colon, password = decoded.decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not colon or not name:
        return None
    return name, password.encode("utf-8")


def _check_password(password: bytes, hashed: bytes) -> bool:
    if len(password) > _BCRYPT_MAX_BYTES:  # bcrypt refuses it; no user has one
        bcrypt.checkpw(password[:_BCRYPT_MAX_BYTES], hashed)
        return False
    return bcrypt.checkpw(password, hashed)


# -- python -m <service>.credentials ---------------------------------------------


def credentials_main(service: str, argv: list[str] | None = None) -> int:
    """Make an API key or a user entry; print only what the service stores."""
    prefix = service.upper()
    parser = argparse.ArgumentParser(
        prog=f"python -m {service}.credentials",
        description="Make credentials for the service; only what it stores is printed.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    key = commands.add_parser(
        "api-key",
        help=f"a new API key; prints its digest for {prefix}_API_KEYS(_FILE)",
    )
    where = key.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--key-file",
        type=Path,
        help="write the new key to this new file (mode 600) to hand to the client",
    )
    where.add_argument(
        "--stdin",
        action="store_true",
        help="read an existing key from standard input instead",
    )
    user = commands.add_parser(
        "user",
        help=f"a user entry (bcrypt, {BCRYPT_ROUNDS} rounds) for {prefix}_BASIC_USERS_FILE",
    )
    user.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "api-key":
            print(f"sha256:{api_key_digest(_api_key(args.key_file))}")
        else:
            print(user_entry(args.name, _password()))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _api_key(key_file: Path | None) -> str:
    if key_file is None:
        key = sys.stdin.readline().strip()
        if not key:
            raise ValueError("no key on standard input")
        return key
    key = new_api_key()
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    return key


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise ValueError("the passwords differ")
    return password
