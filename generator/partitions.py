"""What ``regenerate`` refuses about a keyed Redis connection: a changed partition count.

A keyed Redis connection is split into ``partitions`` streams, and each key goes to
the partition its hash picks among that many. Change the count and a key's new items
go to another stream than its old ones, which may still be unread there: another
replica may then process them first, and a lower count leaves the streams past it
unread for good. So the count is fixed for the life of the streams; regenerate says
so, and goes on only when told (``--repartition``) that the connection was drained.
"""

from __future__ import annotations

from .blueprint import Blueprint, Connection
from .errors import Problem
from .yaml_source import Loc, SourceDoc

#: the regenerate option that accepts a change
FLAG = "--repartition"


def repartitioned(old: Blueprint, new: Blueprint, doc: SourceDoc) -> list[Problem]:
    """A problem at each keyed Redis connection of ``new`` whose count changed."""
    before = {_ends(c): c.partitions for c in old.connections if _partitioned(c)}
    problems = []
    for index, conn in enumerate(new.connections):
        was = before.get(_ends(conn))
        if not _partitioned(conn) or was is None or was == conn.partitions:
            continue
        source, target = _ends(conn)
        lost = (
            ", and the partitions past the new count would never be read again"
            if conn.partitions is not None and conn.partitions < was
            else ""
        )
        problems.append(
            doc.problem(
                _where(doc, index),
                f"connection {source} -> {target} was split into {was} partitions "
                f"and would now be {conn.partitions}: a key's new items would go to "
                "another partition than its unread old ones and could be processed "
                f"before them{lost}. Drain it first (stop its senders until "
                "'python -m <service> partitions' shows no lag and nothing pending), "
                f"then regenerate with {FLAG}; or keep partitions: {was}",
            )
        )
    return problems


def _partitioned(conn: Connection) -> bool:
    return conn.transport == "redis" and conn.partitions is not None


def _ends(conn: Connection) -> tuple[str, str]:
    return conn.source.ref, conn.target.ref


def _where(doc: SourceDoc, index: int) -> Loc:
    """The key that set the count: the connection's own, else the defaults'."""
    connections = doc.data.get("connections") if isinstance(doc.data, dict) else None
    spec = connections[index] if isinstance(connections, list) else None
    if isinstance(spec, dict) and "partitions" in spec:
        return ("connections", index, "partitions")
    defaults = doc.data.get("defaults") if isinstance(doc.data, dict) else None
    if isinstance(defaults, dict) and "partitions" in defaults:
        return ("defaults", "partitions")
    return ("connections", index)
