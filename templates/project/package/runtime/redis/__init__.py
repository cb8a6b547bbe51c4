"""The Redis transport: connections carried by Redis Streams, between processes.

- ``link``: the service's client, names, health, calls that survive outages;
- ``connection``: a connection carried by a stream: its consumer group's reader,
  and the ends placed in this process;
- ``publisher``: the stream's writer, one per output port, shared by its connections;
- ``broadcast``: a connection every replica of its receiver reads whole, on its own
  position (a ``websocket_out``'s input);
- ``wire``: how a message crosses the wire, and the entries' field names;
- ``dedup``: ``Component.once`` keys shared by every replica;
- ``deadletter``: reading and replaying the dead-letter streams;
- ``replicas``: each replica's record (where it serves);
- ``joinstore``: a join's state over its two keyed inputs, per partition in Redis,
  written by the script that acknowledges both inputs under both leases;
- ``carrier``: the ``transport.Carrier`` the core knows.

It depends on the core (``ports``, ``dedup``, ``envelope``, ...), never the reverse:
the core finds it through ``transport.carrier_factory("redis")``.
"""

from __future__ import annotations

from .carrier import RedisCarrier

__all__ = ["RedisCarrier", "carrier"]

carrier = RedisCarrier
