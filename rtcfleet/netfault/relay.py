"""Delay, jitter and loss on one host's path, in user space (this kernel has no ``netem``).

An impaired host is a namespace whose only interface is a TUN device. The relay process, in a
router namespace on the fabric's bridge, holds that device and a second one whose route leads to
the impaired host's address, and moves every IPv4 packet between the two: UDP datagrams are
dropped at random (``loss_percent``) or held back by ``delay_ms`` ± ``jitter_ms`` (uniform),
other packets (the signaling's TCP) pass at once. The router answers ARP for the impaired
address on the bridge, so every other host reaches it at its own address and ICE sees the real
addresses on both sides: nothing in the client or the media node knows the relay is there.

Jitter without ``reorder`` is queueing delay: a datagram never overtakes the one before it in
the same direction (each leaves at its own time or right after the previous one), as on a path
whose delay varies with its queues. With ``reorder`` each datagram leaves at its own time, so
two sent closer together than their delays differ swap places, as netem's jitter does.

The relay runs for a bounded time (``seconds``) and its TUN devices vanish with it.

    ip netns exec ROUTER python -m rtcfleet.netfault.relay --netns HOST --address 10.254.7.20/24 \\
        --inner NAME --outer NAME --delay-ms 40 --jitter-ms 20 --loss 5 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import heapq
import os
import random
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_DELAY_MS = 2000.0
MAX_QUEUED = 4096
MAX_SECONDS = 3600.0
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_UDP = 17


@dataclass(frozen=True)
class Impairment:
    """What a path does to UDP: a share lost, the rest delayed by ``delay_ms`` ± ``jitter_ms``."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_percent: float = 0.0
    reorder: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.loss_percent <= 100:
            raise ValueError(f"loss must be 0-100 %, not {self.loss_percent}")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay must be 0-{MAX_DELAY_MS:.0f} ms, not {self.delay_ms}")
        if not 0 <= self.jitter_ms <= self.delay_ms:
            raise ValueError(
                f"jitter must be 0-{self.delay_ms} ms (the delay), not {self.jitter_ms}"
            )

    def describe(self) -> str:
        order = ", reordering" if self.reorder else ""
        return (
            f"{self.loss_percent:g} % UDP loss, {self.delay_ms:g} ms ± {self.jitter_ms:g} ms "
            f"delay{order}"
        )

    def arguments(self) -> list[str]:
        argv = ["--delay-ms", str(self.delay_ms), "--jitter-ms", str(self.jitter_ms)]
        argv += ["--loss", str(self.loss_percent)]
        return argv + (["--reorder"] if self.reorder else [])


@dataclass
class LineStats:
    received: int = 0
    lost: int = 0
    overflowed: int = 0
    sent: int = 0


@dataclass
class DelayLine:
    """One direction of the path: datagrams in, each out after its own delay (or lost)."""

    impairment: Impairment
    send: Callable[[bytes], None]
    rng: random.Random = field(default_factory=random.Random)
    max_queued: int = MAX_QUEUED
    stats: LineStats = field(default_factory=LineStats)
    _queue: list[tuple[float, int, bytes]] = field(default_factory=list)
    _count: int = 0
    _last_release: float = 0.0

    def push(self, data: bytes, now: float) -> float | None:
        """Take a datagram arriving at ``now`` (seconds); returns when it leaves, or None."""
        self.stats.received += 1
        if self.rng.random() * 100 < self.impairment.loss_percent:
            self.stats.lost += 1
            return None
        if len(self._queue) >= self.max_queued:
            self.stats.overflowed += 1
            return None
        spread = self.rng.uniform(-self.impairment.jitter_ms, self.impairment.jitter_ms)
        release = now + (self.impairment.delay_ms + spread) / 1000
        if not self.impairment.reorder:
            release = max(release, self._last_release)
        self._last_release = max(release, self._last_release)
        self._count += 1
        heapq.heappush(self._queue, (release, self._count, data))
        return release

    def drain(self, now: float) -> float | None:
        """Send every datagram due by ``now``; returns when the next one is due."""
        while self._queue and self._queue[0][0] <= now:
            _, _, data = heapq.heappop(self._queue)
            self.stats.sent += 1
            self.send(data)
        return self._queue[0][0] if self._queue else None


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


class Relay:
    """Moves packets between the impaired host's TUN device (inner) and the router's (outer)."""

    def __init__(self, inner: int, outer: int, impairment: Impairment, seed: int | None) -> None:
        rng = random.Random(seed)
        self._fds = {inner: outer, outer: inner}
        self._lines = {
            fd: DelayLine(impairment, self._writer(self._fds[fd]), random.Random(rng.random()))
            for fd in (inner, outer)
        }
        self._loop = asyncio.get_running_loop()

    @staticmethod
    def _writer(fd: int) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            with contextlib.suppress(OSError):  # the device is gone or full: lost, as on a link
                os.write(fd, data)

        return write

    def start(self) -> None:
        for fd in self._fds:
            self._loop.add_reader(fd, self._read, fd)

    def _read(self, fd: int) -> None:
        line = self._lines[fd]
        for _ in range(64):
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            if len(data) < 20 or data[0] >> 4 != 4:
                continue  # IPv4 only: the fabric has no IPv6
            if data[9] != _UDP:
                line.send(data)
                continue
            release = line.push(data, self._loop.time())
            if release is not None:
                self._loop.call_at(release, self._drain, line)

    def _drain(self, line: DelayLine) -> None:
        line.drain(self._loop.time())

    def stats(self) -> dict[str, LineStats]:
        inner, outer = list(self._fds)
        return {"from_host": self._lines[inner].stats, "to_host": self._lines[outer].stats}


# the router forwards between the bridge and the relay, answers ARP on the bridge for the
# impaired host (routed through the relay's device), and takes the host's packets from that device
ROUTER_SETTINGS = {
    "net/ipv4/ip_forward": "1",
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/all/proxy_arp": "1",
}


def _set_up(args: argparse.Namespace) -> tuple[int, int]:
    """Configure the router (this process's namespace) and both devices; returns their fds."""
    for key, value in ROUTER_SETTINGS.items():
        Path("/proc/sys", key).write_text(value)
    inner = _open_tun(args.inner)
    outer = _open_tun(args.outer)
    _ip("link", "set", args.inner, "netns", args.netns)
    _ip("-n", args.netns, "link", "set", "lo", "up")
    _ip("-n", args.netns, "addr", "add", args.address, "dev", args.inner)
    _ip("-n", args.netns, "link", "set", args.inner, "up")
    _ip("link", "set", args.outer, "up")
    _ip("route", "add", args.address.split("/")[0] + "/32", "dev", args.outer)
    return inner, outer


async def _serve(args: argparse.Namespace, inner: int, outer: int) -> None:
    impairment = Impairment(args.delay_ms, args.jitter_ms, args.loss, args.reorder)
    relay = Relay(inner, outer, impairment, args.seed)
    relay.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.seconds):
            await stop.wait()
    for name, stats in relay.stats().items():
        print(name, stats, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netns", required=True, help="the impaired host's namespace")
    parser.add_argument("--address", required=True, help="its address/prefix on the fabric")
    parser.add_argument("--inner", required=True, help="TUN device name in the host")
    parser.add_argument("--outer", required=True, help="TUN device name in the router")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0, help="percent of UDP datagrams")
    parser.add_argument("--reorder", action="store_true")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    try:
        Impairment(args.delay_ms, args.jitter_ms, args.loss, args.reorder)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(_serve(args, *_set_up(args)))


if __name__ == "__main__":
    main(sys.argv[1:])
