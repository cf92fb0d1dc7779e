"""The one place that reaches into aiortc's and aioice's private objects (aiortc pinned at 1.16.0).

aiortc has no pass-through API: its receiver always decodes and its sender always encodes. The SFU
turns individual receivers and senders of its own peer connections into forwarding ones by swapping
their class for a subclass (`ForwardingReceiver`, `ForwardingSender`), so client peer connections in
the same process keep aiortc's normal behaviour. Everything here depends on aiortc 1.16 internals
and is covered by `tests/media_node/test_rtp_hooks.py`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

import aioice.ice
from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)

from media_node import transport_cc
from media_node.datagram_batch import Account, DatagramBatch
from media_node.settings import ICE_ADDRESSES_ENV
from media_node.udp_mux import UdpMuxes

AIORTC_VERSION = "1.16.0"

_RX = "_RTCRtpReceiver__"
_TX = "_RTCRtpSender__"
_NTP, _RTP_TS = _TX + "ntp_timestamp", _TX + "rtp_timestamp"
_OCTETS, _PACKETS = _TX + "octet_count", _TX + "packet_count"


NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp, as `aiortc.clock.current_ntp_time` gives it
    but from `time.time()` (a sender report needs the time of the last packet sent, and the
    datetime arithmetic cost more than the rest of the send)."""
    now = time.time()
    seconds = int(now)
    return ((seconds + NTP_UNIX_OFFSET) << 32) | int((now - seconds) * (1 << 32))


class RtpSink(Protocol):
    """Where a forwarding receiver hands the publisher's packets, still encoded."""

    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters, rtx: bool) -> None:
        """`rtx` is true when the packet arrived as a retransmission and was unwrapped."""


class SenderFeedback(Protocol):
    """What a forwarding sender reports from its subscriber's RTCP."""

    def on_started(self, sender: ForwardingSender) -> None: ...

    def on_keyframe_request(self) -> None: ...

    async def on_nack(self, lost: list[int]) -> None: ...


class ForwardingReceiver(RTCRtpReceiver):
    """An `RTCRtpReceiver` that keeps aiortc's RTCP (receiver reports, NACK, REMB) but never
    depayloads, buffers or decodes: it hands each packet to an `RtpSink` instead."""

    _fwd_sink: RtpSink
    _fwd_remb_cap: Callable[[], int]
    _fwd_last_estimate: int | None
    _fwd_remb_sent: list[int]
    _fwd_transport_cc: transport_cc.TransportWideFeedback | None

    async def receive(self, parameters: Any) -> None:
        if getattr(self, _RX + "started"):
            return
        codecs: dict[int, RTCRtpCodecParameters] = getattr(self, _RX + "codecs")
        rtx_ssrc: dict[int, int] = getattr(self, _RX + "rtx_ssrc")
        for codec in parameters.codecs:
            codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        self.transport._register_rtp_receiver(self, parameters)
        setattr(self, _RX + "rtcp_task", asyncio.ensure_future(self._run_rtcp()))
        setattr(self, _RX + "started", True)

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self._enabled:
            return
        feedback = self._fwd_transport_cc
        transport_seq = packet.extensions.transport_sequence_number
        if feedback is not None and transport_seq is not None:
            # the sender estimates from arrival times: REMB carries only the cap
            feedback.record(transport_seq, time.monotonic_ns() // 1000)
        elif (estimator := getattr(self, _RX + "remote_bitrate_estimator")) is not None and (
            packet.extensions.abs_send_time is not None
        ):
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if remb is not None:
                self._fwd_last_estimate = remb[0]
                await self.send_remb(remb[0], remb[1])

        codec = getattr(self, _RX + "codecs").get(packet.payload_type)
        if codec is None:
            return
        streams = getattr(self, _RX + "remote_streams")
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        streams[packet.ssrc].add(packet)

        retransmitted = False
        if is_rtx(codec):
            original_ssrc = getattr(self, _RX + "rtx_ssrc").get(packet.ssrc)
            apt = codec.parameters.get("apt")
            codecs = getattr(self, _RX + "codecs")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = codecs[apt]
            retransmitted = True

        nack_generator = getattr(self, _RX + "nack_generator")
        if nack_generator is not None and nack_generator.add(packet):
            await self._send_rtcp_nack(packet.ssrc, sorted(nack_generator.missing))

        await self._fwd_sink.on_rtp(packet, codec, retransmitted)

    async def send_remb(self, estimate: int, ssrcs: list[int]) -> None:
        """Send REMB feedback, never above the SFU's cap: aiortc and browsers encode at most
        at the REMB they receive."""
        rtcp_ssrc = getattr(self, _RX + "rtcp_ssrc")
        if rtcp_ssrc is None or not ssrcs:
            return
        bitrate = min(estimate, self._fwd_remb_cap())
        self._fwd_remb_sent.append(bitrate)
        del self._fwd_remb_sent[:-64]
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
        )
        await self._send_rtcp(packet)

    async def send_pli(self, media_ssrc: int) -> None:
        await self._send_rtcp_pli(media_ssrc)

    async def send_transport_feedback(self, media_ssrc: int) -> int:
        """Send the transport-wide feedback collected since the last call; returns how many
        RTCP packets that took (none before the receiver has started)."""
        feedback = self._fwd_transport_cc
        rtcp_ssrc = getattr(self, _RX + "rtcp_ssrc")
        if feedback is None or rtcp_ssrc is None:
            return 0
        packets = feedback.build(rtcp_ssrc, media_ssrc)
        for data in packets:
            try:
                await self.transport._send_rtp(data)
            except ConnectionError:
                break
        return len(packets)

    @property
    def transport_cc(self) -> transport_cc.TransportWideFeedback | None:
        return self._fwd_transport_cc

    @property
    def last_estimate(self) -> int | None:
        return self._fwd_last_estimate

    @property
    def remb_sent(self) -> list[int]:
        """The last REMB values sent, newest last."""
        return list(self._fwd_remb_sent)

    @property
    def decoder_started(self) -> bool:
        return getattr(self, _RX + "decoder_thread") is not None

    @property
    def queued_frames(self) -> int:
        track = self._track
        return track._queue.qsize() if track is not None else 0


class ForwardingSender(RTCRtpSender):
    """An `RTCRtpSender` that sends already-encoded RTP given to it and never reads a track or
    creates an encoder; it keeps aiortc's sender reports and routes its subscriber's NACK and
    PLI/FIR to a `SenderFeedback`."""

    _fwd_feedback: SenderFeedback
    _fwd_parameters: Any
    _fwd_pending: list[asyncio.Future[None]]
    _fwd_route: SendRoute | None

    async def send(self, parameters: Any) -> None:
        if getattr(self, _TX + "started"):
            return
        setattr(self, _TX + "cname", parameters.rtcp.cname)
        setattr(self, _TX + "mid", parameters.muxId)
        self.transport._register_rtp_sender(self, parameters)
        self._fwd_parameters = parameters
        setattr(self, _TX + "rtcp_task", asyncio.ensure_future(self._run_rtcp()))
        setattr(self, _TX + "started", True)
        self._fwd_feedback.on_started(self)

    async def stop(self) -> None:
        if not getattr(self, _TX + "started"):
            return
        self.transport._unregister_rtp_sender(self)
        await getattr(self, _TX + "rtcp_started").wait()
        getattr(self, _TX + "rtcp_task").cancel()
        await getattr(self, _TX + "rtcp_exited").wait()

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            await super()._handle_rtcp_packet(packet)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            await self._fwd_feedback.on_nack(list(packet.lost))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_FIR, RTCP_PSFB_PLI):
            self._fwd_feedback.on_keyframe_request()

    async def send_rtp(self, data: bytes, timestamp: int, payload_size: int) -> None:
        """Send one serialized RTP packet and account for it in the sender reports."""
        self.send_rtp_now(data, timestamp, payload_size)

    def send_rtp_now(self, data: bytes, timestamp: int, payload_size: int) -> bool:
        """`send_rtp` without suspending; False when not connected."""
        if not self.send_now(data):
            return False
        state = self.__dict__
        state[_NTP] = ntp_now()
        state[_RTP_TS] = timestamp
        state[_OCTETS] += payload_size
        state[_PACKETS] += 1
        return True

    async def resend_rtp(self, data: bytes) -> None:
        """Send a retransmission, which sender reports do not count."""
        self.send_now(data)

    def queue_rtp(
        self,
        data: bytes,
        timestamp: int,
        payload_size: int,
        batch: DatagramBatch,
        ntp: int,
        account: Account,
    ) -> bool:
        """Protect one serialized RTP packet and queue it in `batch` (the fan-out's path: the
        batch's one send replaces a `sendto` per subscriber); False when not connected. A TCP
        or relayed pair sends through aioice at once."""
        state = self.__dict__
        dtls = state[_TX + "transport"]
        route = self._fwd_route
        if route is None or route.dtls is not dtls:
            route = self._fwd_route = SendRoute(dtls)
        pair = route.nominated.get(1)
        if dtls._state is not DtlsState.CONNECTED or pair is None:
            return False
        if pair is not route.pair or dtls._tx_srtp is not route.srtp:
            route.follow(pair, dtls._tx_srtp)
        protected = route.protect(data)
        transport = route.transport
        if transport is not None:
            if transport.is_closing():  # its descriptor may soon belong to another socket
                return False
            batch.add(transport, route.fd, protected, route.address, account)
        else:
            self._send_aioice(pair, protected)
            account(len(protected), 1)
        state[_NTP] = ntp
        state[_RTP_TS] = timestamp
        state[_OCTETS] += payload_size
        state[_PACKETS] += 1
        dtls._RTCDtlsTransport__tx_bytes += len(protected)
        dtls._RTCDtlsTransport__tx_packets += 1
        return True

    def _send_aioice(self, pair: Any, protected: bytes) -> None:
        self._fwd_pending.append(
            asyncio.ensure_future(pair.protocol.send_data(protected, pair.remote_addr))
        )
        del self._fwd_pending[:-64]

    def send_now(self, data: bytes) -> bool:
        """Encrypt and send on the nominated ICE pair at once: the per-packet hot path, without
        aiortc's and aioice's four awaits per packet. False when not connected."""
        dtls: Any = self.transport
        pair = dtls.transport._connection._nominated.get(1)
        if dtls._state is not DtlsState.CONNECTED or pair is None:
            return False
        protected = dtls._tx_srtp.protect(data)
        protocol = pair.protocol
        if isinstance(protocol, StunProtocol):  # UDP, on its own socket or the shared one
            protocol.transport.sendto(protected, pair.remote_addr)
        else:  # a TCP or relayed pair: aioice's own (awaitable) send, in order
            self._send_aioice(pair, protected)
        dtls._RTCDtlsTransport__tx_bytes += len(protected)
        dtls._RTCDtlsTransport__tx_packets += 1
        return True

    @property
    def parameters(self) -> Any:
        return self._fwd_parameters

    @property
    def encoder_created(self) -> bool:
        return getattr(self, _TX + "encoder") is not None


def make_forwarding_receiver(
    receiver: RTCRtpReceiver, sink: RtpSink, remb_cap: Callable[[], int]
) -> ForwardingReceiver:
    """Turn a receiver that has not started yet into a `ForwardingReceiver`."""
    if getattr(receiver, _RX + "started"):
        raise RuntimeError("receiver already started")
    receiver.__class__ = ForwardingReceiver
    forwarding = cast(ForwardingReceiver, receiver)
    forwarding._fwd_sink = sink
    forwarding._fwd_remb_cap = remb_cap
    forwarding._fwd_last_estimate = None
    forwarding._fwd_remb_sent = []
    forwarding._fwd_transport_cc = None
    return forwarding


def offered_transport_cc_id(headers: Iterable[RTCRtpHeaderExtensionParameters]) -> int | None:
    """The id an offer gave the transport-wide sequence number extension, if it offered it."""
    return next((h.id for h in headers if h.uri == transport_cc.URI), None)


def accept_transport_cc(
    transceiver: Any,
    extension_id: int,
    receiver: ForwardingReceiver,
    feedback: transport_cc.TransportWideFeedback,
) -> None:
    """Answer the offered transport-wide congestion control, which aiortc does not implement:
    add the header extension and the `transport-cc` feedback to the transceiver's negotiated
    parameters (between setRemoteDescription and createAnswer), and have the receiver record
    arrival times into `feedback`, shared by every receiver of the connection."""
    extensions: list[RTCRtpHeaderExtensionParameters] = transceiver._headerExtensions
    if not any(e.uri == transport_cc.URI for e in extensions):
        extensions.append(RTCRtpHeaderExtensionParameters(id=extension_id, uri=transport_cc.URI))
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    for codec in codecs:
        if not is_rtx(codec) and RTCRtcpFeedback(type="transport-cc") not in codec.rtcpFeedback:
            codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))
    receiver._fwd_transport_cc = feedback


def make_forwarding_sender(sender: RTCRtpSender, feedback: SenderFeedback) -> ForwardingSender:
    """Turn a sender that has not started yet into a `ForwardingSender`."""
    if getattr(sender, _TX + "started"):
        raise RuntimeError("sender already started")
    sender.__class__ = ForwardingSender
    forwarding = cast(ForwardingSender, sender)
    forwarding._fwd_feedback = feedback
    forwarding._fwd_parameters = None
    forwarding._fwd_pending = []
    forwarding._fwd_route = None
    return forwarding


class SendRoute:
    """Where a forwarding sender's packets go, looked up once per nominated pair and SRTP
    session instead of through aiortc's and aioice's properties for every packet."""

    __slots__ = ("address", "dtls", "fd", "nominated", "pair", "protect", "srtp", "transport")

    def __init__(self, dtls: Any) -> None:
        self.dtls = dtls
        # aioice keeps one dict of nominated pairs per connection, updated in place
        self.nominated: dict[int, Any] = dtls.transport._connection._nominated
        self.pair: Any = None
        self.srtp: Any = None
        self.protect: Callable[[bytes], bytes] = bytes
        self.transport: asyncio.DatagramTransport | None = None
        self.fd = -1
        self.address: tuple[str, int] = ("", 0)

    def follow(self, pair: Any, srtp: Any) -> None:
        """Send on `pair` (UDP: its socket, through the batch; TCP or relayed: no transport),
        protected by `srtp`."""
        self.pair, self.srtp, self.protect = pair, srtp, srtp.protect
        self.address = pair.remote_addr
        self.transport, self.fd = None, -1
        protocol = pair.protocol
        if isinstance(protocol, StunProtocol):
            transport = protocol.transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                self.transport, self.fd = transport, sock.fileno()


def set_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Choose the `a=msid` aiortc writes for the sender's m-line in the next offer."""
    sender._stream_id = stream_id
    sender._track_id = track_id


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The (media, RTX) SSRCs aiortc announces for the sender."""
    return int(sender._ssrc), int(sender._rtx_ssrc)


def next_rtx_sequence_number(sender: RTCRtpSender) -> int:
    """Take the sender's next RTX sequence number, so RTX stays one contiguous stream."""
    seq = int(getattr(sender, _TX + "rtx_sequence_number"))
    setattr(sender, _TX + "rtx_sequence_number", (seq + 1) & 0xFFFF)
    return seq


def set_transceiver_codecs(transceiver: Any, codecs: list[RTCRtpCodecParameters]) -> None:
    """Replace the codecs a transceiver negotiated (used to narrow an answer)."""
    transceiver._codecs = codecs


def encoder_target_bitrate(sender: RTCRtpSender) -> int | None:
    """The target bitrate of an ordinary aiortc sender's encoder, if it has one yet."""
    encoder = getattr(sender, _TX + "encoder")
    return getattr(encoder, "target_bitrate", None) if encoder is not None else None


def watch_remb(sender: RTCRtpSender, on_remb: Callable[[int], None]) -> None:
    """Report every REMB value an ordinary aiortc sender receives for its SSRC."""
    original = sender._handle_rtcp_packet

    async def handle(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if sender._ssrc in ssrcs:
                    on_remb(bitrate)
        await original(packet)

    setattr(sender, "_handle_rtcp_packet", handle)  # noqa: B010


def watch_rtcp(sender: RTCRtpSender, on_rtcp: Callable[[AnyRtcpPacket], None]) -> None:
    """Report every RTCP packet routed to an ordinary aiortc sender (PLI, NACK, RR...)."""
    original = sender._handle_rtcp_packet

    async def handle(packet: AnyRtcpPacket) -> None:
        on_rtcp(packet)
        await original(packet)

    setattr(sender, "_handle_rtcp_packet", handle)  # noqa: B010


def watch_sent_rtp(sender: RTCRtpSender, on_packet: Callable[[RtpPacket], None]) -> None:
    """Report every RTP packet (before encryption) an ordinary aiortc sender sends on its SSRC."""
    transport = sender.transport
    original = transport._send_rtp

    async def send(data: bytes) -> None:
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            if packet.ssrc == sender._ssrc:
                on_packet(packet)
        await original(data)

    setattr(transport, "_send_rtp", send)  # noqa: B010


def watch_received_rtp(receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], None]) -> None:
    """Report every media (non-RTX) RTP packet an ordinary aiortc receiver gets."""
    original = receiver._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = getattr(receiver, _RX + "codecs").get(packet.payload_type)
        if codec is not None and not is_rtx(codec):
            on_packet(packet)
        await original(packet, arrival_time_ms)

    setattr(receiver, "_handle_rtp_packet", handle)  # noqa: B010


DatagramHandler = Callable[[bytes, Any], None]


def tap_datagrams(pc: RTCPeerConnection, tap: Callable[[DatagramHandler], DatagramHandler]) -> int:
    """Put `tap(original)` in front of the datagram handler of every UDP socket of `pc`'s ICE
    connections (after gathering), before aioice, DTLS and SRTP see a datagram; each socket is
    tapped once. Returns how many were tapped now."""
    tapped = 0
    for transceiver in pc.getTransceivers():
        for protocol in transceiver.receiver.transport.transport.iceGatherer._connection._protocols:
            if isinstance(protocol, StunProtocol) and not getattr(protocol, "_fwd_tapped", False):
                setattr(protocol, "datagram_received", tap(protocol.datagram_received))  # noqa: B010
                setattr(protocol, "_fwd_tapped", True)  # noqa: B010
                tapped += 1
    return tapped


def receiver_srtp(receiver: RTCRtpReceiver) -> Any:
    """The receiving SRTP session (pylibsrtp) of a receiver's DTLS transport, once connected."""
    return receiver.transport._rx_srtp


def receiver_statistics(receiver: RTCRtpReceiver) -> dict[int, StreamStatistics]:
    """The per-SSRC statistics a receiver's receiver reports are written from."""
    return cast(dict[int, StreamStatistics], getattr(receiver, _RX + "remote_streams"))


def receiver_nack_generator(receiver: RTCRtpReceiver) -> Any:
    """The receiver's NACK generator (None when NACK was not negotiated)."""
    return getattr(receiver, _RX + "nack_generator")


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    """Send a generic NACK for `lost` sequence numbers of `media_ssrc`, as aiortc does."""
    await receiver._send_rtcp_nack(media_ssrc, lost)


async def handle_plain_rtp(receiver: RTCRtpReceiver, data: bytes, arrival_time_ms: int) -> None:
    """Hand an already unprotected RTP packet to the receiver's DTLS transport's RTP path."""
    await receiver.transport._handle_rtp_data(data, arrival_time_ms)


def pending_ice_connections(pc: RTCPeerConnection) -> list[Connection]:
    """The aioice connections of `pc` that have not gathered candidates yet."""
    connections: list[Connection] = []
    for transceiver in pc.getTransceivers():
        gatherer = transceiver.receiver.transport.transport.iceGatherer
        if gatherer.state == "new" and gatherer._connection not in connections:
            connections.append(gatherer._connection)
    return connections


PortPicker = Callable[[], Iterable[int]]


def bind_host_candidates(
    connection: Connection,
    ports: PortPicker,
    public_ip: str | None,
    on_bind_failure: Callable[[str], Exception],
    muxes: UdpMuxes | None = None,
) -> None:
    """Make `connection` gather host candidates on ports taken from `ports()` instead of
    ephemeral ones (aioice 0.13 binds port 0 and has no port range), and advertise `public_ip`
    as a server-reflexive candidate on the same port (1:1 NAT). With `muxes`, the host
    candidates are the worker's shared sockets (`media_node.udp_mux`) instead of sockets of
    the connection's own, and the connection gets a ufrag no other connection on them has."""
    if muxes is not None:
        connection._local_username = muxes.unique_ufrag()

    async def get_component_candidates(
        component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        candidates: list[Candidate] = []
        for address in addresses:
            protocol: StunProtocol | None
            if muxes is None:
                protocol = await _bind_in_range(loop, connection, address, ports, on_bind_failure)
            else:
                mux = await muxes.get(address, ports, on_bind_failure)
                protocol = mux.attach(connection) if mux is not None else None
            if protocol is None:
                continue
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            connection._protocols.append(protocol)
            if public_ip is not None and _same_family(public_ip, host):
                candidates.append(
                    Candidate(
                        foundation=candidate_foundation("srflx", "udp", host),
                        component=component,
                        transport="udp",
                        priority=candidate_priority(component, "srflx"),
                        host=public_ip,
                        port=port,
                        type="srflx",
                        related_address=host,
                        related_port=port,
                    )
                )
        return candidates

    setattr(connection, "get_component_candidates", get_component_candidates)  # noqa: B010


def host_addresses(connection: Connection) -> list[str]:
    # looked up at call time: restrict_host_addresses may have replaced it
    return list(aioice.ice.get_host_addresses(connection._use_ipv4, connection._use_ipv6))


# ---- which local addresses ICE gathers host candidates on (process-wide) -----------------------
#
# aioice gathers on every interface except loopback. A media node should offer only its media
# interface (behind 1:1 NAT, the private address the public IP maps to), and the local fleet and
# the tests must keep all media on 127.0.0.1: aioice's module-level address lookup is replaced
# for the whole process, its own peer connections and any other.

_aioice_host_addresses = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: list[str] | None) -> None:
    """Gather host candidates only on ``addresses``; ``None`` restores aioice's default."""
    if not addresses:
        aioice.ice.get_host_addresses = _aioice_host_addresses
        return
    parsed = [ipaddress.ip_address(address) for address in addresses]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            str(ip)
            for ip in parsed
            if (ip.version == 4 and use_ipv4) or (ip.version == 6 and use_ipv6)
        ]

    aioice.ice.get_host_addresses = get_host_addresses


def restrict_host_addresses_from_environment() -> None:
    """``restrict_host_addresses`` with ``RTCFLEET_ICE_ADDRESSES``, when it is set."""
    value = os.environ.get(ICE_ADDRESSES_ENV, "").strip()
    if value:
        restrict_host_addresses([part.strip() for part in value.split(",") if part.strip()])


def bound_ports(pc: RTCPeerConnection) -> list[int]:
    """The local UDP ports every ICE socket of `pc` is bound to."""
    ports: set[int] = set()
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None and transport.get_extra_info("sockname"):
                ports.add(transport.get_extra_info("sockname")[1])
    return sorted(ports)


def set_receive_buffer(pc: RTCPeerConnection, size: int) -> int:
    """Set SO_RCVBUF on every ICE socket of `pc` (a process that hosts many connections can
    be descheduled for longer than the default buffer lasts); returns how many were set."""
    count = 0
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            transport = getattr(protocol, "transport", None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                count += 1
    return count


async def _bind_in_range(
    loop: asyncio.AbstractEventLoop,
    connection: Connection,
    address: str,
    ports: PortPicker,
    on_bind_failure: Callable[[str], Exception],
) -> StunProtocol | None:
    last_error: OSError | None = None
    for port in ports():
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: StunProtocol(connection), local_addr=(address, port)
            )
        except OSError as exc:
            last_error = exc
            if exc.errno in (socket.EAI_NONAME, 99):  # address not available: skip address
                return None
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        return protocol
    raise on_bind_failure(f"no free UDP port for {address}: {last_error}")


def _same_family(a: str, b: str) -> bool:
    return (":" in a) == (":" in b)


def route_rtx_by_ssrc(pc: RTCPeerConnection) -> None:
    """Have `pc`'s transports route each receiver's RTX SSRC (from `a=ssrc-group:FID`) to it.

    aiortc 1.16 registers only a receiver's media SSRC with its transport's RTP router, so an
    RTX packet is routed by payload type alone, which works only while one receiver has that
    payload type: on a bundled connection receiving two videos every retransmission is
    discarded, a lost packet is never recovered and the jitter buffer holds the stream until
    it overflows (512 packets: half a minute of a low-rate video). Call after each
    setRemoteDescription; the receivers register when the connection starts them."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is None or "_register_rtp_receiver" in vars(transport):
            continue
        original = transport._register_rtp_receiver
        table: dict[int, Any] = transport._rtp_router.ssrc_table

        def register(
            receiver: Any, parameters: Any, original: Any = original, table: Any = table
        ) -> None:
            original(receiver, parameters)
            for encoding in parameters.encodings:
                if encoding.rtx is not None:
                    table[encoding.rtx.ssrc] = receiver

        setattr(transport, "_register_rtp_receiver", register)  # noqa: B010


async def repeat_nacks(receiver: RTCRtpReceiver, still_missing: set[int]) -> set[int]:
    """Send a NACK again for the packets that were already missing at the previous call and
    still are; returns what is missing now (pass it to the next call).

    aiortc's receiver sends a NACK only when a new gap opens, so a lost NACK or a lost
    retransmission waits for the next gap (about 20 packets away at 5 % loss: over a second
    of a low-rate video). Called every round trip or so, this repeats the request as
    libwebrtc's receiver does."""
    generator = getattr(receiver, _RX + "nack_generator", None)
    if generator is None or not getattr(receiver, _RX + "started"):
        return set()
    missing = set(generator.missing)
    again = sorted(missing & still_missing)
    rtx: dict[int, int] = getattr(receiver, _RX + "rtx_ssrc")
    media = [s for s in getattr(receiver, _RX + "remote_streams") if s not in rtx]
    if again and media:
        await receiver._send_rtcp_nack(media[0], again)
    return missing


def ice_protocols(pc: RTCPeerConnection) -> list[StunProtocol]:
    """The UDP protocols (one per local candidate socket) of every ICE connection of `pc`."""
    protocols: list[StunProtocol] = []
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        protocols += [p for p in connection._protocols if p not in protocols]
    return protocols
