"""Faults as nftables rules on the fabric's bridge: drops, never resets.

Each fault names addresses, not processes: a blackholed host keeps running and keeps its
sockets, it just stops hearing and being heard, which is what a region losing its network, a
zone losing power or a cut link looks like from outside.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

TABLE = "rtcfleet_faults"


def _set(addresses: tuple[str, ...]) -> str:
    if not addresses:
        raise ValueError("a fault needs at least one address")
    for address in addresses:
        ipaddress.IPv4Address(address)
    return "{ " + ", ".join(addresses) + " }"


@dataclass(frozen=True)
class Blackhole:
    """Every packet to or from these hosts is dropped."""

    addresses: tuple[str, ...]

    def rules(self) -> list[str]:
        hosts = _set(self.addresses)
        return [f"ip saddr {hosts} drop", f"ip daddr {hosts} drop"]

    def describe(self) -> str:
        return f"blackhole {', '.join(self.addresses)}"


@dataclass(frozen=True)
class Partition:
    """Packets between the two sides are dropped; each side still reaches everyone else."""

    side_a: tuple[str, ...]
    side_b: tuple[str, ...]

    def rules(self) -> list[str]:
        a, b = _set(self.side_a), _set(self.side_b)
        if set(self.side_a) & set(self.side_b):
            raise ValueError("a partition's sides must not share an address")
        return [f"ip saddr {a} ip daddr {b} drop", f"ip saddr {b} ip daddr {a} drop"]

    def describe(self) -> str:
        return f"partition {', '.join(self.side_a)} | {', '.join(self.side_b)}"


@dataclass(frozen=True)
class Loss:
    """A random share of the UDP packets to and from these hosts is dropped (both ways)."""

    addresses: tuple[str, ...]
    percent: int

    def rules(self) -> list[str]:
        if not 0 < self.percent <= 100:
            raise ValueError(f"loss must be 1-100 %, not {self.percent}")
        hosts = _set(self.addresses)
        drop = f"meta l4proto udp numgen random mod 100 < {self.percent} drop"
        return [f"ip daddr {hosts} {drop}", f"ip saddr {hosts} {drop}"]

    def describe(self) -> str:
        return f"{self.percent} % UDP loss on {', '.join(self.addresses)}"


Fault = Blackhole | Partition | Loss


def ruleset(faults: Sequence[Fault]) -> str:
    """An ``nft -f`` script that replaces the fabric's fault table in one transaction."""
    rules = [rule for fault in faults for rule in fault.rules()]
    body = "".join(f"    {rule}\n" for rule in rules)
    return (
        f"table bridge {TABLE}\n"
        f"delete table bridge {TABLE}\n"
        f"table bridge {TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f"{body}"
        "  }\n"
        "}\n"
    )
