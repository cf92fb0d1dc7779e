"""One UDP port for every ICE connection of a worker (mediasoup's WebRtcServer, LiveKit's UDP mux).

Without it aioice binds a socket per connection, so one published packet costs a system call
per subscriber even in a batch (`DatagramBatch` groups by socket). On a shared socket the batch
sends a packet to all of a worker's subscribers with one ``sendmmsg``.

Each connection still has its own aioice `StunProtocol` and sees only its own datagrams: the
mux hands a datagram to the connection its remote address belongs to. An address comes to
belong to a connection only from the remote side: a binding request that names the connection's
ufrag (``USERNAME`` is ``local_ufrag:remote_ufrag``, which only the connection's own client has
from signaling; a client behind a NAT or a TURN relay arrives this way) or a success response to
one of the connection's own checks (routed by transaction id). Sending a check claims nothing,
so a client naming another client's address as its candidate cannot take its media. An address
held by a live connection is never taken over, and a closed connection gives its addresses
back. Datagrams from an address no connection holds are counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from aioice import stun
from aioice.ice import Connection, StunProtocol
from aioice.utils import random_string

log = logging.getLogger("rtcfleet.media.udp_mux")

Address = tuple[str, int]
# a shared socket carries every subscriber's share of a fan-out at once (500 x 1.2 kB)
SOCKET_BUFFER = 4 * 1024 * 1024
# long enough that ufrags drawn at random never collide among a worker's connections
UFRAG_LENGTH = 16
# datagrams read per readiness of the shared socket, and the largest one read
READ_BURST = 64
RECEIVE_SIZE = 65535
_BINDING_REQUEST = b"\x00\x01"
_BINDING_SUCCESS = b"\x01\x01"
_BINDING_ERROR = b"\x01\x11"


class MuxedTransport(asyncio.DatagramTransport):
    """One connection's view of the shared socket: it sends on it and closes only itself."""

    def __init__(self, mux: UdpMux, protocol: MuxedProtocol) -> None:
        super().__init__()
        self._mux = mux
        self._protocol = protocol
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not self._closing:
            self._mux.transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._mux.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._mux.transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._mux.release(self._protocol)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class MuxedProtocol(StunProtocol):
    """aioice's protocol for one connection on the shared socket."""

    def __init__(self, connection: Connection, mux: UdpMux) -> None:
        super().__init__(connection)
        self.mux = mux
        self.addresses: set[Address] = set()

    async def request(
        self,
        request: stun.Message,
        addr: Address,
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[stun.Message, Address]:
        self.mux.transactions[request.transaction_id] = self
        try:
            return await super().request(request, addr, integrity_key, retransmissions)
        finally:
            self.mux.transactions.pop(request.transaction_id, None)


class SharedSocket(asyncio.DatagramTransport):
    """The shared UDP socket, read in bursts.

    asyncio's datagram transport reads one datagram per turn of the loop and socket, which is
    enough for a socket per connection but not for one socket that carries every connection's
    media, RTCP and STUN: a worker busy fanning out would read its publishers' packets and its
    clients' consent checks one per turn, and fall behind. Here each readiness reads what the
    socket holds, up to `READ_BURST`. A send the kernel refuses is dropped, as the network
    would drop it."""

    def __init__(self, sock: socket.socket, mux: UdpMux) -> None:
        super().__init__()
        self._sock = sock
        self._mux = mux
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self.refused = 0
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom, received = self._sock.recvfrom, self._mux.datagram_received
        for _ in range(READ_BURST):
            try:
                data, addr = recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier send
                self._mux.error_received(exc)
                continue
            received(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        try:
            self._sock.sendto(data, addr)
        except OSError:
            self.refused += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def abort(self) -> None:
        self.close()


class UdpMux:
    """The shared socket of one local address and the table that routes its datagrams."""

    def __init__(self, sock: socket.socket) -> None:
        self.by_address: dict[Address, MuxedProtocol] = {}
        self.by_ufrag: dict[str, MuxedProtocol] = {}
        # STUN transaction id -> the connection whose check it is
        self.transactions: dict[bytes, MuxedProtocol] = {}
        self.unrouted = 0
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self.transport = SharedSocket(sock, self)

    @classmethod
    def bind(cls, address: str, port: int) -> UdpMux:
        """A shared socket bound to (`address`, `port`), in the running loop."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((address, port))
            return cls(sock)
        except BaseException:
            sock.close()
            raise

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        address = (addr[0], addr[1])
        head = data[:2]
        if head == _BINDING_REQUEST:
            protocol = self._by_username(data)
            if protocol is not None:
                self.claim(address, protocol)
        elif head in (_BINDING_SUCCESS, _BINDING_ERROR):
            protocol = self.transactions.get(data[8:20])
            if protocol is not None and head == _BINDING_SUCCESS:
                self.claim(address, protocol)
        else:
            protocol = self.by_address.get(address)
        if protocol is None:
            self.unrouted += 1
            return
        protocol.datagram_received(data, address)

    def _by_username(self, data: bytes) -> MuxedProtocol | None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return None
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            return None
        return self.by_ufrag.get(username.partition(":")[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("shared UDP socket: %s", exc)

    def attach(self, connection: Connection) -> MuxedProtocol:
        """A protocol for `connection` on this socket, found by its local ufrag."""
        protocol = MuxedProtocol(connection, self)
        ufrag = connection.local_username
        if ufrag in self.by_ufrag:
            raise ValueError(f"ICE ufrag {ufrag!r} is already in use on this socket")
        self.by_ufrag[ufrag] = protocol
        protocol.connection_made(MuxedTransport(self, protocol))
        return protocol

    def claim(self, address: Address, protocol: MuxedProtocol) -> None:
        """`address` belongs to `protocol`, unless a live connection holds it already."""
        if address not in self.by_address:
            self.by_address[address] = protocol
            protocol.addresses.add(address)

    def release(self, protocol: MuxedProtocol) -> None:
        for address in protocol.addresses:
            if self.by_address.get(address) is protocol:
                del self.by_address[address]
        protocol.addresses.clear()
        ufrag = protocol.receiver.local_username
        if self.by_ufrag.get(ufrag) is protocol:
            del self.by_ufrag[ufrag]


class UdpMuxes:
    """A worker's shared sockets, one per local address, bound on first use inside the port
    range and closed with the SFU."""

    def __init__(self) -> None:
        self._muxes: dict[str, UdpMux] = {}
        self._binding: dict[str, asyncio.Lock] = {}

    async def get(
        self,
        address: str,
        ports: Callable[[], Iterable[int]],
        on_bind_failure: Callable[[str], Exception],
    ) -> UdpMux | None:
        """The shared socket for `address`; None when the address is not available."""
        mux = self._muxes.get(address)
        if mux is not None and not mux.transport.is_closing():
            return mux
        lock = self._binding.setdefault(address, asyncio.Lock())
        async with lock:
            mux = self._muxes.get(address)
            if mux is not None and not mux.transport.is_closing():
                return mux
            last_error: OSError | None = None
            for port in ports():
                try:
                    mux = UdpMux.bind(address, port)
                except OSError as exc:
                    last_error = exc
                    if exc.errno in (socket.EAI_NONAME, 99):  # address not available
                        return None
                    continue
                self._muxes[address] = mux
                return mux
            raise on_bind_failure(f"no free UDP port for {address}: {last_error}")

    def peek(self, address: str) -> UdpMux | None:
        return self._muxes.get(address)

    def unique_ufrag(self) -> str:
        """A ufrag no connection on any of these sockets has."""
        while True:
            ufrag = random_string(UFRAG_LENGTH)
            if all(ufrag not in mux.by_ufrag for mux in self._muxes.values()):
                return ufrag

    def close(self) -> None:
        for mux in self._muxes.values():
            mux.transport.close()
        self._muxes.clear()
