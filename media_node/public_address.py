"""The address clients must use to reach this node, learned with STUN where the cloud hides it.

Azure's instance metadata does not show Standard public IPs, so a media node behind the VNet's
1:1 NAT asks a STUN server outside it which address its packets come from. The mapping keeps
the port, so the answer is the node's public IP for every media port.
"""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlparse

from aioice import stun


class PublicAddressError(RuntimeError):
    """No STUN server answered with an address."""


def stun_server(url: str) -> tuple[str, int]:
    """``stun:host[:port]`` → (host, port)."""
    if not url.startswith("stun:"):
        raise ValueError(f"{url!r} is not a stun: URL")
    parsed = urlparse("stun://" + url.removeprefix("stun:").split("?", 1)[0])
    if not parsed.hostname:
        raise ValueError(f"{url!r} names no host")
    return parsed.hostname, parsed.port or 3478


class _Binding(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.answers.put_nowait(data)


async def public_address(
    urls: list[str], local_ip: str | None = None, attempts: int = 3, timeout: float = 1.0
) -> str:
    """The XOR-MAPPED-ADDRESS the first answering STUN server in ``urls`` sees."""
    loop = asyncio.get_running_loop()
    for url in urls:
        host, port = stun_server(url)
        transport, protocol = await loop.create_datagram_endpoint(
            _Binding, local_addr=(local_ip or "0.0.0.0", 0), remote_addr=(host, port)
        )
        try:
            for _ in range(attempts):
                request = stun.Message(
                    message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
                )
                transport.sendto(bytes(request))
                try:
                    async with asyncio.timeout(timeout):
                        data = await protocol.answers.get()
                except TimeoutError:
                    continue
                answer = stun.parse_message(data)
                if answer.transaction_id != request.transaction_id:
                    continue
                mapped = answer.attributes.get("XOR-MAPPED-ADDRESS")
                if mapped:
                    return str(ipaddress.ip_address(mapped[0]))
        finally:
            transport.close()
    raise PublicAddressError(f"no STUN server of {urls} answered")
