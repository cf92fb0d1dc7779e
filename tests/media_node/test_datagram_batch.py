"""The batched send: `sendmmsg` and the pure-Python path put the same datagrams on the wire."""

from __future__ import annotations

import asyncio
import socket

import pytest

from media_node import datagram_batch
from media_node.datagram_batch import DatagramBatch

PATHS = [
    pytest.param(True, marks=pytest.mark.skipif(not datagram_batch.sendmmsg_available(),
                                                reason="no sendmmsg on this platform")),
    False,
]  # fmt: skip


def receivers(count: int, family: int = socket.AF_INET) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        sock.settimeout(2)
        socks.append(sock)
    return socks


@pytest.mark.parametrize("use_sendmmsg", PATHS)
async def test_every_datagram_arrives_intact_and_in_order(use_sendmmsg: bool) -> None:
    loop = asyncio.get_running_loop()
    senders = [
        await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        for _ in range(2)
    ]
    targets = receivers(3)
    batch = DatagramBatch(use_sendmmsg=use_sendmmsg)
    sent: list[tuple[int, int]] = []
    expected: dict[int, list[tuple[bytes, int]]] = {i: [] for i in range(3)}
    for n in range(40):
        transport = senders[n % 2][0]
        target = n % 3
        data = bytes([n]) * (1 + 37 * n % 1200)
        fd = transport.get_extra_info("socket").fileno()
        batch.add(transport, fd, data, targets[target].getsockname()[:2],
                  lambda b, p: sent.append((b, p)))  # fmt: skip
        expected[target].append((data, transport.get_extra_info("sockname")[1]))
    batch.flush()
    for i, sock in enumerate(targets):
        got = []
        for _ in expected[i]:
            data, source = sock.recvfrom(2048)
            got.append((data, source[1]))
        # in order per sending socket (a batch groups by socket)
        assert sorted(got, key=lambda g: g[1]) == sorted(expected[i], key=lambda e: e[1])
    assert sum(b for b, _ in sent) == sum(len(d) for e in expected.values() for d, _ in e)
    assert sum(p for _, p in sent) == 40
    # one system call per sending socket with sendmmsg, one per datagram without
    assert batch.system_calls == (2 if use_sendmmsg else 40)
    assert batch.dropped == 0
    for transport, _ in senders:
        transport.close()
    for sock in targets:
        sock.close()


@pytest.mark.parametrize("use_sendmmsg", PATHS)
async def test_ipv6_and_a_refused_datagram(use_sendmmsg: bool) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("::1", 0)
    )
    [target] = receivers(1, socket.AF_INET6)
    fd = transport.get_extra_info("socket").fileno()
    batch = DatagramBatch(use_sendmmsg=use_sendmmsg)
    batch.add(transport, fd, b"first", target.getsockname()[:2], lambda b, p: None)
    batch.add(transport, fd, b"x" * 70000, target.getsockname()[:2], lambda b, p: None)
    batch.add(transport, fd, b"third", target.getsockname()[:2], lambda b, p: None)
    batch.add(transport, fd, b"fourth", target.getsockname()[:2], lambda b, p: None)
    batch.flush()
    assert batch.dropped == (1 if use_sendmmsg else 0)  # the fallback's transport reports it
    await asyncio.sleep(0.05)
    assert target.recvfrom(100)[0] == b"first"
    assert target.recvfrom(100)[0] == b"third"
    assert target.recvfrom(100)[0] == b"fourth"
    transport.close()
    target.close()
