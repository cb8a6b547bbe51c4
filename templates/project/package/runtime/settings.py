"""Service settings, read from ``<SERVICE>_*`` environment variables.

Every field of ``ServiceSettings`` has a variable: for the service ``order_pipeline``,
``ORDER_PIPELINE_DRAIN_TIMEOUT_S=10`` sets ``drain_timeout_s``. Buffer sizes can be
overridden per input port: ``ORDER_PIPELINE_BUFFER__LEDGER__ACCEPTED=128`` sets the
buffer of every connection into ``ledger.accepted``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import SettingsError

__all__ = ["ServiceSettings"]

_BUFFER = "BUFFER__"


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
    buffer_overrides: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def from_env(
        cls, service: str, environ: Mapping[str, str] | None = None, **defaults: Any
    ) -> ServiceSettings:
        """Settings from ``<SERVICE>_<FIELD>`` variables, over ``defaults``."""
        environ = os.environ if environ is None else environ
        prefix = f"{service.upper()}_"
        values: dict[str, Any] = dict(defaults)
        overrides: dict[str, str] = {}
        for key, value in environ.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix) :]
            if name.startswith(_BUFFER):
                component, _, port = name[len(_BUFFER) :].partition("__")
                overrides[f"{component.lower()}.{port.lower()}"] = value
            elif (
                name.lower() in cls.model_fields and name.lower() != "buffer_overrides"
            ):
                values[name.lower()] = value.upper() if name == "LOG_LEVEL" else value
            else:
                raise SettingsError(
                    f"{key} is not a setting of {service!r}; known: "
                    + ", ".join(prefix + f.upper() for f in _env_fields(cls))
                    + f", {prefix}{_BUFFER}<COMPONENT>__<PORT>"
                )
        if overrides:
            values["buffer_overrides"] = overrides
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = str(error["loc"][0]).upper()
            if field == "BUFFER_OVERRIDES":
                variable = f"{prefix}{_BUFFER}" + "__".join(
                    str(part).upper().replace(".", "__") for part in error["loc"][1:2]
                )
            else:
                variable = prefix + field
            raise SettingsError(
                f"{variable} has value {error['input']!r}. {error['msg']}."
            ) from None


def _env_fields(cls: type[ServiceSettings]) -> list[str]:
    return [name for name in cls.model_fields if name != "buffer_overrides"]
