"""Which local addresses ICE gathers host candidates on.

aioice gathers on every interface except loopback. A media node should offer only its media
interface (behind 1:1 NAT, the private address the public IP maps to), and the local fleet and
the tests must keep all media on 127.0.0.1. ``RTCFLEET_ICE_ADDRESSES`` (comma-separated) sets
the list for a process; ``restrict_host_addresses`` sets it in-process.
"""

from __future__ import annotations

import ipaddress
import os

import aioice.ice

ENV = "RTCFLEET_ICE_ADDRESSES"
_original = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: list[str] | None) -> None:
    """Gather host candidates only on ``addresses``; ``None`` restores aioice's default."""
    if not addresses:
        aioice.ice.get_host_addresses = _original
        return
    parsed = [ipaddress.ip_address(address) for address in addresses]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            str(ip)
            for ip in parsed
            if (ip.version == 4 and use_ipv4) or (ip.version == 6 and use_ipv6)
        ]

    aioice.ice.get_host_addresses = get_host_addresses


def restrict_from_environment() -> None:
    value = os.environ.get(ENV, "").strip()
    if value:
        restrict_host_addresses([part.strip() for part in value.split(",") if part.strip()])
