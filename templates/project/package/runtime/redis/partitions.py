"""Which partition a key goes to, and which replica owns a partition.

A keyed connection over Redis is ``partitions`` streams (``partitioned``). Both ends
must agree on where each key goes, whatever process or Python they run in, so the
hash is fixed here and documented (docs/redis.md), never Python's ``hash()`` (salted
per process for strings):

- ``canonical(key)``: a ``str`` is its UTF-8 bytes, ``bytes`` are themselves, anything
  else is its JSON (orjson, keys sorted): ``42`` -> ``b"42"``, ``True`` ->
  ``b"true"``, ``None`` -> ``b"null"``;
- ``partition_of(key, n) = crc32(canonical(key)) % n`` (zlib's CRC-32).

Ownership is rendezvous hashing (highest random weight): partition ``p`` belongs to
the live member with the highest ``weight(member, p)``, the first 8 bytes of
BLAKE2b of ``"<member>/<p>"`` as a big-endian integer. Every replica computes the
same assignment from the same member list, and when one member joins or leaves only
the partitions it gains or held move.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = [
    "DEFAULT_PARTITIONS",
    "assignment",
    "canonical",
    "owner",
    "partition_of",
    "skew",
    "weight",
]

#: partitions of a keyed Redis connection that names none
DEFAULT_PARTITIONS = 8


def canonical(key: Any) -> bytes:
    """The bytes a key is hashed by (see the module's description)."""
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS)


def partition_of(key: Any, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: CRC-32 of its canonical bytes."""
    return zlib.crc32(canonical(key)) % partitions


def weight(member: str, partition: int) -> int:
    """``member``'s rendezvous weight for ``partition``."""
    digest = hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def owner(partition: int, members: Iterable[str]) -> str | None:
    """The member that owns ``partition`` (None: no members)."""
    return max(members, key=lambda m: (weight(m, partition), m), default=None)


def skew(added: list[int]) -> float:
    """The hottest partition's share over the mean share: ``max / mean`` of what
    each partition took in one span; 0.0 when none took anything. 1.0 is even; a
    key carrying half the load of 8 partitions shows about 4.5."""
    total = sum(added)
    if total <= 0:
        return 0.0
    return max(added) * len(added) / total


def assignment(partitions: int, members: Iterable[str]) -> dict[int, str | None]:
    """Each partition's owner among ``members``."""
    live = sorted(set(members))
    return {p: owner(p, live) for p in range(partitions)}
