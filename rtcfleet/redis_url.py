"""Redis connections from one URL form, plain or through Sentinel.

``redis://host:port/db`` connects directly; ``redis+sentinel://h1:p1,h2:p2/master`` asks the
Sentinels for the current primary on every reconnect, which is how clients follow a failover.

Every client has a blocking pool of ``MAX_CONNECTIONS``: a command that finds them all busy
waits up to ``POOL_WAIT_S`` for one. redis-py's default pool refuses it at once ("Too many
connections", from its 100th concurrent command), which under a burst of joins turned into
signaling errors for clients while Redis itself had room to spare.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel"
# per client (one per process and Redis); a server takes 10,000 clients by default
MAX_CONNECTIONS = 256
POOL_WAIT_S = 5.0


class SentinelBlockingConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """The Sentinel's pool (the primary's address asked on every new connection) that waits
    for a free connection instead of refusing the command."""


def connect(
    url: str, *, socket_timeout: float | None = 5.0, client_name: str | None = None
) -> aioredis.Redis:
    """A client for ``url``; commands fail fast instead of hanging when a server dies.

    ``client_name``: every connection names itself so (``CLIENT SETNAME``), which lets others
    see in ``CLIENT LIST`` whether the process still holds a connection."""
    parts = urlsplit(url)
    # the same pool either way: blocking, bounded, timed, named
    pool: dict[str, Any] = {
        "max_connections": MAX_CONNECTIONS,
        "timeout": POOL_WAIT_S,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2.0,
        "decode_responses": True,
        "client_name": client_name,
    }
    if parts.scheme == SENTINEL_SCHEME:
        hosts = []
        for item in parts.netloc.split(","):
            host, _, port = item.rpartition(":")
            hosts.append((host or "127.0.0.1", int(port or 26379)))
        master = parts.path.strip("/") or "rtcfleet"
        # each new connection to the primary asks a Sentinel first: the Sentinels' pools must
        # take as many of those at once as the primary's pool can open
        sentinel = Sentinel(
            hosts,
            socket_timeout=1.0,
            sentinel_kwargs={"socket_timeout": 1.0, "max_connections": MAX_CONNECTIONS + 16},
        )
        return sentinel.master_for(
            master, connection_pool_class=SentinelBlockingConnectionPool, **pool
        )
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    return aioredis.Redis.from_pool(BlockingConnectionPool.from_url(url, **pool))
