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
  before it yields to the others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import SettingsError

__all__ = ["ServiceSettings"]

#: per-item variables: prefix -> (settings field, how many names the key holds)
_PER_ITEM: dict[str, tuple[str, int]] = {
    "BUFFER__": ("buffer_overrides", 2),
    "OVERFLOW__": ("overflow_overrides", 2),
    "TIMEOUT_MS__": ("timeout_overrides", 1),
    "MAX_PAYLOAD_KB__": ("payload_overrides", 1),
    "BURST_LIMIT__": ("burst_overrides", 1),
}


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
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
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
            raise SettingsError(
                f"{variable} has value {error['input']!r}. {error['msg']}."
            ) from None


def _env_fields(cls: type[ServiceSettings]) -> list[str]:
    per_item = {field for field, _ in _PER_ITEM.values()}
    return [name for name in cls.model_fields if name not in per_item]
