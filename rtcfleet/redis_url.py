"""Redis connections from one URL form, plain or through Sentinel.

``redis://host:port/db`` connects directly; ``redis+sentinel://h1:p1,h2:p2/master`` asks the
Sentinels for the current primary on every reconnect, which is how clients follow a failover.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"


def connect(url: str, *, socket_timeout: float | None = 5.0) -> aioredis.Redis:
    """A client for ``url``; commands fail fast instead of hanging when a server dies."""
    parts = urlsplit(url)
    if parts.scheme == SENTINEL_SCHEME:
        hosts = []
        for item in parts.netloc.split(","):
            host, _, port = item.rpartition(":")
            hosts.append((host or "127.0.0.1", int(port or 26379)))
        master = parts.path.strip("/") or "rtcfleet"
        sentinel = Sentinel(hosts, socket_timeout=1.0)
        return sentinel.master_for(
            master, socket_timeout=socket_timeout, socket_connect_timeout=2.0, decode_responses=True
        )
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    return aioredis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=2.0, decode_responses=True
    )
