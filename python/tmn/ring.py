"""The consistent-hash ring on which a client shards its streams over several
endpoints: the loops of one ``tmn-serve --cores`` daemon, several daemons, or
both (docs/protocol.md, "Several cores and several daemons").

Each endpoint owns ``VNODES`` points of a 64-bit circle; a stream belongs to the
endpoint of the first point at or after the stream's own position (past the
last point, the first). The positions are exact and language-neutral, so a
client in another language can shard the same streams the same way:

* an endpoint's point ``v`` (0 <= v < VNODES): the first 8 bytes, read as a
  little-endian unsigned integer, of BLAKE2b with an 8-byte digest of the UTF-8
  text ``"{endpoint}#{v}"``; a tie between two endpoints goes to the one given first;
* a stream's position: SplitMix64's finaliser of its 64-bit id (``mix`` below).

Adding or removing one endpoint of N moves only about 1/N of the streams, all of
them to or from that endpoint; with 160 points per endpoint the share each one
owns is within about ±20 % of 1/N (the spread of a ring with that many points).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

VNODES = 160  # points per endpoint (as ketama): balance within ~±20 %, a ring of 160 N points

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(streams: np.ndarray | int) -> np.ndarray:
    """SplitMix64's finaliser of stream ids (uint64, wrapping): their positions."""
    z = np.asarray(streams, dtype=np.uint64) + _GOLDEN
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def point(endpoint: str, v: int) -> int:
    """The position of an endpoint's point ``v``."""
    digest = hashlib.blake2b(f"{endpoint}#{v}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class HashRing:
    """Which of ``endpoints`` serves each stream."""

    def __init__(self, endpoints: Sequence[str], vnodes: int = VNODES) -> None:
        if not endpoints:
            raise ValueError("a ring needs at least one endpoint")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError(f"an endpoint is named twice: {list(endpoints)}")
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        self.endpoints = list(endpoints)
        pos = np.array([point(e, v) for e in self.endpoints for v in range(vnodes)],
                       dtype=np.uint64)
        owner = np.repeat(np.arange(len(self.endpoints)), vnodes)
        order = np.lexsort((owner, pos))  # by position; a tie to the endpoint given first
        self._pos, self._owner = pos[order], owner[order]

    def __len__(self) -> int:
        return len(self.endpoints)

    def shard_of(self, streams: np.ndarray | int) -> np.ndarray:
        """The index (into ``endpoints``) of each stream's endpoint."""
        at = np.searchsorted(self._pos, mix(streams), side="left")
        return self._owner[at % len(self._pos)]

    def endpoint_of(self, stream: int) -> str:
        """The endpoint of one stream."""
        return self.endpoints[int(self.shard_of(np.uint64(stream)))]
