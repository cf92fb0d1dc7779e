"""Where the nodes send their traces: the stack settings and what reaches both node roles.

``rtcfleet:otlpEndpoint`` names an OTLP/HTTP receiver (a collector, Jaeger, Tempo, a vendor)
and ``rtcfleet:traceSampleRatio`` the share of new traces kept. The region stack writes both
into every node role's settings document under the keys first boot reads (``OTLP_ENDPOINT``,
``TRACE_SAMPLE_RATIO``), which it hands to the services as ``RTCFLEET_GATEWAY_OTLP_ENDPOINT``,
``RTCFLEET_MEDIA_TRACE_SAMPLE_RATIO`` and so on (docs/tracing.md). A stack accepts no URL the
services would refuse at start (``rtcfleet.tracing.TracingSettings``: http(s) with a host), and
no credentials in it, since the settings document is not secret.

Provider-free, so the reach check and the policy pack import it without the Pulumi SDKs.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any
from urllib.parse import urlsplit

# keys of both node roles' settings documents (read by rtcfleet/bundle/first_boot.py)
OTLP_ENDPOINT = "otlpEndpoint"
TRACE_SAMPLE_RATIO = "traceSampleRatio"

_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_problem(value: str) -> str | None:
    """Why ``value`` cannot be the nodes' OTLP/HTTP receiver; ``None`` when it can."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{value!r} is not a URL: {exc}"
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return f"{value!r} is not an http(s) URL of an OTLP/HTTP receiver"
    if parts.username is not None or parts.password is not None:
        # the settings document is not secret: a vendor's key goes in the units' drop-in
        return (
            "carries credentials, and the nodes' settings document is not secret: put them in "
            "the RTCFLEET_*_OTLP_HEADERS drop-in (docs/tracing.md)"
        )
    if port == 0:
        return f"{value!r}: port 0"
    if parts.query or parts.fragment:
        return f"{value!r}: no query or fragment (spans go to <url>/v1/traces)"
    return None


@dataclass(frozen=True)
class Receiver:
    """Where the nodes open connections for their spans, as the reach check sees it."""

    host: str
    port: int
    # an IPv4 literal; None when the nodes resolve a name
    address: IPv4Address | None

    @property
    def private(self) -> bool:
        return self.address is not None and self.address.is_private


def receiver(endpoint: str) -> Receiver:
    """The host and TCP port an (already validated) endpoint sends spans to."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        literal = ip_address(host)
    except ValueError:
        literal = None
    return Receiver(
        host=host,
        port=parts.port or _DEFAULT_PORTS[parts.scheme],
        address=literal if isinstance(literal, IPv4Address) else None,
    )


def trace_document(endpoint: str | None, ratio: float | None) -> dict[str, Any]:
    """The keys every node role's settings document gets; none when tracing is off."""
    if endpoint is None:
        return {}
    document: dict[str, Any] = {OTLP_ENDPOINT: endpoint}
    if ratio is not None:
        document[TRACE_SAMPLE_RATIO] = ratio
    return document
