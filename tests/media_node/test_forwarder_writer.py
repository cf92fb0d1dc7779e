"""The forwarder's direct header writer produces the very bytes aiortc's serializer would."""

from __future__ import annotations

import random

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters as Ext
from aiortc.rtp import HeaderExtensions, RtpPacket

from media_node.forwarder import Forwarder, OutputStream
from media_node.rtp_header import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, TOFFSET_URI

KEY = b"\x10\x00\x00\x9d\x01\x2a" + bytes(40)


def stream(ids: dict[str, int], mid: str | None, kind: str = "video") -> OutputStream:
    return OutputStream(
        kind=kind,
        ssrc=0x11223344,
        payload_type=96 if kind == "video" else 111,
        clock_rate=90000 if kind == "video" else 48000,
        mid=mid,
        header_extensions=tuple(Ext(id=i, uri=u) for u, i in ids.items()),
    )


@pytest.mark.parametrize(
    ("ids", "mid"),
    [
        ({MID_URI: 1, ABS_SEND_TIME_URI: 3}, "0"),
        ({MID_URI: 4, ABS_SEND_TIME_URI: 9, TOFFSET_URI: 14, AUDIO_LEVEL_URI: 2}, "17"),
        ({AUDIO_LEVEL_URI: 5}, None),
        ({}, "3"),
        ({MID_URI: 1}, "abcdefghijklmnop"),
    ],
)
def test_fast_path_matches_aiortc_serializer(ids: dict[str, int], mid: str | None) -> None:
    rng = random.Random(3)
    fast = Forwarder(stream(ids, mid), first_sequence_number=100, first_timestamp=5)
    assert fast.writer is not None
    slow = Forwarder(stream(ids, mid), first_sequence_number=100, first_timestamp=5)
    slow.writer = None
    for i in range(200):
        packet = RtpPacket(
            payload_type=100,
            marker=rng.random() < 0.3,
            sequence_number=(60000 + i) % 65536,
            timestamp=3000 * (i // 3),
            ssrc=7,
            payload=KEY
            if i == 0
            else bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))),
        )
        packet.csrc = [rng.randrange(1 << 32)] if rng.random() < 0.1 else []
        packet.extensions = HeaderExtensions(
            abs_send_time=rng.randrange(1 << 24) if rng.random() < 0.8 else None,
            transmission_offset=rng.randrange(-1000, 1000) if rng.random() < 0.5 else None,
            audio_level=(rng.random() < 0.5, rng.randrange(128)) if rng.random() < 0.5 else None,
            mid="99",
        )
        assert fast.forward(packet, "pub") == slow.forward(packet, "pub"), i
    assert fast.retransmit([100, 150]) == slow.retransmit([100, 150])


def test_ids_beyond_the_one_byte_form_use_aiortc() -> None:
    assert Forwarder(stream({MID_URI: 15}, "0")).writer is None
