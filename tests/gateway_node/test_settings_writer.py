"""The gateway finds the settings writer among its candidate hosts even when one is silent.

A silent host (a blackholed writer: nothing it is sent is ever answered) must cost one connect
timeout at most, whatever its place in the list; asyncpg asks hosts in turn within one
timeout, so a silent first host used to hide a promoted standby behind it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import asyncpg
import pytest

from gateway_node.settings_writer import connect_writer, dsn_hosts
from rtcfleet.servers import ReplicatedPostgres

CONNECT_TIMEOUT_S = 2.0


@pytest.fixture
def silent_host() -> Iterator[str]:
    """An address that takes TCP connections and never says a word (nor reads one)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def candidates(*hosts: str) -> str:
    return f"postgresql://postgres@{','.join(hosts)}/postgres?target_session_attrs=read-write"


def address(dsn: str) -> str:
    host, port = dsn_hosts(dsn)[0]
    return f"{host}:{port}"


async def test_a_silent_first_host_does_not_hide_the_writer(
    postgres: ReplicatedPostgres, silent_host: str
) -> None:
    replica, writer = address(postgres.replicas[0].dsn), address(postgres.primary.dsn)
    dsn = candidates(silent_host, replica, writer)
    started = time.monotonic()
    conn = await connect_writer(dsn, timeout=CONNECT_TIMEOUT_S)
    took = time.monotonic() - started
    try:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
    finally:
        await conn.close()
    print(f"writer found behind a silent first host in {took:.3f} s")


async def test_no_writer_among_the_hosts_is_said_plainly(
    postgres: ReplicatedPostgres, silent_host: str
) -> None:
    replica = address(postgres.replicas[0].dsn)
    with pytest.raises(asyncpg.exceptions.TargetServerAttributeNotMatched):
        await connect_writer(candidates(replica, replica), timeout=CONNECT_TIMEOUT_S)
    with pytest.raises(ConnectionError, match=silent_host):
        await connect_writer(candidates(silent_host, replica), timeout=0.5)


def test_the_candidate_hosts_are_read_from_the_dsn() -> None:
    assert dsn_hosts("postgresql://u:p%40ss@a:5433,b,10.0.0.3:6000/db?x=1") == [
        ("a", 5433),
        ("b", 5432),
        ("10.0.0.3", 6000),
    ]
    # forms left to asyncpg's own handling: unix sockets, key/value strings
    assert dsn_hosts("postgresql:///db?host=/run/postgresql") == []
    assert dsn_hosts("host=a port=5432 dbname=db") == []
