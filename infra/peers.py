"""How a region's gateways know the environment's other regions: names, lookup URLs, redirects.

Before a gateway places a new room it asks every other region whether the room is live there
(``gateway_node/room_placement.py``), over the private network to that region's media-signaling
load balancer (the ``room-lookup`` flow of ``infra.flows``); the room's home region, derived
from its name over the set of regions, arbitrates (``gateway_node/room_home.py``). So each
region's gateways need, for every other region:

- its name (``peerRegions`` keys): from ``rtcfleet:peerStacks`` alone, known before any stack
  deploys, so every region hashes rooms over the same set from its first ``pulumi up``;
- its lookup URL (``peerRegions`` values): the other stack's ``roomLookupUrl`` output;
- its client signaling URL (``peerSignalUrls``): the other stack's ``signalingUrl`` output,
  where a client is sent when that region must decide about its room and cannot be asked.

Both URLs are read through stack references. A region stack deploys whether or not its peers
have: a peer stack that exists (``pulumi stack init``) but has no outputs yet gives no URL,
and this region's gateways treat it as unreachable until the next ``pulumi up`` here. Peer
references are not deploy-order edges (``infra.stack_order``): they point both ways.

Provider-free, so settings validation and first boot's tests import it without the SDKs.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from infra.spec import CLIENT_SIGNALING_PORT

# keys of the gateway's settings document (read by rtcfleet/bundle/first_boot.py)
PEER_REGIONS = "peerRegions"
PEER_SIGNAL_URLS = "peerSignalUrls"
PUBLIC_URL = "publicUrl"
SIGNAL_PATH = "/v1/signal"
MAX_PEERS = 15


def room_lookup_url(host: str) -> str:
    """Where other regions' gateways ask this region about a room (its media-signaling LB)."""
    return f"http://{host}:{CLIENT_SIGNALING_PORT}"


def peer_region(stack: str) -> str:
    """The region a peer stack ``<env>-<cloud>-<region>`` deploys, as its gateways name it."""
    return stack.split("-", 2)[2]


def peer_stack_problems(stack: str, peers: Sequence[str]) -> list[str]:
    """Why ``peers`` cannot be the other region stacks of ``stack``'s environment."""
    env = stack.split("-", 1)[0]
    problems = []
    if len(peers) > MAX_PEERS:
        problems.append(f"{len(peers)} stacks: at most {MAX_PEERS}")
    seen: set[str] = set()
    for peer in peers:
        parts = peer.split("-", 2)
        if len(parts) != 3 or parts[1] not in ("aws", "azure") or not parts[2]:
            problems.append(f"{peer!r} is not a region stack name <env>-<cloud>-<region>")
        elif parts[0] != env:
            problems.append(f"{peer} is not a stack of environment {env!r}")
        elif peer == stack:
            problems.append(f"{peer} is this stack")
        elif peer_region(peer) == peer_region(stack) or peer_region(peer) in seen:
            problems.append(f"{peer}: region {peer_region(peer)} is listed twice")
        seen.add(peer_region(peer) if len(parts) == 3 else peer)
    return problems


def signaling_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be a region's client signaling URL; ``None`` when it can."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError as exc:
        return f"{value!r} is not a URL: {exc}"
    if parts.scheme != "wss" or not parts.hostname:
        return f"{value!r}: clients signal over TLS, so a wss:// URL with a host"
    if parts.username is not None or parts.query or parts.fragment:
        return f"{value!r}: no credentials, query or fragment"
    if parts.path != SIGNAL_PATH:
        return f"{value!r}: the gateways' signaling path is {SIGNAL_PATH}"
    return None
