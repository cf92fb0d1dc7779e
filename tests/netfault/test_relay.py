"""The userspace relay: delay ± jitter, loss and (optional) reordering on one host's path."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from rtcfleet.netfault import Fabric, Impairment, leftovers, missing_tools
from rtcfleet.netfault.relay import DelayLine


def _run_line(impairment: Impairment, seed: int = 7) -> tuple[list[int], list[float], DelayLine]:
    """Push 1 000 datagrams 5 ms apart; returns the order they left in and their delays."""
    out: list[bytes] = []
    line = DelayLine(impairment, out.append, random.Random(seed))
    delays = []
    for n in range(1000):
        now = n * 0.005
        release = line.push(n.to_bytes(2, "big"), now)
        if release is not None:
            delays.append(release - now)
        line.drain(now)
    line.drain(10**6)
    return [int.from_bytes(d, "big") for d in out], delays, line


def test_delay_and_jitter_stay_in_bounds_and_queueing_keeps_order() -> None:
    order, delays, line = _run_line(Impairment(delay_ms=40, jitter_ms=20, loss_percent=5))
    assert order == sorted(order), "without reorder a datagram never overtakes another"
    assert min(delays) >= 0.020 and max(delays) <= 0.060 + 0.005  # held behind the one before
    assert 20 < line.stats.lost < 90  # 5 % of 1 000, give or take
    assert line.stats.sent == len(order) == 1000 - line.stats.lost


def test_reorder_lets_datagrams_overtake() -> None:
    order, delays, _ = _run_line(Impairment(delay_ms=40, jitter_ms=20, reorder=True))
    assert sorted(order) == list(range(1000))
    assert order != sorted(order)
    assert min(delays) >= 0.020 and max(delays) <= 0.060


@pytest.mark.parametrize(
    ("delay", "jitter", "loss"), [(0, 0, 101), (-1, 0, 0), (10, 20, 0), (5000, 0, 0)]
)
def test_bad_impairments_are_refused(delay: float, jitter: float, loss: float) -> None:
    with pytest.raises(ValueError):
        Impairment(delay_ms=delay, jitter_ms=jitter, loss_percent=loss)


UDP_PING = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.settimeout(1.0)
rtts = []
for n in range(40):
    sent = time.monotonic()
    sock.sendto(str(n).encode(), (sys.argv[1], 7000))
    try:
        while sock.recv(100) != str(n).encode():
            pass
        rtts.append(time.monotonic() - sent)
    except socket.timeout:
        pass
print(len(rtts), min(rtts), flush=True)
"""
UDP_ECHO = """
import socket, sys
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((sys.argv[1], 7000))
print("ready", flush=True)
while True:
    data, peer = udp.recvfrom(2048); udp.sendto(data, peer)
"""


@pytest.mark.skipif(bool(missing_tools()), reason=f"namespaces need {missing_tools()}")
def test_a_host_behind_the_relay_is_reached_late_and_loses_datagrams() -> None:
    fabric = Fabric().start()
    echo = None
    try:
        server = fabric.add_host("echo")
        impaired = fabric.add_impaired_host(
            "client", Impairment(delay_ms=40, jitter_ms=20, loss_percent=10), seconds=30, seed=3
        )
        echo = subprocess.Popen(
            [*server.exec_prefix(), sys.executable, "-c", UDP_ECHO, server.address],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        ping = subprocess.run(
            [*impaired.exec_prefix(), sys.executable, "-c", UDP_PING, server.address],
            capture_output=True,
            text=True,
            timeout=60,
        )
        answered, fastest = ping.stdout.split()
        print(f"{answered}/40 answered, fastest round trip {float(fastest) * 1000:.0f} ms")
        # each way 40 ± 20 ms: no round trip faster than 40 ms; about 19 % of 40 lost
        assert float(fastest) >= 0.040
        assert 20 <= int(answered) < 40
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        fabric.remove()
    reports = fabric.relay_reports()
    assert any(r.startswith("from_host") for r in reports), reports
    assert leftovers(fabric.tag) == []
