"""A private network on this machine: one network namespace per host, joined by a bridge.

Loopback hides how networks fail: a killed process answers the next packet with a reset. Here
each host (a gateway, a media node, a region's data stores) has its own namespace and address,
every packet between hosts crosses one Linux bridge in a namespace of its own, and the fault
rules sit on that bridge (``nftables``, bridge family): a dropped packet is simply gone, no
reset, no ICMP, as when a zone loses power or a link is cut. Clients stay in the caller's
namespace and reach every host through one veth pair ending on the bridge.

Addresses come from 10.254.0.0/16 (one /24 per fabric, a subnet no interface or route of this
machine uses), names start with ``rtcf``, and :meth:`Fabric.remove` deletes every namespace,
link and rule the fabric made. Needs root, ``ip`` (iproute2) and ``nft`` (nftables).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtcfleet.netfault.faults import Fault, ruleset
from rtcfleet.netfault.relay import Impairment

SUPERNET = ipaddress.ip_network("10.254.0.0/16")
PREFIX = "rtcf"
_LOCK = Path("/run/rtcfleet-netfault.lock")
_FIRST_HOST = 10
_CLIENT_ADDRESSES = 8


class FabricError(RuntimeError):
    """The fabric could not be built (no root, no ``ip``/``nft``, no free subnet)."""


@dataclass(frozen=True)
class Host:
    """One machine of the fabric: a namespace with one address on the bridge."""

    name: str
    netns: str
    address: str

    def exec_prefix(self) -> list[str]:
        """Run a command on this host: prepend this to its argv."""
        return ["ip", "netns", "exec", self.netns]


def _run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FabricError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def missing_tools() -> list[str]:
    """What this machine lacks to build a fabric; empty when it can."""
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def _used_subnets() -> set[int]:
    """Third octets of 10.254.x.0/24 already on an interface or route of this machine."""
    text = _run(["ip", "-4", "-o", "addr"]) + _run(["ip", "-4", "route"])
    used = set()
    for word in text.split():
        try:
            network = ipaddress.ip_network(word, strict=False)
        except ValueError:
            continue
        if network.overlaps(SUPERNET):
            if network.prefixlen <= SUPERNET.prefixlen:
                return set(range(256))
            used.add(int(network.network_address.packed[2]))
    return used


@dataclass
class Fabric:
    """The bridge, its hosts, the client end and the faults currently applied."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: dict[str, Host] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    subnet: ipaddress.IPv4Network | None = None
    client_addresses: list[str] = field(default_factory=list)
    _links: list[str] = field(default_factory=list)
    _namespaces: list[str] = field(default_factory=list)
    _relays: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def bridge_netns(self) -> str:
        return f"{PREFIX}{self.tag}-fabric"

    @property
    def client_address(self) -> str:
        """The address clients in the caller's namespace use on the fabric."""
        return self.client_addresses[0]

    def start(self) -> Fabric:
        missing = missing_tools()
        if missing:
            raise FabricError(f"a network fabric needs {', '.join(missing)}")
        try:
            self._create()
        except BaseException:
            self.remove()
            raise
        return self

    def _create(self) -> None:
        _LOCK.touch(exist_ok=True)
        with _LOCK.open() as lock:
            # two fabrics started at once must not pick the same subnet
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _used_subnets()
            free = [n for n in range(1, 255) if n not in used]
            if not free:
                raise FabricError(f"no free /24 left in {SUPERNET}")
            octet = free[secrets.randbelow(len(free))]
            self.subnet = ipaddress.IPv4Network(f"10.254.{octet}.0/24")
            self._add_netns(self.bridge_netns)
            _run(["ip", "-n", self.bridge_netns, "link", "add", "br0", "type", "bridge"])
            _run(["ip", "-n", self.bridge_netns, "link", "set", "br0", "up"])
            link = f"{PREFIX}{self.tag}c"
            self._add_veth(link, netns=None)
            base = self.subnet.network_address
            self.client_addresses = [str(base + 1 + i) for i in range(_CLIENT_ADDRESSES)]
            for address in self.client_addresses:
                _run(["ip", "addr", "add", f"{address}/24", "dev", link])
            _run(["ip", "link", "set", link, "up"])
        self.apply([])

    def _add_netns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _add_veth(self, link: str, netns: str | None) -> None:
        """A veth pair: ``link`` in ``netns`` (or here), its peer on the bridge."""
        peer = f"{link}b"
        _run(["ip", "link", "add", link, "type", "veth", "peer", "name", peer])
        self._links.append(link)
        _run(["ip", "link", "set", peer, "netns", self.bridge_netns])
        _run(["ip", "-n", self.bridge_netns, "link", "set", peer, "master", "br0", "up"])
        if netns is not None:
            _run(["ip", "link", "set", link, "netns", netns])

    def add_host(self, name: str) -> Host:
        """A new namespace with the next free address; the same host again for a known name."""
        if name in self.hosts:
            return self.hosts[name]
        assert self.subnet is not None, "start the fabric first"
        index = len(self.hosts)
        if _FIRST_HOST + index >= 255:
            raise FabricError("a fabric holds at most 244 hosts")
        netns = f"{PREFIX}{self.tag}-{index}"
        self._add_netns(netns)
        link = f"{PREFIX}{self.tag}h{index}"
        self._add_veth(link, netns)
        address = str(self.subnet.network_address + _FIRST_HOST + index)
        _run(["ip", "-n", netns, "addr", "add", f"{address}/24", "dev", link])
        _run(["ip", "-n", netns, "link", "set", link, "up"])
        host = Host(name, netns, address)
        self.hosts[name] = host
        return host

    def add_impaired_host(
        self, name: str, impairment: Impairment, seconds: float, seed: int | None = None
    ) -> Host:
        """A host whose every UDP datagram crosses a relay that delays and drops it
        (``rtcfleet.netfault.relay``) for ``seconds``, after which it has no network at all.

        The relay runs in a router host of its own on the bridge, which answers ARP for the
        impaired host's address; everyone else reaches the host at that address."""
        if name in self.hosts:
            raise FabricError(f"a host named {name} exists already")
        assert self.subnet is not None, "start the fabric first"
        router = self.add_host(f"{name}-router")
        index = len(self.hosts)
        if _FIRST_HOST + index >= 255:
            raise FabricError("a fabric holds at most 244 hosts")
        netns = f"{PREFIX}{self.tag}-{index}"
        self._add_netns(netns)
        address = str(self.subnet.network_address + _FIRST_HOST + index)
        relay = subprocess.Popen(
            [*router.exec_prefix(), sys.executable, "-m", "rtcfleet.netfault.relay",
             "--netns", netns, "--address", f"{address}/{self.subnet.prefixlen}",
             "--inner", f"{PREFIX}{self.tag}t{index}", "--outer", f"{PREFIX}{self.tag}u{index}",
             "--seconds", str(seconds), *impairment.arguments(),
             *(["--seed", str(seed)] if seed is not None else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._relays.append(relay)
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != "ready":
            relay.kill()
            _, err = relay.communicate(timeout=10)
            raise FabricError(f"the relay for {name} did not start: {err.strip()}")
        host = Host(name, netns, address)
        self.hosts[name] = host
        return host

    def relay_reports(self) -> list[str]:
        """What each relay that has ended printed about the datagrams it carried."""
        reports = []
        for relay in self._relays:
            if relay.poll() is not None and relay.stdout is not None:
                reports += [line.strip() for line in relay.stdout if line.strip()]
        return reports

    def apply(self, faults: Sequence[Fault]) -> None:
        """Replace the faults on the bridge at once (one nftables transaction)."""
        _run(["ip", "netns", "exec", self.bridge_netns, "nft", "-f", "-"], stdin=ruleset(faults))
        self.faults = list(faults)

    def heal(self) -> None:
        self.apply([])

    def remove(self) -> None:
        """Delete every namespace and link this fabric made; safe to call twice."""
        for relay in self._relays:
            if relay.poll() is None:
                relay.terminate()
                try:
                    relay.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    relay.kill()
                    relay.wait()
        for link in self._links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        for netns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        self._links.clear()
        self._namespaces.clear()
        self.hosts.clear()


def leftovers(tag: str = "") -> list[str]:
    """Namespaces and links of the fabric ``tag`` (every fabric's by default) that exist now."""
    names = _run(["ip", "netns", "list"]).split()
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in _run(["ip", "-o", "link"]).splitlines()
        if ":" in line
    ]
    return [n for n in (*names, *links) if n.startswith(PREFIX + tag)]
