"""The status page: the service's drawing, its ports coloured by utilization and
labelled with their rate and message age, refreshed every second from JSON.

``GET /status`` answers one self-contained HTML page (no CDN, no build step: the
drawing, the style and the script are inline); ``GET /status.json`` answers the
numbers. The drawing is made at generate time (``status.svg`` beside the package's
``runtime/``; portwright's ``generator/drawing.py``); without it the page lists the
components. Text that comes from the blueprint (the service's description) is
escaped where it lands: HTML text, and JSON inside a script element.
"""

from __future__ import annotations

import html
import json
from bisect import bisect_left
from pathlib import Path
from time import monotonic
from typing import Any

from .component import State
from .components import Source
from .service import Service, ServiceState

__all__ = ["StatusPage", "dependency_checks", "drawing_beside"]

#: the shortest span rates and ages are computed over; a page polls every second
MIN_SPAN_S = 0.5


def drawing_beside() -> str | None:
    """The ``status.svg`` generated beside this runtime, when there is one."""
    path = Path(__file__).resolve().parent.parent / "status.svg"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def dependency_checks(service: Service) -> dict[str, dict[str, Any]]:
    """What ``/ready`` and ``/health`` report, per dependency: ``{"ok", "problems"}``.

    ``service`` (its state), ``components`` (each running; a finite source that
    ended counts as fine), ``buffers`` (no input port at or over the
    ``ready_max_utilization`` setting) and one entry per transport in use
    (``memory``, ``redis``: whether it can carry messages now; with keyed
    connections over Redis, ``partitions``: per input port read here, the
    partitions this replica owns now). The service is ready
    when every entry is ok, exactly when ``Service.readiness()`` is empty.
    """
    state = service.state
    stopped = [
        f"component {c.name!r} is {c.phase.value}"
        for c in service.local_components()
        if not c.is_running and not (isinstance(c, Source) and c.phase is State.STOPPED)
    ]
    limit = service.settings.ready_max_utilization
    full = [
        f"port {port.address} is saturated ({port.utilization():.0%} of its buffer used)"
        for c in service.local_components()
        for port in c.inputs.values()
        if port.connections and port.utilization() >= limit
    ]
    running = state is ServiceState.RUNNING
    checks: dict[str, dict[str, Any]] = {
        "service": _check([] if running else [f"service is {state.value}"]),
        "components": _check(stopped if running else []),
        "buffers": _check(full if running else []),
    }
    for name, carrier in sorted(service.carriers.items()):
        checks[name] = _check([] if carrier.problem is None else [carrier.problem])
    owned = _owned_partitions(service)
    for name, ports in owned.items():
        checks.setdefault(name, _check([]))["partitions"] = ports
    return checks


def _owned_partitions(service: Service) -> dict[str, dict[str, list[int]]]:
    """Per transport, per keyed input port read here: the partitions this replica
    holds a lease on now (``/ready`` shows them beside the transport's health)."""
    found: dict[str, dict[str, list[int]]] = {}
    for connection in service.connections:
        owned = getattr(connection, "owned", None)
        if owned is None or not getattr(connection, "receiving_here", False):
            continue
        ports = found.setdefault(connection.transport, {})
        ports[connection.target.address] = sorted(owned())
    return found


def _check(problems: list[str]) -> dict[str, Any]:
    return {"ok": not problems, "problems": problems}


def script_json(value: Any) -> str:
    """``value`` as JSON that cannot end the script element it sits in."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _quantile(deltas: list[tuple[float, int]], q: float) -> float | None:
    """The bucket bound under which ``q`` of the items fell (cumulative deltas)."""
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None
    counts = [count for _, count in deltas]
    index = bisect_left(counts, q * total)
    return deltas[min(index, len(deltas) - 1)][0]


class StatusPage:
    """The page and the numbers of one service."""

    def __init__(
        self, service: Service, *, description: str = "", drawing: str | None = None
    ) -> None:
        self.service = service
        self.description = description
        self.drawing = drawing
        self._last: tuple[float, dict[str, dict[str, dict[str, Any]]]] | None = None
        self._numbers: dict[str, Any] = {}

    def numbers(self, now: float | None = None) -> dict[str, Any]:
        """Per component and port: messages, rate (per second over the last span),
        utilization and message age p50/p99 (seconds, over the last span)."""
        now = monotonic() if now is None else now
        if self._last is not None and now - self._last[0] < MIN_SPAN_S:
            return self._numbers
        snapshot = self.service.metrics.snapshot()
        before = self._last[1] if self._last is not None else {}
        span = now - self._last[0] if self._last is not None else 0.0
        running = {c.name: c.is_running for c in self.service.local_components()}
        components: dict[str, Any] = {}
        for name, ports in snapshot.items():
            shown: dict[str, Any] = {}
            for port, stats in ports.items():
                old = before.get(name, {}).get(port, {})
                moved = stats["messages"] - old.get("messages", 0)
                entry: dict[str, Any] = {
                    "direction": stats["direction"],
                    "messages": stats["messages"],
                    "rate": round(moved / span, 2) if span > 0 else 0.0,
                }
                if stats["direction"] == "in":
                    entry["utilization"] = round(stats["utilization"], 3)
                    deltas = _deltas(stats["age"], old.get("age"))
                    entry["age_p50"] = _quantile(deltas, 0.5)
                    entry["age_p99"] = _quantile(deltas, 0.99)
                shown[port] = entry
            components[name] = {"running": running.get(name, False), "ports": shown}
        self._last = (now, snapshot)
        self._numbers = {"service": self.service.name, "components": components}
        return self._numbers

    def page(self) -> str:
        """The whole page, one HTML document."""
        name = html.escape(self.service.name)
        about = {"service": self.service.name, "description": self.description}
        drawing = self.drawing or _list(self.service)
        return _PAGE.format(
            title=name,
            description=html.escape(self.description),
            drawing=drawing,
            about=script_json(about),
        )


def _deltas(
    now: dict[str, Any], before: dict[str, Any] | None
) -> list[tuple[float, int]]:
    old = before["buckets"] if before else {}
    return [
        (float(bound), count - old.get(bound, 0))
        for bound, count in now["buckets"].items()
    ]


def _list(service: Service) -> str:
    """Without a drawing: one line per component and port, with the same ids."""
    lines = ['<ul class="components">']
    for component in service.local_components():
        name = component.name
        ports = [*component.inputs, *component.outputs]
        items = "".join(
            f'<li><span class="port" id="p-{name}-{port}"></span>{port} '
            f'<span class="numbers" id="n-{name}-{port}"></span></li>'
            for port in ports
        )
        lines.append(f'<li id="c-{name}">{name}<ul>{items}</ul></li>')
    lines.append("</ul>")
    return "\n".join(lines)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}: status</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }}
p.description {{ margin: 0 0 12px; color: #555; }}
.graph .box {{ fill: #fafafa; stroke: #888; }}
.graph .stopped .box {{ fill: #fdd; }}
.graph .name {{ font-weight: 600; font-size: 13px; }}
.graph .kind, .graph .port-name {{ font-size: 11px; fill: #666; }}
.graph .numbers {{ font-size: 10px; fill: #222; }}
.graph .edge {{ fill: none; stroke: #999; stroke-width: 1.5; }}
.graph .edge.redis {{ stroke-width: 3; }}
.graph .edge.feedback {{ stroke: firebrick; stroke-dasharray: 5 4; }}
.port {{ fill: #ccc; stroke: #666; }}
#updated {{ color: #888; font-size: 12px; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="description">{description}</p>
<div id="drawing">{drawing}</div>
<p id="updated">waiting for numbers</p>
<script type="application/json" id="about">{about}</script>
<script>
"use strict";
function colour(u) {{
  if (u === undefined) return "#ccc";
  const hue = Math.round(120 * (1 - Math.min(1, Math.max(0, u))));
  return "hsl(" + hue + ", 70%, 50%)";
}}
function age(seconds) {{
  if (seconds === null || seconds === undefined) return "-";
  return seconds < 1 ? Math.round(seconds * 1000) + " ms" : seconds + " s";
}}
async function refresh() {{
  try {{
    const answer = await fetch("status.json", {{cache: "no-store"}});
    const numbers = await answer.json();
    for (const [name, component] of Object.entries(numbers.components)) {{
      const box = document.getElementById("c-" + name);
      if (box) box.classList.toggle("stopped", !component.running);
      for (const [port, n] of Object.entries(component.ports)) {{
        const mark = document.getElementById("p-" + name + "-" + port);
        if (mark) mark.style.fill = colour(n.utilization);
        const label = document.getElementById("n-" + name + "-" + port);
        if (!label) continue;
        let text = n.rate + "/s";
        if (n.direction === "in") {{
          text += " · " + Math.round(100 * n.utilization) + "% · p99 " + age(n.age_p99);
        }}
        label.textContent = text;
      }}
    }}
    document.getElementById("updated").textContent =
      "updated " + new Date().toLocaleTimeString();
  }} catch (error) {{
    document.getElementById("updated").textContent = "no answer: " + error;
  }}
}}
const about = JSON.parse(document.getElementById("about").textContent);
document.title = about.service + ": status";
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
