"""Structured logs: JSON lines, with personal data masked in every line.

Components log through a ``MaskedLogger`` (``self.log``), which binds the
service and component names and masks the message text and every extra field
before the record exists, so no handler ever sees raw personal data. The
``JsonFormatter`` also masks exception text, which only exists at format time.

Nothing is configured on import: tests stay quiet (pytest captures records), and
a running service calls ``configure_logging`` once.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from .pii import Masker

__all__ = ["JsonFormatter", "MaskedLogger", "configure_logging"]

#: Fields every line may carry, in this order, before any other extra field.
_KNOWN_FIELDS = ("service", "component", "port", "message_id", "correlation_id")
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "masker", "taskName"}
_NO_MASKING = Masker()
_TRACEBACKS = logging.Formatter()


class MaskedLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one component; masks personal data in what it is given.

    Use it like a stdlib logger. Structured fields go in ``extra``:
    ``self.log.info("scored order", extra={"order": order, "risk": risk})``.
    The message, the extra fields and the exception text are masked before the
    record exists, so every handler (JSON, pytest's, a third party's) sees them
    masked.
    """

    def __init__(
        self, logger: logging.Logger, masker: Masker, fields: Mapping[str, str]
    ) -> None:
        super().__init__(logger, dict(fields))
        self.masker = masker

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Bind the component's fields and mask the caller's extra fields."""
        extra = {
            key: self.masker.mask(value)
            for key, value in (kwargs.get("extra") or {}).items()
        }
        kwargs["extra"] = {**(self.extra or {}), **extra, "masker": self.masker}
        return msg, kwargs

    def log(
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Mask the formatted message, the extra fields and the exception; log."""
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        _, options = self.process(None, {"extra": extra})
        logger = self.logger
        # +1: skip this method, so the record names the caller's file and line.
        filename, line, function, stack = logger.findCaller(stack_info, stacklevel + 1)
        record = logger.makeRecord(
            logger.name,
            level,
            filename,
            line,
            self.masker.mask_text(text),
            (),
            _exc_info(exc_info),
            function,
            options["extra"],
            stack,
        )
        if record.exc_info:
            # Formatters reuse exc_text when it is set: make it the masked one.
            record.exc_text = self.masker.mask_text(
                _TRACEBACKS.formatException(record.exc_info)
            )
        logger.handle(record)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line."""

    def __init__(self, masker: Masker | None = None) -> None:
        super().__init__()
        self.masker = masker or _NO_MASKING

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line: time, level, logger, message, known fields, extras, error."""
        masker: Masker = getattr(record, "masker", self.masker)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": masker.mask_text(record.getMessage()),
        }
        for key in _KNOWN_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in line:
                line[key] = masker.mask(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = masker.mask_text(self.formatException(record.exc_info))
        if record.exc_text:
            line["error"] = masker.mask_text(record.exc_text)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(
    logger_name: str, level: str = "INFO", masker: Masker | None = None
) -> logging.Handler:
    """Send ``logger_name``'s records to stderr as JSON lines at ``level``.

    Idempotent: a second call replaces the handler the first one installed.
    """
    logger = logging.getLogger(logger_name)
    for handler in list(logger.handlers):
        if isinstance(handler.formatter, JsonFormatter):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(masker))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler


def _exc_info(value: Any) -> Any:
    """``exc_info`` as logging's own ``Logger._log`` normalises it."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if value and not isinstance(value, tuple):
        return sys.exc_info()
    return value or None
