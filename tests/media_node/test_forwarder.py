"""The per-subscriber rewrite, with crafted RTP and RTCP packets."""

from __future__ import annotations

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from media_node.forwarder import Forwarder, OutputStream
from media_node.sequence import SequenceRewriter
from media_node.vp8 import keyframe_start as vp8_keyframe_start

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

KEY = bytes([0x90, 0x80, 0x05, 0x10]) + b"key-frame-data"  # X,S; I: picture id 5; P=0
DELTA = bytes([0x90, 0x80, 0x06, 0x11]) + b"delta-frame"  # P=1
CONT = bytes([0x80, 0x80, 0x06]) + b"continuation"  # S=0


def ext_map(*pairs: tuple[int, str]) -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in pairs]
        )
    )
    return m


def video_stream(**kw) -> OutputStream:
    base = dict(
        kind="video",
        ssrc=0x1111,
        payload_type=100,
        clock_rate=90000,
        mid="7",
        header_extensions=(
            RTCRtpHeaderExtensionParameters(id=4, uri=MID),
            RTCRtpHeaderExtensionParameters(id=9, uri=ABS),
        ),
        rtx_payload_type=101,
        rtx_ssrc=0x2222,
    )
    base.update(kw)
    return OutputStream(**base)  # type: ignore[arg-type]


def rtp(seq: int, ts: int, payload: bytes = DELTA, ssrc: int = 0xABCD, pt: int = 96) -> RtpPacket:
    return RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload)


def test_vp8_keyframe_detection() -> None:
    assert vp8_keyframe_start(KEY)
    assert not vp8_keyframe_start(DELTA)
    assert not vp8_keyframe_start(CONT)
    assert vp8_keyframe_start(bytes([0x10, 0x00]))  # no extension, key frame
    assert vp8_keyframe_start(
        bytes([0x90, 0xE0, 0x80, 0x05, 0x01, 0x20, 0x00])
    )  # 15-bit pid, L, T/K
    assert not vp8_keyframe_start(b"")


def test_rewrites_ssrc_payload_type_and_starts_at_a_keyframe() -> None:
    fwd = Forwarder(video_stream(), first_sequence_number=500, first_timestamp=1000)
    assert fwd.forward(rtp(10, 90000, DELTA), "pub") is None  # waits for a keyframe
    data = fwd.forward(rtp(11, 93000, KEY), "pub")
    assert data is not None
    out = RtpPacket.parse(data)
    assert (out.ssrc, out.payload_type, out.sequence_number, out.timestamp) == (
        0x1111,
        100,
        500,
        1000,
    )
    assert out.payload == KEY
    out = RtpPacket.parse(fwd.forward(rtp(12, 93000, CONT), "pub"))  # type: ignore[arg-type]
    assert (out.sequence_number, out.timestamp) == (501, 1000)
    assert fwd.stats.dropped_waiting_keyframe == 1


def test_header_extension_ids_are_mapped_by_uri_and_unknown_ones_dropped() -> None:
    publisher_map = ext_map((1, MID), (3, ABS), (5, TWCC))
    packet = rtp(1, 0, KEY)
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x123456
    packet.extensions.transport_sequence_number = 77
    wire = packet.serialize(publisher_map)
    seen_by_sfu = RtpPacket.parse(wire, publisher_map)

    fwd = Forwarder(video_stream())
    data = fwd.forward(seen_by_sfu, "pub")
    assert data is not None

    from aiortc.rtp import unpack_header_extensions

    profile = int.from_bytes(data[12 + 0 : 12 + 2], "big")
    length = int.from_bytes(data[14:16], "big") * 4
    raw = dict(unpack_header_extensions(profile, data[16 : 16 + length]))
    assert set(raw) == {4, 9}  # the subscriber's ids; transport-cc (5) dropped
    assert raw[4] == b"7"  # the subscriber's MID
    assert int.from_bytes(raw[9], "big") == 0x123456
    parsed = RtpPacket.parse(data, ext_map((4, MID), (9, ABS)))
    assert parsed.extensions.abs_send_time == 0x123456 and parsed.extensions.mid == "7"


def test_nack_is_answered_from_history_as_rtx() -> None:
    fwd = Forwarder(video_stream(), first_sequence_number=65534)
    sent = {}
    for i, payload in enumerate([KEY, CONT, DELTA, CONT, DELTA]):
        out = RtpPacket.parse(fwd.forward(rtp(300 + i, 3000 * i, payload), "pub"))  # type: ignore[arg-type]
        sent[out.sequence_number] = out
    assert sorted(sent) == [0, 1, 2, 65534, 65535]  # wrapped

    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=0x1111, lost=[1, 40, 65535])
    (parsed,) = RtcpPacket.parse(bytes(nack))
    answers = [RtpPacket.parse(d) for d in fwd.retransmit(parsed.lost)]  # type: ignore[union-attr]

    assert len(answers) == 2  # 40 was never sent
    for rtx, original_seq in zip(answers, [1, 65535], strict=True):
        assert (rtx.ssrc, rtx.payload_type) == (0x2222, 101)
        assert int.from_bytes(rtx.payload[:2], "big") == original_seq
        assert rtx.payload[2:] == sent[original_seq].payload
        assert rtx.timestamp == sent[original_seq].timestamp
    assert answers[1].sequence_number == (answers[0].sequence_number + 1) % 65536
    assert fwd.stats.retransmitted == 2 and fwd.stats.nacked == 3


def test_nack_without_rtx_resends_the_original_packet() -> None:
    fwd = Forwarder(video_stream(rtx_payload_type=None, rtx_ssrc=None, kind="audio"))
    out = RtpPacket.parse(fwd.forward(rtp(9, 960, b"opus"), "pub"))  # type: ignore[arg-type]
    (again,) = [RtpPacket.parse(d) for d in fwd.retransmit([out.sequence_number])]
    assert (again.sequence_number, again.ssrc, again.payload) == (
        out.sequence_number,
        0x1111,
        b"opus",
    )


def test_history_forgets_overwritten_packets() -> None:
    fwd = Forwarder(video_stream(kind="audio"), history_size=4, first_sequence_number=0)
    for i in range(6):
        fwd.forward(rtp(i, i, b"x"), "pub")
    assert fwd.retransmit([0, 1]) == []
    assert len(fwd.retransmit([2, 5])) == 2


def test_publisher_change_restarts_at_keyframe_and_continues_the_sequence() -> None:
    now = [0.0]
    fwd = Forwarder(
        video_stream(), clock=lambda: now[0], first_sequence_number=10, first_timestamp=0
    )
    for i in range(3):
        fwd.forward(rtp(1000 + i, 3000 * i, KEY if i == 0 else DELTA), "alice")
    now[0] = 2.0
    assert fwd.forward(rtp(40000, 777, DELTA, ssrc=5), "erin") is None
    out = RtpPacket.parse(fwd.forward(rtp(40001, 780, KEY, ssrc=5), "erin"))  # type: ignore[arg-type]
    assert out.sequence_number == 13 and out.ssrc == 0x1111
    assert out.timestamp == 6000 + 2 * 90000


PUBLISHERS = st.lists(
    st.tuples(
        st.integers(0, 65535),  # first sequence number
        st.integers(0, 2**32 - 1),  # first timestamp
        st.lists(st.tuples(st.integers(1, 3), st.integers(0, 6000)), min_size=1, max_size=40),
        st.floats(0.0, 5.0),  # pause before this publisher
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(PUBLISHERS, st.integers(0, 65535), st.integers(0, 2**32 - 1))
def test_output_stays_continuous_across_wraps_and_publishers(
    publishers, first_seq, first_ts
) -> None:
    """Each output packet follows the previous one by exactly the input's sequence step
    (contiguous when the input is), timestamps move by the input's delta within a publisher
    and strictly forward across a change, whatever the inputs' starting points and wraps."""
    now = [0.0]
    rewriter = SequenceRewriter(90000, first_seq, first_ts, clock=lambda: now[0])
    previous: tuple[int, int] | None = None
    previous_at = 0.0
    for index, (seq, ts, steps, pause) in enumerate(publishers):
        now[0] += pause
        last_in: tuple[int, int] | None = None
        for step, ts_step in steps:
            out = rewriter.rewrite(f"pub{index}", seq, ts)
            assert out is not None
            if previous is None:
                assert out == (first_seq, first_ts)
            elif last_in is None:  # first packet of a new publisher
                assert out[0] == (previous[0] + 1) % 65536
                assert 0 < (out[1] - previous[1]) % 2**32 <= int((now[0] - previous_at) * 90000) + 1
            else:
                assert out[0] == (previous[0] + (seq - last_in[0])) % 65536
                assert out[1] == (previous[1] + (ts - last_in[1])) % 2**32
            previous, last_in, previous_at = out, (seq, ts), now[0]
            seq, ts = (seq + step) % 65536, (ts + ts_step) % 2**32
            now[0] += 0.001


@given(st.integers(0, 65535), st.lists(st.integers(-40, 40), min_size=1, max_size=30))
def test_reordered_and_retransmitted_packets_map_consistently(start, jitter) -> None:
    rewriter = SequenceRewriter(90000, 100, 0)
    assert rewriter.rewrite("p", start, 0) == (100, 0)
    for i, offset in enumerate(jitter):
        seq = (start + 50 + i + offset) % 65536
        out = rewriter.rewrite("p", seq, 0)
        assert out is not None and out[0] == (100 + 50 + i + offset) % 65536
    assert rewriter.rewrite("p", (start - 1) % 65536, 0) is None  # before the first forwarded
