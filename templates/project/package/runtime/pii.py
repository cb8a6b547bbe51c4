"""Masking of personal data in payloads, log lines and error records."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["MASK", "Masker"]

MASK = "***"

# A value after `key=` or `key:`: a quoted string (with escapes) or a bare word up to
# the next separator. Covers `k=v`, `k='v'`, `"k": "v"`, `'k': 'v'` (dict and model
# reprs, JSON, query strings, log text).
_VALUE = r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&)}\]]+)"""


class Masker:
    """Replaces the values of personal-data fields with ``MASK``.

    Field names match case-insensitively, at any depth of dicts, lists, tuples,
    pydantic models and dataclasses, and in free text as ``key=value`` or
    ``"key": "value"`` pairs.
    """

    def __init__(self, fields: Iterable[str] = (), mask: str = MASK) -> None:
        self.fields = frozenset(name.lower() for name in fields)
        self.mask_value = mask
        self._pattern: re.Pattern[str] | None = None
        if self.fields:
            names = "|".join(
                re.escape(name) for name in sorted(self.fields, key=len, reverse=True)
            )
            self._pattern = re.compile(
                rf"""(?P<key>(?<![\w])["']?(?:{names})(?![\w])["']?)"""
                rf"""(?P<sep>\s*[:=]\s*){_VALUE}""",
                re.IGNORECASE,
            )

    def mask(self, value: Any) -> Any:
        """A copy of ``value`` with the personal fields masked; models become dicts."""
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping):
            return {
                key: (
                    self.mask_value
                    if isinstance(key, str) and key.lower() in self.fields
                    else self.mask(item)
                )
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.mask(item) for item in value]
        return value

    def mask_deep(self, value: Any) -> Any:
        """``mask(value)``, then ``mask_text`` on every string in the result."""
        return self._texts(self.mask(value))

    def _texts(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return {key: self._texts(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._texts(item) for item in value]
        return value

    def mask_text(self, text: str) -> str:
        """``text`` with the values of ``key=value`` / ``"key": "value"`` masked."""
        if self._pattern is None:
            return text
        return self._pattern.sub(self._replace, text)

    def as_dict(self, item: Any) -> dict[str, Any]:
        """The item masked and shaped as a dict (scalars become ``{"value": ...}``)."""
        masked = self.mask(item)
        if isinstance(masked, dict):
            return masked
        if isinstance(masked, str):
            return {"value": self.mask_text(masked)}
        if _is_json_scalar(masked):
            return {"value": masked}
        return {"value": self.mask_text(repr(masked))}

    def _replace(self, match: re.Match[str]) -> str:
        value = match["value"]
        quote = value[0] if value[0] in "\"'" else ""
        return f"{match['key']}{match['sep']}{quote}{self.mask_value}{quote}"


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
