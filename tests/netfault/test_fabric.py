"""The fabric's faults, for real: packets dropped on a bridge between namespaces, no resets."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from rtcfleet.netfault import Blackhole, Fabric, Host, Loss, Partition, leftovers, missing_tools

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"network namespaces need {missing_tools()}"
)

# a TCP and UDP echo server on the host's address, run inside its namespace
ECHO = """
import socket, sys, threading
address = sys.argv[1]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((address, 7000))
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((address, 7001)); tcp.listen()
def serve_udp():
    while True:
        data, peer = udp.recvfrom(2048); udp.sendto(data, peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    tcp.accept()[0].close()
"""


@pytest.fixture(scope="module")
def fabric() -> Iterator[tuple[Fabric, Host, Host]]:
    fabric = Fabric().start()
    servers = []
    try:
        hosts = fabric.add_host("a"), fabric.add_host("b")
        for host in hosts:
            server = subprocess.Popen(
                [*host.exec_prefix(), sys.executable, "-c", ECHO, host.address],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield fabric, hosts[0], hosts[1]
    finally:
        for server in servers:
            server.kill()
            server.wait()
        fabric.remove()
    assert leftovers(fabric.tag) == [], "the fabric left namespaces or links behind"


@pytest.fixture(autouse=True)
def healed(fabric: tuple[Fabric, Host, Host]) -> Iterator[None]:
    yield
    fabric[0].heal()


def connect(address: str, timeout: float = 1.0, via: Host | None = None) -> str:
    """``ok``, ``refused`` (a reset came back) or ``timeout`` (nothing came back)."""
    if via is not None:
        probe = (
            "import socket,sys\n"
            "try:\n socket.create_connection((sys.argv[1], 7001), timeout=float(sys.argv[2]))\n"
            " print('ok')\n"
            "except ConnectionRefusedError: print('refused')\n"
            "except OSError: print('timeout')\n"
        )
        result = subprocess.run(
            [*via.exec_prefix(), sys.executable, "-c", probe, address, str(timeout)],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()
    try:
        socket.create_connection((address, 7001), timeout=timeout).close()
        return "ok"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"


def echo_share(address: str, count: int) -> float:
    """The share of ``count`` UDP datagrams that came back from the host's echo."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.02)
        back = 0
        for index in range(count):
            udp.sendto(index.to_bytes(4, "big"), (address, 7000))
            try:
                udp.recv(16)
                back += 1
            except TimeoutError:
                pass
        return back / count


def test_a_blackholed_host_answers_nothing_where_a_dead_port_resets(
    fabric: tuple[Fabric, Host, Host],
) -> None:
    net, a, b = fabric
    assert connect(a.address) == "ok"
    net.apply([Blackhole((a.address,))])
    started = time.monotonic()
    assert connect(a.address, timeout=1.0) == "timeout"
    assert time.monotonic() - started >= 0.9, "a blackhole must not answer at all"
    assert connect(a.address, via=b) == "timeout"
    assert connect(b.address) == "ok"
    net.heal()
    assert connect(a.address) == "ok"


def test_a_partition_cuts_the_two_sides_while_clients_reach_both(
    fabric: tuple[Fabric, Host, Host],
) -> None:
    net, a, b = fabric
    assert connect(b.address, via=a) == "ok"
    net.apply([Partition((a.address,), (b.address,))])
    assert connect(b.address, via=a) == "timeout"
    assert connect(a.address, via=b) == "timeout"
    assert connect(a.address) == "ok" and connect(b.address) == "ok"


def test_loss_drops_a_share_of_udp_both_ways(fabric: tuple[Fabric, Host, Host]) -> None:
    net, a, b = fabric
    assert echo_share(a.address, 100) == 1.0
    net.apply([Loss((a.address,), 20)])
    share = echo_share(a.address, 600)
    # each echo crosses the lossy path twice: 0.8 * 0.8 = 0.64 expected
    assert 0.5 < share < 0.78, share
    assert echo_share(b.address, 100) == 1.0
    assert connect(a.address) == "ok", "loss is for UDP only"


@pytest.mark.parametrize(
    "fault",
    [
        lambda: Partition(("10.254.1.10",), ("10.254.1.10",)),
        lambda: Loss(("10.254.1.10",), 0),
        lambda: Blackhole(("10.254.1.300",)),
        lambda: Blackhole(()),
    ],
    ids=["overlapping-sides", "zero-loss", "bad-address", "no-address"],
)
def test_bad_faults_are_refused_and_leave_the_rules_as_they_were(
    fabric: tuple[Fabric, Host, Host], fault
) -> None:
    net, a, _ = fabric
    net.apply([Blackhole((a.address,))])
    with pytest.raises(ValueError):
        net.apply([Blackhole((a.address,)), fault()])
    assert connect(a.address, timeout=0.5) == "timeout", "the earlier fault must still hold"
    assert net.faults == [Blackhole((a.address,))]
