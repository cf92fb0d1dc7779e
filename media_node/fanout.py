"""Fan-out of one published packet to every subscriber stream of its track.

The work that is the same for every subscriber is done once per incoming packet: the header's
tail (CSRCs, extension block, payload) once per distinct extension layout, the sender-report
clock once, and the send once (`DatagramBatch`: one system call per socket on Linux). What is
left per subscriber is what must differ: its sequence number and timestamp, its 12-byte fixed
header, its SRTP protection and its history entry.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Protocol

from aiortc.rtp import RtpPacket

from media_node.datagram_batch import DatagramBatch
from media_node.rtp_header import OneByteHeaderWriter
from media_node.rtp_hooks import ntp_now


class OutgoingPacket:
    """One published packet on its way to the subscribers of its track."""

    __slots__ = ("_tails", "batch", "ntp", "packet", "source")

    def __init__(self, packet: RtpPacket, source: Hashable, batch: DatagramBatch) -> None:
        self.packet = packet
        self.source = source
        self.batch = batch
        self.ntp = ntp_now()
        self._tails: dict[Hashable, tuple[int, bytes]] = {}

    def tail(self, writer: OneByteHeaderWriter) -> tuple[int, bytes]:
        """`writer.tail(packet)`, written once for all writers of the same layout."""
        tail = self._tails.get(writer.key)
        if tail is None:
            tail = self._tails[writer.key] = writer.tail(self.packet)
        return tail


class DownTrack(Protocol):
    """A subscriber stream fed by a published track."""

    def forward(self, outgoing: OutgoingPacket) -> None:
        """Rewrite, protect and queue `outgoing` for this subscriber, without suspending."""


def fan_out(
    packet: RtpPacket, source: Hashable, downtracks: Iterable[DownTrack], batch: DatagramBatch
) -> None:
    """Forward one published packet to `downtracks` and send the result."""
    outgoing = OutgoingPacket(packet, source, batch)
    for downtrack in downtracks:
        downtrack.forward(outgoing)
    batch.flush()
