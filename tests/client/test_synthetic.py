"""Synthetic media: frame numbers survive lossy VP8 and are rejected when unreadable."""

from __future__ import annotations

from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from av import VideoFrame

from rtcfleet.client.peer import RemoteTrackStats
from rtcfleet.client.synthetic import (
    SyntheticAudioTrack,
    SyntheticVideoTrack,
    read_sequence_number,
    stamp_sequence_number,
)


async def test_numbers_survive_low_bitrate_vp8() -> None:
    track = SyntheticVideoTrack(320, 180, fps=30, noise_rows=30)
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = 250_000
    read = []
    for _ in range(30):
        frame = await track.recv()
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(p) for p in payloads)
        for decoded in decoder.decode(JitterFrame(data=data, timestamp=timestamp)):
            assert isinstance(decoded, VideoFrame)
            assert (decoded.width, decoded.height) == (320, 180)
            read.append(read_sequence_number(decoded))
    assert read == list(range(30))
    assert track.last_sequence_number == 29


def test_large_numbers_and_corruption() -> None:
    frame = VideoFrame(640, 360, "yuv420p")
    stride = frame.planes[0].line_size
    luma = bytearray(b"\x5a" * stride * 360)
    stamp_sequence_number(luma, stride, 640, 987_654)
    frame.planes[0].update(bytes(luma))
    assert read_sequence_number(frame) == 987_654

    for line in range(16, 32):  # the first bit of 987654 is 1 (white): paint it black
        luma[line * stride + 16 : line * stride + 32] = b"\x10" * 16
    frame.planes[0].update(bytes(luma))
    assert read_sequence_number(frame) is None

    blank = VideoFrame(640, 360, "yuv420p")
    blank.planes[0].update(b"\x80" * stride * 360)
    assert read_sequence_number(blank) is None


async def test_audio_frames_are_20ms_of_48khz() -> None:
    track = SyntheticAudioTrack()
    first, second = await track.recv(), await track.recv()
    assert (first.samples, first.sample_rate, first.layout.name) == (960, 48000, "mono")
    assert first.pts is not None and second.pts is not None
    assert second.pts - first.pts == 960
    assert any(bytes(first.planes[0]))


def test_a_garbled_number_does_not_count() -> None:
    """A garbled picture whose blocks pass the checksum reads as a random number: it must not
    count as a frame nor stretch the range of frames expected."""
    stats = RemoteTrackStats("alice", "video", "t1")
    for number in (5, 6, 7, 700_123, 8, 9, 512_000, 40, 41, 42):  # 40: after a freeze
        stats.add_number(number)
    assert stats.sequence_numbers == {5, 6, 7, 8, 9, 40, 41, 42}
