"""Structured logs: JSON lines, with personal data masked in every line.

Components log through a ``MaskedLogger`` (``self.log``), which binds the
service and component names, adds the ids of the request or message being
handled, and masks the message text, every extra field and the exception text
before the record exists, so no handler ever sees raw personal data. The
``JsonFormatter`` (structlog's ``ProcessorFormatter`` with a masking processor and
its ``JSONRenderer``) masks again whatever any other logger hands it (uvicorn's
access lines, a library's warnings), nested values and exception text included.

Nothing is configured on import: tests stay quiet (pytest captures records), and
a running service calls ``configure_logging`` once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.typing import EventDict

from .context import log_context
from .envelope import Envelope
from .pii import Masker

__all__ = ["JsonFormatter", "MaskedLogger", "configure_logging"]

#: Fields that are names and ids the runtime made, never personal data.
_UNMASKED = frozenset(
    {"time", "level", "logger", "service", "component", "port", "message_id"}
    | {"correlation_id"}
)
#: record attributes that are not news: left by a formatter that ran before, and
#: uvicorn's copy of the message with terminal colour codes
_FORMATTER_ATTRIBUTES = ("message", "asctime", "taskName", "color_message")
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
        self,
        logger: logging.Logger,
        masker: Masker,
        fields: Mapping[str, str],
        current: Callable[[], Envelope | None] | None = None,
    ) -> None:
        super().__init__(logger, dict(fields))
        self.masker = masker
        #: the message its component handles now, if it knows (see log_context)
        self.current = current

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
        handling = self.current() if self.current is not None else None
        for key, value in log_context(handling).items():
            if options["extra"].get(key) is None:
                options["extra"][key] = value
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


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """Formats a record as one JSON object per line, with structlog's processors.

    Every record is handled, whoever logged it (a component, the service, uvicorn,
    a library): the message, every extra field (at any depth) and the exception
    text are masked with the record's masker (or this formatter's) before they are
    rendered; the ids of the request or message being handled are added.
    """

    def __init__(self, masker: Masker | None = None) -> None:
        self.masker = masker or _NO_MASKING
        super().__init__(
            foreign_pre_chain=[
                structlog.stdlib.ExtraAdder(),
                _record_fields,
                _context_fields,
                _error_text,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                self._mask,
                # ASCII only: no U+2028 or NEL inside a line that a reader could split
                structlog.processors.JSONRenderer(default=str, ensure_ascii=True),
            ],
        )

    def _mask(self, logger: Any, method: str, event: EventDict) -> EventDict:
        masker: Masker = event.pop("masker", None) or self.masker
        return {
            key: value if key in _UNMASKED else masker.mask_deep(value)
            for key, value in event.items()
        }


def _record_fields(logger: Any, method: str, event: EventDict) -> EventDict:
    """``time``, ``level``, ``logger`` and ``message``, first and in that order."""
    record: logging.LogRecord = event["_record"]
    for attribute in _FORMATTER_ATTRIBUTES:
        event.pop(attribute, None)
    return {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": event.pop("event"),
        **event,
    }


def _context_fields(logger: Any, method: str, event: EventDict) -> EventDict:
    """The ids of the request or message being handled, where the record has none."""
    for key, value in log_context().items():
        if event.get(key) is None:
            event[key] = value
    return event


def _error_text(logger: Any, method: str, event: EventDict) -> EventDict:
    """The traceback as ``error`` (``MaskedLogger`` has already masked it)."""
    record: logging.LogRecord = event["_record"]
    exc_info = event.pop("exc_info", None)
    text = record.exc_text or (
        _TRACEBACKS.formatException(exc_info) if exc_info else ""
    )
    if text:
        event["error"] = text
    return event


def configure_logging(
    logger_name: str,
    level: str = "INFO",
    masker: Masker | None = None,
    also: Iterable[str] = (),
) -> logging.Handler:
    """Send ``logger_name``'s records (and ``also``'s) to stderr as JSON lines.

    ``level`` applies to ``logger_name``. Idempotent: a second call replaces the
    handler the first one installed.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(masker))
    for name in (logger_name, *also):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old.formatter, JsonFormatter):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger(logger_name).setLevel(level.upper())
    return handler


def _exc_info(value: Any) -> Any:
    """``exc_info`` as logging's own ``Logger._log`` normalises it."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if value and not isinstance(value, tuple):
        return sys.exc_info()
    return value or None
