"""The gateway's connections to the settings database's read/write node (the writer).

Only admin writes and the writer's heartbeat row use them: nothing on the call path waits for
the writer. The writer lives in the home region, across the private network, and it can go
silent without a reset (the home region blackholed, the VPN cut). So every wait on it is
bounded, and a write answers 503 within ``timeout`` seconds, then succeeds again on its own once
the writer is back or a standby is promoted:

- ``postgres_dsn`` names every host that may become the writer. A new connection asks them all
  at once, each within the connect timeout, and keeps the first read/write one. (asyncpg asks
  the hosts in turn within one timeout: a silent first host spent all of it, and a promoted
  standby later in the list was never asked.)
- every statement has a command timeout;
- a write that timed out terminates its connection and expires the rest of the pool, so the
  next write opens a fresh connection instead of queueing behind a socket to a silent server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
from pydantic import SecretStr

from rtcfleet import settings_store

log = logging.getLogger("rtcfleet.gateway")
T = TypeVar("T")

# What a write meets when the writer is gone, slow or demoted.
WRITER_ERRORS = (
    TimeoutError,
    ConnectionError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # the client's own state broken with its connection (a server killed mid-message gives a
    # ProtocolError); also every host answered but none is read/write
    # (TargetServerAttributeNotMatched): the primary is gone, its replicas remain
    asyncpg.exceptions.InternalClientError,
)
POOL_MAX_SIZE = 4


def dsn_hosts(dsn: str) -> list[tuple[str, int]]:
    """The ``host:port`` pairs of a URL-form DSN's host list (empty for any other form)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql") or not parts.netloc:
        return []
    hostlist = parts.netloc.rpartition("@")[2]
    hosts = []
    for spec in hostlist.split(","):
        if not spec or spec.startswith(("/", "[")):
            return []  # unix sockets and IPv6 literals: left to asyncpg's own list
        host, _, port = spec.partition(":")
        hosts.append((host, int(port or 5432)))
    return hosts


async def connect_writer(dsn: str, *, timeout: float, **kwargs: Any) -> asyncpg.Connection:
    """A connection to the read/write host among ``dsn``'s hosts, asking all at once, each
    within ``timeout`` (``asyncpg.create_pool``'s ``connect``)."""
    hosts = dsn_hosts(dsn)
    if len(hosts) < 2:
        return await asyncpg.connect(dsn, timeout=timeout, **kwargs)
    attempts = {
        asyncio.ensure_future(asyncpg.connect(dsn, host=h, port=p, timeout=timeout, **kwargs)): (
            f"{h}:{p}"
        )
        for h, p in hosts
    }
    errors: dict[str, BaseException] = {}
    chosen: asyncio.Future[asyncpg.Connection] | None = None
    pending = set(attempts)
    try:
        while pending and chosen is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for attempt in done:
                error = attempt.exception()
                if error is not None:
                    errors[attempts[attempt]] = error
                elif chosen is None:
                    chosen = attempt
    finally:
        for attempt in attempts:
            if attempt is not chosen:
                attempt.cancel()
                attempt.add_done_callback(_terminate_unused)
    if chosen is not None:
        return chosen.result()
    if all(
        isinstance(e, asyncpg.exceptions.TargetServerAttributeNotMatched) for e in errors.values()
    ):
        raise asyncpg.exceptions.TargetServerAttributeNotMatched(
            f"every host answered ({', '.join(errors)}), none is read/write"
        )
    reasons = "; ".join(f"{host}: {error!r}" for host, error in errors.items())
    raise ConnectionError(f"no read/write host answered ({reasons})")


def _terminate_unused(attempt: asyncio.Future[asyncpg.Connection]) -> None:
    """A second read/write connection (two writers: a fence failed) or one that won late."""
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().terminate()


class SettingsWriter:
    def __init__(self, dsn: SecretStr, connect_timeout: float, command_timeout: float) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None

    @property
    def timeout(self) -> float:
        """The longest an admin write waits: a connection, then its statements."""
        return self.connect_timeout + self.command_timeout

    @property
    def connected(self) -> bool:
        """Whether the pool exists (it was opened once; its connections may come and go)."""
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConnectionError("the settings database's read/write node is not connected")
        return self._pool

    async def open(self) -> None:
        """Keep trying: the gateway serves signaling while Postgres is still coming up."""
        while self._pool is None:
            pool: asyncpg.Pool | None = None
            try:
                pool = await asyncpg.create_pool(
                    self.dsn.get_secret_value(),
                    connect=connect_writer,
                    min_size=1,
                    max_size=POOL_MAX_SIZE,
                    timeout=self.connect_timeout,
                    command_timeout=self.command_timeout,
                )
                async with pool.acquire(timeout=self.connect_timeout) as conn:
                    await settings_store.ensure_schema(conn)
                self._pool = pool
            except WRITER_ERRORS as exc:
                if pool is not None:
                    pool.terminate()
                log.warning("postgres not reachable yet: %s", exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._pool is not None:
            # a silent writer must not hold the gateway's shutdown
            try:
                async with asyncio.timeout(5):
                    await self._pool.close()
            except TimeoutError:
                self._pool.terminate()

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a writer connection within ``timeout``.

        A silent server is not left to cancellation alone: a cancelled transaction still waits
        for its ROLLBACK, and the pool for the connection's reset, on the same silent socket.
        The connection is terminated instead, which fails whatever waits on it at once, and
        the pool's other connections (likely to the same server) are replaced on next use.
        """
        held: list[asyncpg.Connection] = []

        async def attempt() -> T:
            pool = self.pool
            try:
                conn = await pool.acquire(timeout=self.connect_timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"no read/write host took a connection within {self.connect_timeout:g} s"
                ) from None
            held.append(conn)
            try:
                return await work(conn)
            except (TimeoutError, ConnectionError, OSError) as exc:
                # a statement past its timeout: asyncpg would cancel it over a new connection
                # and reset this one, each waiting on the silent server
                conn.terminate()
                if isinstance(exc, TimeoutError):
                    raise TimeoutError(
                        f"a statement had no answer within {self.command_timeout:g} s"
                    ) from None
                raise
            finally:
                await pool.release(conn)  # at once after a terminate

        task = asyncio.ensure_future(attempt())
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if task in done:
            try:
                return task.result()
            except WRITER_ERRORS:
                if self._pool is not None:
                    await self._pool.expire_connections()
                raise
        for conn in held:
            conn.terminate()
        if self._pool is not None:
            await self._pool.expire_connections()
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise TimeoutError(f"no answer within {self.timeout:g} s")
