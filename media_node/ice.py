"""ICE for the media node: media sockets inside the firewall's UDP range, public IP advertised.

aioice 0.13 binds every host candidate to an ephemeral port (port 0) and has no range option,
and the usual Linux ephemeral range (32768-60999) is not inside 49152-65535, so the SFU binds its
own host sockets inside [port_min, port_max] through `rtp_hooks.bind_host_candidates`. Behind a
1:1 NAT the public address maps to the same port, so it is advertised as a server-reflexive
candidate next to the host one: clients on the Internet use the public one, peers on the same
network (and the loopback tests) the host one.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import SessionDescription, candidate_from_sdp

from media_node import rtp_hooks
from media_node.udp_mux import UdpMuxes

BIND_ATTEMPTS = 64


class InvalidCandidate(ValueError):
    """A trickled ICE candidate could not be parsed or is not allowed."""


class MalformedSdp(ValueError):
    """A remote description aiortc cannot parse: the client's fault, answered as such."""


def parse_remote_sdp(sdp: str) -> SessionDescription:
    """aiortc's parser asserts (or indexes past the end) on malformed SDP; what a client sent
    must come back as its error, not as the node's own failure with a traceback."""
    try:
        return SessionDescription.parse(sdp)
    except (AssertionError, IndexError, KeyError, ValueError) as exc:
        raise MalformedSdp(f"malformed SDP ({type(exc).__name__}: {exc})") from exc


class PortRangeError(ValueError):
    """The configured media port range is invalid."""


class PortRangeExhausted(RuntimeError):
    """No free UDP port was found inside the media port range."""


class InvalidPublicIp(ValueError):
    """The configured public IP is not an IP address."""


# Remote candidates one peer connection accepts; a browser offers a handful.
MAX_REMOTE_CANDIDATES = 32


@dataclass(frozen=True)
class IcePolicy:
    port_min: int = 49152
    port_max: int = 65535
    public_ip: str | None = None
    # Whether clients may name loopback and private addresses as candidates: only where the
    # node itself lives on such a network (a local fleet); elsewhere a candidate is where the
    # node sends STUN, and a client must not aim it at the node's own private network.
    local_candidates: bool = False
    # the worker's shared UDP sockets (one port for every connection); None: a socket per
    # connection
    muxes: UdpMuxes | None = field(default=None, compare=False)

    def candidate_allowed(self, address: str) -> bool:
        """Whether the node may send connectivity checks to ``address``."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address.endswith(".local")  # a browser's mDNS name
        if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
            return False
        if ip.is_loopback or ip.is_private:
            return self.local_candidates
        return True

    def check_candidate(self, candidate: RTCIceCandidate | None, accepted: int) -> None:
        """Raise ``InvalidCandidate`` for a candidate the node must not check."""
        if candidate is None:
            return
        if accepted >= MAX_REMOTE_CANDIDATES:
            raise InvalidCandidate(f"over {MAX_REMOTE_CANDIDATES} candidates on one connection")
        if not self.candidate_allowed(candidate.ip):
            raise InvalidCandidate(f"candidate address {candidate.ip} is not allowed")

    def filter_sdp(self, sdp: str) -> str:
        """The SDP without candidate lines the node must not check (and past the bound)."""
        kept, lines = 0, []
        for line in sdp.split("\r\n"):
            if line.startswith("a=candidate:"):
                parts = line.split()
                if kept >= MAX_REMOTE_CANDIDATES or len(parts) < 5:
                    continue
                if not self.candidate_allowed(parts[4]):
                    continue
                kept += 1
            lines.append(line)
        return "\r\n".join(lines)

    def __post_init__(self) -> None:
        if not 1024 <= self.port_min <= self.port_max <= 65535:
            raise PortRangeError(f"invalid media port range {self.port_min}-{self.port_max}")
        if self.public_ip is not None:
            try:
                ipaddress.ip_address(self.public_ip)
            except ValueError as exc:
                raise InvalidPublicIp(f"public_ip {self.public_ip!r}: {exc}") from exc

    def candidate_ports(self) -> Iterator[int]:
        """Random ports of the range, then a sweep of the whole range from a random point."""
        size = self.port_max - self.port_min + 1
        for _ in range(min(BIND_ATTEMPTS, size)):
            yield random.randint(self.port_min, self.port_max)
        start = random.randrange(size)
        for i in range(size):
            yield self.port_min + (start + i) % size

    def apply(self, pc: RTCPeerConnection) -> None:
        """Hook every ICE connection of `pc` that has not gathered yet; call it after adding
        transceivers (or applying a remote offer) and before creating the local description."""
        for connection in rtp_hooks.pending_ice_connections(pc):
            rtp_hooks.bind_host_candidates(
                connection, self.candidate_ports, self.public_ip, PortRangeExhausted, self.muxes
            )


def bound_ports(pc: RTCPeerConnection) -> list[int]:
    """The UDP ports `pc`'s ICE sockets are bound to."""
    return rtp_hooks.bound_ports(pc)


def ice_candidate_from_dict(candidate: dict[str, Any] | None) -> RTCIceCandidate | None:
    """A browser-style candidate (`{"candidate", "sdpMid", "sdpMLineIndex"}`) as aiortc's;
    None or an empty candidate string means end of candidates."""
    if candidate is None or not candidate.get("candidate"):
        return None
    line = str(candidate["candidate"])
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    try:
        parsed = candidate_from_sdp(line)
    except (AssertionError, ValueError, IndexError) as exc:
        raise InvalidCandidate(f"{candidate['candidate']!r}: {exc}") from exc
    parsed.sdpMid = candidate.get("sdpMid")
    parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
    if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
        parsed.sdpMLineIndex = 0
    return parsed


def accept_remote_candidate(
    policy: IcePolicy, candidate: dict[str, Any] | None, accepted: int
) -> tuple[RTCIceCandidate | None, int]:
    """A client's candidate parsed and checked against ``policy`` (``accepted``: candidates
    its connection took so far), with the count that includes it."""
    parsed = ice_candidate_from_dict(candidate)
    policy.check_candidate(parsed, accepted)
    return parsed, accepted + (parsed is not None)
