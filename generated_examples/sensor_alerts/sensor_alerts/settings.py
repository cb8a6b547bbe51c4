"""Configuration of sensor_alerts from environment variables.

Every setting has a variable ``SENSOR_ALERTS_<SETTING>``:

- ``SENSOR_ALERTS_HOST``, ``SENSOR_ALERTS_PORT``: where the HTTP server listens
- ``SENSOR_ALERTS_LOG_LEVEL``: DEBUG, INFO, WARNING, ERROR or CRITICAL
- ``SENSOR_ALERTS_DRAIN_TIMEOUT_S``: how long a graceful stop may take
- ``SENSOR_ALERTS_CLEANUP_TIMEOUT_S``: how long one component's cleanup may take
- ``SENSOR_ALERTS_READY_MAX_UTILIZATION``: /ready fails while a buffer is this full
- ``SENSOR_ALERTS_SOURCE_RESTART_S``: pause before a failed source starts again
- ``SENSOR_ALERTS_LOOP_LAG_WARN_MS``: a warning names the code that holds the event
  loop this long (100 by default)
- ``SENSOR_ALERTS_COMPONENTS``: the components this process runs, comma-separated (all
  when empty); ``python -m sensor_alerts --components a,b`` sets it
- ``SENSOR_ALERTS_TRANSPORT``: ``memory`` or ``redis`` for every connection, whatever the
  blueprint says (now: as the blueprint says)
- ``SENSOR_ALERTS_REDIS_URL`` (now redis://127.0.0.1:6379/0), ``SENSOR_ALERTS_REDIS_PREFIX``: the Redis
  of the redis connections, and a prefix for every key the service puts there
- ``SENSOR_ALERTS_REDIS_CONSUMER``: this replica's name in the consumer groups
  (default: ``<hostname>-<pid>``)
- ``SENSOR_ALERTS_REDIS_MAX_RETRIES`` (now 3), ``SENSOR_ALERTS_REDIS_CLAIM_IDLE_MS`` (now
  30000): deliveries before the dead-letter stream; idle time before another
  replica takes an unacknowledged item over
- ``SENSOR_ALERTS_DEDUP_TTL_S``: how long ``Component.once`` remembers an applied key
- ``SENSOR_ALERTS_TRUSTED_PROXIES``: the proxies (CIDRs, comma-separated) whose
  X-Forwarded-For names the client; nobody else's is believed (now: 10.0.0.0/8)
- ``SENSOR_ALERTS_API_KEYS``, ``SENSOR_ALERTS_API_KEYS_FILE``: the SHA-256 digests of the
  accepted API keys (comma-separated, or a file with one a line); never the keys
- ``SENSOR_ALERTS_RATE_LIMIT_STORAGE``: where rate-limit counters live: ``memory``, a
  ``redis://`` URL shared by every replica, or ``auto`` (the default: the service's Redis
  when it runs on Redis); ``SENSOR_ALERTS_RATE_LIMIT_MAX_CLIENTS``: the clients counted
  per endpoint in memory

and every item can be tuned on its own:

- ``SENSOR_ALERTS_BUFFER__INTAKE__LIVE``, ``SENSOR_ALERTS_OVERFLOW__INTAKE__LIVE``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``intake.live``
- ``SENSOR_ALERTS_BUFFER__INTAKE__BACKFILL``, ``SENSOR_ALERTS_OVERFLOW__INTAKE__BACKFILL``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``intake.backfill``
- ``SENSOR_ALERTS_BUFFER__INTAKE__POLLED``, ``SENSOR_ALERTS_OVERFLOW__INTAKE__POLLED``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``intake.polled``
- ``SENSOR_ALERTS_BUFFER__PLAUSIBLE__IN``, ``SENSOR_ALERTS_OVERFLOW__PLAUSIBLE__IN``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``plausible.in``
- ``SENSOR_ALERTS_BUFFER__CLASSIFY__IN``, ``SENSOR_ALERTS_OVERFLOW__CLASSIFY__IN``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``classify.in``
- ``SENSOR_ALERTS_BUFFER__BY_SEVERITY__IN``, ``SENSOR_ALERTS_OVERFLOW__BY_SEVERITY__IN``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``by_severity.in``
- ``SENSOR_ALERTS_BUFFER__DEAD_LETTERS__IN``, ``SENSOR_ALERTS_OVERFLOW__DEAD_LETTERS__IN``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``dead_letters.in``
- ``SENSOR_ALERTS_BUFFER__PAGER__IN``, ``SENSOR_ALERTS_OVERFLOW__PAGER__IN``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``pager.in``
- ``SENSOR_ALERTS_BUFFER__ARCHIVE__ROUTINE``, ``SENSOR_ALERTS_OVERFLOW__ARCHIVE__ROUTINE``: buffer size and
  overflow policy (block, drop_newest, drop_oldest) of the connections into ``archive.routine``
- ``SENSOR_ALERTS_TIMEOUT_MS__READINGS_API``, ``SENSOR_ALERTS_MAX_PAYLOAD_KB__READINGS_API``: wait before 503
  (now 1000) and body cap (now 16) of ``POST /readings``
- ``SENSOR_ALERTS_RATE_LIMIT__READINGS_API``: its rate limit as ``<requests>/<seconds>``
  (now 1200/60 per client)
- ``SENSOR_ALERTS_TIMEOUT_MS__BACKFILL_API``, ``SENSOR_ALERTS_MAX_PAYLOAD_KB__BACKFILL_API``: wait before 503
  (now 5000) and body cap (now 256) of ``PUT /readings/backfill``
- ``SENSOR_ALERTS_RATE_LIMIT__BACKFILL_API``: its rate limit as ``<requests>/<seconds>``
  (now 30/60 per api_key; it requires an API key)
- ``SENSOR_ALERTS_BURST_LIMIT__READINGS_API``: messages ``readings_api`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__BACKFILL_API``: messages ``backfill_api`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__POLLER``: messages ``poller`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__INTAKE``: messages ``intake`` handles before yielding (now 32)
- ``SENSOR_ALERTS_BURST_LIMIT__PLAUSIBLE``: messages ``plausible`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__CLASSIFY``: messages ``classify`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__BY_SEVERITY``: messages ``by_severity`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__PAGER``: messages ``pager`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__ARCHIVE``: messages ``archive`` handles before yielding (now 64)
- ``SENSOR_ALERTS_BURST_LIMIT__DEAD_LETTERS``: messages ``dead_letters`` handles before yielding (now 64)

Generated by portwright 0.1.0; portwright owns this file.
Edit the blueprint (.portwright/blueprint.yaml) and regenerate instead.
"""

from collections.abc import Mapping

from .runtime import ServiceSettings

SERVICE = "sensor_alerts"
#: the blueprint's Redis defaults; the environment replaces each of them
REDIS_DEFAULTS: dict[str, str | int] = {
    "redis_url": "redis://127.0.0.1:6379/0",
    "redis_max_retries": 3,
    "redis_claim_idle_ms": 30000,
}
#: the blueprint's ``defaults.trusted_proxies``; SENSOR_ALERTS_TRUSTED_PROXIES replaces them
TRUSTED_PROXIES: tuple[str, ...] = ("10.0.0.0/8",)


def load_settings(environ: Mapping[str, str] | None = None) -> ServiceSettings:
    """Settings from the environment (or ``environ``); unknown variables are errors."""
    return ServiceSettings.from_env(
        SERVICE, environ, **REDIS_DEFAULTS, trusted_proxies=TRUSTED_PROXIES
    )
