"""Event-loop lag: how late the loop runs what is due, and whose code held it.

Everything a service does runs on one event loop, so one plain ``def`` that blocks
(``requests.get``, a sync database driver, ``time.sleep``) stalls every component and
``/health`` with them. ``LoopLag`` measures it whatever the components are set to:

- a task sleeps ``interval`` again and again; how much later than due it wakes is the
  loop's lag, observed in ``portwright_event_loop_lag_seconds`` (a histogram);
- a watchdog thread looks at that task's last beat; when the loop has been held for
  ``threshold`` beyond the due time, it reads the loop thread's stack *while it is
  still held* and logs one warning naming the component and method (with file and
  line) that holds it, once per component and method, so a blocking call is found
  from the log, not by bisecting a slow service.

The stack is read with ``sys._current_frames()`` (CPython's, documented for this
kind of debugging): no cost per message, and the code found is the code running,
not a guess from timings.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from time import monotonic
from types import CodeType, FrameType
from typing import Any

import anyio
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .component import Component
from .histogram import Histogram

__all__ = ["LAG_BUCKETS", "LoopLag"]

#: Upper bounds (seconds) of the lag histogram: from scheduling noise to a stall.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_RUNTIME = __name__.rpartition(".")[0]
_PREFIX = _RUNTIME + "."


class LoopLag(Collector):
    """The loop's lag, measured by a task, and a watchdog that names who holds it."""

    def __init__(
        self,
        threshold_s: float,
        components: Callable[[], Iterable[Component]],
        log: logging.Logger | logging.LoggerAdapter[Any],
        *,
        interval_s: float | None = None,
    ) -> None:
        self.threshold = threshold_s
        self.interval = interval_s if interval_s is not None else threshold_s / 4
        self.histogram = Histogram(LAG_BUCKETS)
        #: the holders already warned about (``component.method``)
        self.reported: set[str] = set()
        self._components = components
        self._log = log
        self._beat = monotonic()
        self._stopped = threading.Event()

    async def watch(self) -> None:
        """Measure until cancelled, with the watchdog thread running meanwhile."""
        loop_thread = threading.get_ident()
        self._stopped.clear()
        self._beat = monotonic()
        watchdog = threading.Thread(
            target=self._watchdog,
            args=(loop_thread,),
            name="portwright-loop-watchdog",
            daemon=True,
        )
        watchdog.start()
        interval, observe = self.interval, self.histogram.observe
        try:
            while True:
                self._beat = beat = monotonic()
                await anyio.sleep(interval)
                observe(max(0.0, monotonic() - beat - interval))
        finally:
            self._stopped.set()

    def collect(self) -> Iterator[Metric]:
        """``portwright_event_loop_lag_seconds``, for the service's registry."""
        family = HistogramMetricFamily(
            "portwright_event_loop_lag_seconds",
            "How late the event loop woke a task that slept (a blocked loop shows).",
            labels=[],
        )
        family.add_metric([], self.histogram.cumulative(), self.histogram.sum)
        yield family

    def _watchdog(self, loop_thread: int) -> None:
        reported_beat = None
        poll = min(self.interval, self.threshold / 4)
        while not self._stopped.wait(poll):
            beat = self._beat
            held = monotonic() - beat - self.interval
            if held >= self.threshold and beat != reported_beat:
                reported_beat = beat  # one look per stall
                frame = sys._current_frames().get(loop_thread)
                if frame is not None:
                    self._report(held, frame)

    def _report(self, held: float, frame: FrameType) -> None:
        """Warn, once per holder, naming the code that holds the loop now."""
        where = self.holder(frame)
        key = where[0] or where[1]
        if key in self.reported:
            return
        self.reported.add(key)
        who = f"component {where[0]!r}" if where[0] else "code outside the components"
        self._log.warning(
            "the event loop has been held for %.0f ms so far (threshold %.0f ms) by %s, "
            "at %s: every component and /health wait meanwhile; mark a component "
            "whose plain def blocks 'blocking: true' (worker threads), or make it "
            "async",
            held * 1000,
            self.threshold * 1000,
            who,
            where[1],
        )

    def holder(self, frame: FrameType) -> tuple[str | None, str]:
        """``(component, "method (file:line)")`` of the innermost component code on
        ``frame``'s stack; ``(None, "function (file:line)")`` when there is none."""
        owners = self._owners()
        current: FrameType | None = frame
        while current is not None:
            owner = owners.get(current.f_code)
            if owner is not None:
                return owner, _where(current)
            current = current.f_back
        return None, _where(frame)

    def _owners(self) -> dict[CodeType, str]:
        """The code objects of the components' own classes (not the runtime's)."""
        owners: dict[CodeType, str] = {}
        for component in self._components():
            for cls in type(component).__mro__:
                module = cls.__module__
                if cls is object or module == _RUNTIME or module.startswith(_PREFIX):
                    continue
                for value in vars(cls).values():
                    code = getattr(value, "__code__", None)
                    if isinstance(code, CodeType):
                        owners.setdefault(code, component.name)
        return owners


def _where(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_name} ({code.co_filename}:{frame.f_lineno})"
