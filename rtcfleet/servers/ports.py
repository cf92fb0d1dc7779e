"""Loopback port allocation for servers started on one machine."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Bind:
    """Where a server listens: an address, and the network namespace that holds it
    (``None``: this process's own)."""

    address: str = LOOPBACK
    netns: str | None = None


LOCAL = Bind()


# Ports this process has handed out: a fleet takes every server's port before it starts them,
# and the kernel may offer a port again once the probing socket is closed, which would put two
# servers (a Redis and a Sentinel, say) on one port.
_handed_out: set[tuple[str, int]] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nobody listens on right now (the kernel picks it), never one this
    process handed out before."""
    if len(_handed_out) > 16384:  # a long-lived process: forget, rather than run out
        _handed_out.clear()
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if (host, port) not in _handed_out:
            _handed_out.add((host, port))
            return port


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 30.0) -> None:
    """Block until something accepts on ``host:port``; raise TimeoutError naming the port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listened on {host}:{port} within {timeout:.0f} s"
                ) from None
            time.sleep(0.05)
