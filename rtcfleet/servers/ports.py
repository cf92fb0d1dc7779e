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


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
