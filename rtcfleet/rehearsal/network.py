"""The rehearsal's network: one bridge on this machine, one network namespace per instance.

Each instance's namespace holds its end of a veth pair (``eth0``) in a private /24 of
10.213.0.0/16 that no interface here uses yet; the other end joins the bridge, whose address
is where the cloud's doubles (metadata, APIs, Redis, Postgres) listen. Everything is created
by the rehearsal and removed with it.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from dataclasses import dataclass, field

from rtcfleet.rehearsal.rootfs import RehearsalError

PREFIX = "10.213"


def ip(*argv: str) -> str:
    result = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RehearsalError(f"ip {' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def _used_subnets() -> set[str]:
    used = set()
    for line in ip("-4", "-o", "addr", "show").splitlines() + ip("-4", "route").splitlines():
        for word in line.split():
            if word.startswith(PREFIX + "."):
                used.add(".".join(word.split("/")[0].split(".")[:3]))
    return used


@dataclass
class Bridge:
    """The instances' shared segment; its own address is the cloud's side."""

    token: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = ""
    created: bool = False
    namespaces: list[str] = field(default_factory=list)
    _next_host: int = 2

    @property
    def name(self) -> str:
        return f"rfbr{self.token}"

    @property
    def address(self) -> str:
        return f"{self.subnet}.1"

    def create(self) -> Bridge:
        used = _used_subnets()
        free = [f"{PREFIX}.{n}" for n in range(1, 255) if f"{PREFIX}.{n}" not in used]
        if not free:
            raise RehearsalError(f"no free /24 left in {PREFIX}.0.0/16")
        self.subnet = free[secrets.randbelow(len(free))]
        ip("link", "add", self.name, "type", "bridge")
        self.created = True
        ip("addr", "add", f"{self.address}/24", "dev", self.name)
        ip("link", "set", self.name, "up")
        return self

    def attach(self, label: str) -> tuple[str, str]:
        """A new namespace on the bridge: its name and its address."""
        if self._next_host > 250:
            raise RehearsalError("no addresses left on the rehearsal bridge")
        host = self._next_host
        self._next_host += 1
        namespace = f"rf-{self.token}-{label}"[:40]
        address = f"{self.subnet}.{host}"
        outside, inside = f"rfv{self.token}{host}", f"rfi{self.token}{host}"
        ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", namespace)
        ip("-n", namespace, "link", "set", inside, "name", "eth0")
        ip("link", "set", outside, "master", self.name, "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "route", "add", "default", "via", self.address)
        return namespace, address

    def detach(self, namespace: str) -> None:
        """Removes the namespace (its veth pair goes with it)."""
        if namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
            self.namespaces.remove(namespace)

    def remove(self) -> None:
        for namespace in list(self.namespaces):
            self.detach(namespace)
        if self.created:
            subprocess.run(["ip", "link", "del", self.name], capture_output=True, check=False)
            self.created = False

    def contains(self, address: str) -> bool:
        return ipaddress.ip_address(address) in ipaddress.ip_network(f"{self.subnet}.0/24")
