"""Service settings, read from ``<SERVICE>_*`` environment variables.

Every field of ``ServiceSettings`` has a variable: for the service ``order_pipeline``,
``ORDER_PIPELINE_DRAIN_TIMEOUT_S=10`` sets ``drain_timeout_s``. Buffer sizes can be
overridden per item:

- ``ORDER_PIPELINE_BUFFER__LEDGER__ACCEPTED=128``: the buffer of every connection into
  the input port ``ledger.accepted``; ``..._OVERFLOW__LEDGER__ACCEPTED=drop_newest`` its
  overflow policy;
- ``ORDER_PIPELINE_TIMEOUT_MS__ORDERS_API=250`` and ``..._MAX_PAYLOAD_KB__ORDERS_API=32``:
  an endpoint's wait before 503 and its body cap;
- ``ORDER_PIPELINE_BURST_LIMIT__SCORE=64``: how many messages a component handles
  before it yields to the others;
- ``ORDER_PIPELINE_RATE_LIMIT__ORDERS_API=100/60``: an endpoint's rate limit
  (requests per seconds), replacing the blueprint's.

Lists (``..._API_KEYS``, ``..._TRUSTED_PROXIES``) are comma-separated. A value that
may be a secret is never repeated in an error message.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from .errors import SettingsError

__all__ = ["ServiceSettings"]

#: per-item variables: prefix -> (settings field, how many names the key holds)
_PER_ITEM: dict[str, tuple[str, int]] = {
    "BUFFER__": ("buffer_overrides", 2),
    "OVERFLOW__": ("overflow_overrides", 2),
    "TIMEOUT_MS__": ("timeout_overrides", 1),
    "MAX_PAYLOAD_KB__": ("payload_overrides", 1),
    "BURST_LIMIT__": ("burst_overrides", 1),
    "RATE_LIMIT__": ("rate_limit_overrides", 1),
}
#: fields whose values are never repeated in an error message
_SECRET_FIELDS = frozenset({"api_keys", "rate_limit_storage"})
_DIGEST = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _digest(value: str) -> str:
    match = _DIGEST.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            "an entry is not a SHA-256 digest (64 hex digits); give the digest the "
            "credentials command prints, never the key itself"
        )
    return match.group(1).lower()


def _network(value: str) -> str:
    return str(ipaddress.ip_network(value.strip(), strict=False))


def _storage(value: str) -> str:
    if value not in ("auto", "memory") and not value.startswith(
        ("redis://", "rediss://")
    ):
        raise ValueError("must be 'auto', 'memory' or a redis:// or rediss:// URL")
    return value


def _rate(value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]{0,9}/[1-9][0-9]{0,5}", value.strip()):
        raise ValueError("must be '<requests>/<seconds>', e.g. '100/60'")
    return value.strip()


Digests = Annotated[
    tuple[Annotated[str, AfterValidator(_digest)], ...],
    BeforeValidator(_comma_separated),
]
Networks = Annotated[
    tuple[Annotated[str, AfterValidator(_network)], ...],
    BeforeValidator(_comma_separated),
]


class ServiceSettings(BaseModel):
    """Every tunable of a running service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: how long a graceful stop may take before what is left is abandoned
    drain_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    #: how long one component's ``cleanup()`` may take
    cleanup_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: ``/ready`` answers 503 while any input port's fullest buffer is this full
    ready_max_utilization: Annotated[float, Field(gt=0, le=1)] = 1.0
    #: a source whose ``generate()`` raised is restarted after this many seconds
    #: (0: it stays stopped)
    source_restart_s: Annotated[float, Field(ge=0)] = 1.0
    #: a warning names the code that holds the event loop this long (ms)
    loop_lag_warn_ms: Annotated[float, Field(gt=0)] = 100.0
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    #: fix each connection's kernel send buffer (bytes; unset: the kernel grows it
    #: up to 4 MiB): bounds what a live client that stops reading holds before its
    #: own queue fills and its ``slow_client`` policy applies
    send_buffer_bytes: Annotated[int, Field(ge=4096)] | None = None
    #: the components this process runs, comma-separated (empty: all of them)
    components: str = ""
    #: carry every connection in ``memory`` or by ``redis``, whatever the wiring says
    transport: Literal["memory", "redis"] | None = None
    #: the Redis of the service's streams and of ``Component.once``
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: put before every key, so that several deployments can share one Redis
    redis_prefix: str = ""
    #: this replica's consumer name in every group (empty: ``<hostname>-<pid>``)
    redis_consumer: str = ""
    #: deliveries of an item before it goes to the dead-letter stream
    redis_max_retries: Annotated[int, Field(ge=1, le=1000)] = 3
    #: how long an item may stay unacknowledged before another replica takes it
    redis_claim_idle_ms: Annotated[int, Field(ge=10, le=86_400_000)] = 30_000
    #: how long a replica's lease on a partition of a keyed connection lasts
    #: unless renewed (renewed every quarter of it; see redis/leases.py)
    redis_lease_ttl_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    #: how many times a takeover may deliver again the entry a partition's owner
    #: held first when its lease passed on, before it goes to the dead-letter
    #: stream (an item that kills every replica that takes it; see partitioned.py)
    redis_max_takeovers: Annotated[int, Field(ge=1, le=1000)] = 10
    #: how long ``Component.once`` remembers that a key's effect was applied
    dedup_ttl_s: Annotated[float, Field(gt=0)] = 86_400.0
    #: buffer size per input port (``"component.port"``), replacing the wiring's
    buffer_overrides: dict[str, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict
    )
    #: overflow policy per input port (``"component.port"``), replacing the wiring's
    overflow_overrides: dict[str, Literal["block", "drop_newest", "drop_oldest"]] = (
        Field(default_factory=dict)
    )
    #: ingress wait before 503, in ms, per api_endpoint
    timeout_overrides: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )
    #: ingress body cap, in KiB, per api_endpoint
    payload_overrides: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )
    #: messages handled before yielding to other tasks, per component
    burst_overrides: dict[str, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict
    )
    #: SHA-256 digests (hex) of the API keys ``auth: api_key`` endpoints accept
    api_keys: Digests = ()
    #: a file of more digests, one a line (``#`` starts a comment)
    api_keys_file: str | None = None
    #: a file of ``name:<bcrypt hash>`` lines, the users of ``auth: basic`` endpoints
    basic_users_file: str | None = None
    #: networks (CIDR) whose ``X-Forwarded-For`` is believed; nobody else's is
    trusted_proxies: Networks = ()
    #: where rate-limit counters live: ``memory`` (this process) or a Redis URL
    #: (``redis://host:6379/0``, ``rediss://...``), shared by every replica;
    #: ``auto``: the service's own Redis (``redis_url``) when it runs on Redis
    rate_limit_storage: Annotated[str, AfterValidator(_storage)] = "auto"
    #: in memory, the clients counted per endpoint; the least recently seen one is
    #: forgotten beyond this, so memory stays bounded whatever the traffic
    rate_limit_max_clients: Annotated[int, Field(gt=0, le=10_000_000)] = 10_000
    #: rate limit per api_endpoint, ``<requests>/<seconds>``, replacing the wiring's
    rate_limit_overrides: dict[str, Annotated[str, AfterValidator(_rate)]] = Field(
        default_factory=dict
    )

    @classmethod
    def from_env(
        cls, service: str, environ: Mapping[str, str] | None = None, **defaults: Any
    ) -> ServiceSettings:
        """Settings from ``<SERVICE>_<FIELD>`` variables, over ``defaults``."""
        environ = os.environ if environ is None else environ
        prefix = f"{service.upper()}_"
        values: dict[str, Any] = dict(defaults)
        per_item: dict[str, dict[str, str]] = {}
        for key, value in environ.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix) :]
            item = next((p for p in _PER_ITEM if name.startswith(p)), None)
            if item is not None:
                field, parts = _PER_ITEM[item]
                names = name[len(item) :].lower().split("__")
                if len(names) != parts or not all(names):
                    shape = "__".join(["<COMPONENT>", "<PORT>"][:parts])
                    raise SettingsError(f"{key} should be named {prefix}{item}{shape}")
                per_item.setdefault(field, {})[".".join(names)] = value
            elif name.lower() in _env_fields(cls):
                values[name.lower()] = value.upper() if name == "LOG_LEVEL" else value
            else:
                raise SettingsError(
                    f"{key} is not a setting of {service!r}; known: "
                    + ", ".join(prefix + f.upper() for f in _env_fields(cls))
                    + ", "
                    + ", ".join(
                        prefix + item + "__".join(["<COMPONENT>", "<PORT>"][:parts])
                        for item, (_, parts) in _PER_ITEM.items()
                    )
                )
        values.update(per_item)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = str(error["loc"][0])
            item = next((p for p, (f, _) in _PER_ITEM.items() if f == field), None)
            if item is not None:
                variable = f"{prefix}{item}" + str(error["loc"][1]).upper().replace(
                    ".", "__"
                )
            else:
                variable = prefix + field.upper()
            if field in _SECRET_FIELDS:
                reason = str(error["msg"]).removeprefix("Value error, ")
                raise SettingsError(f"{variable}: {reason}.") from None
            raise SettingsError(
                f"{variable} has value {error['input']!r}. {error['msg']}."
            ) from None


def _env_fields(cls: type[ServiceSettings]) -> list[str]:
    per_item = {field for field, _ in _PER_ITEM.values()}
    return [name for name in cls.model_fields if name not in per_item]
