"""Real Redis and Postgres servers from pip-installed binaries, for the local fleet and tests."""

from rtcfleet.servers.ports import free_port
from rtcfleet.servers.postgres import PostgresServer, ReplicatedPostgres
from rtcfleet.servers.redis import RedisServer, SentinelRedis

__all__ = ["PostgresServer", "RedisServer", "ReplicatedPostgres", "SentinelRedis", "free_port"]
