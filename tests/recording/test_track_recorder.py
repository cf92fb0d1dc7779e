"""A track recorder fed with real VP8 and Opus RTP (aiortc's encoders, no network): every
segment starts on a keyframe, plays in ffprobe, and holds the frames the publisher sent."""

from __future__ import annotations

import itertools
import json
import random
from fractions import Fraction
from pathlib import Path

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media_node.recording.manifest import MANIFEST_NAME
from media_node.recording.room_recording import RoomRecording
from media_node.recording.settings import RecordingSettings
from media_node.recording.track_recorder import SpoolBudget
from rtcfleet.client.synthetic import block_size, stamp_sequence_number
from tests.recording.probe import ffprobe, stamped_numbers

FPS = 30
WIDTH, HEIGHT = 640, 360
SEGMENT_S = 2.0
SECONDS = 7


class FakeTrack:
    """A published track as the recorder sees it: keyframe requests reach the encoder."""

    def __init__(self, kind: str, track_id: str) -> None:
        self.kind = kind
        self.track_id = track_id
        self.publisher = "alice"
        self.downtracks: set = set()
        self.keyframe_wanted = False
        self.keyframe_requests = 0

    def request_keyframe(self) -> bool:
        if self.kind == "video":
            self.keyframe_wanted = True
            self.keyframe_requests += 1
        return True


def video_frame(number: int) -> av.VideoFrame:
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    stride = frame.planes[0].line_size
    luma = bytearray(b"\x50" * (stride * HEIGHT))
    size = block_size(WIDTH)
    x = (number * 8) % (WIDTH - size * 2)
    for line in range(size * 4, HEIGHT):
        luma[line * stride + x : line * stride + x + size * 2] = b"\xdc" * (size * 2)
    stamp_sequence_number(luma, stride, WIDTH, number)
    frame.planes[0].update(bytes(luma))
    for plane in frame.planes[1:]:
        plane.update(b"\x80" * plane.buffer_size)
    frame.pts, frame.time_base = number * 90_000 // FPS, Fraction(1, 90_000)
    return frame


def audio_frame(number: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="mono", samples=960)
    frame.planes[0].update(bytes(random.getrandbits(8) for _ in range(1920)))
    frame.pts, frame.sample_rate, frame.time_base = number * 960, 48_000, Fraction(1, 48_000)
    return frame


def packets(payloads: list[bytes], timestamp: int, seq: int, pt: int) -> list[RtpPacket]:
    return [
        RtpPacket(
            payload_type=pt,
            sequence_number=(seq + i) % 65536,
            timestamp=timestamp % 2**32,
            ssrc=1234,
            marker=i == len(payloads) - 1,
            payload=payload,
        )
        for i, payload in enumerate(payloads)
    ]


@pytest.fixture
def recording(tmp_path: Path) -> RoomRecording:
    settings = RecordingSettings(bucket="b", spool_dir=tmp_path, segment_s=SEGMENT_S)
    clock = iter(range(1_700_000_000, 1_800_000_000))
    return RoomRecording(
        "room.1", "node-1", settings, SpoolBudget(tmp_path, 10**9), clock=lambda: next(clock) / 1
    )


async def test_video_and_audio_segments_play_and_hold_what_was_sent(
    recording: RoomRecording, tmp_path: Path
) -> None:
    video, audio = FakeTrack("video", "v1"), FakeTrack("audio", "a1")
    recording.joined("alice")
    recording.add_track(video)  # type: ignore[arg-type]
    recording.add_track(audio)  # type: ignore[arg-type]
    vp8 = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96))
    opus = get_encoder(
        RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111)
    )
    (video_recorder,) = [r for r in recording.recorders.values() if r.video]
    (audio_recorder,) = [r for r in recording.recorders.values() if not r.video]
    seq_v, seq_a, lost_at = 40_000, 65_000, 3 * FPS + 5
    base_ts = 2**32 - 90_000  # the RTP clock wraps during the recording
    for number in range(SECONDS * FPS):
        payloads, _ = vp8.encode(video_frame(number), force_keyframe=video.keyframe_wanted)
        video.keyframe_wanted = False
        batch = packets(payloads, base_ts + number * 3000, seq_v, 96)
        seq_v += len(batch)
        if number == lost_at:
            batch = batch[1:]  # a packet lost for good: the recorder waits for a keyframe
        random.Random(number).shuffle(batch)  # reordered on the way
        for packet in batch:
            video_recorder.deliver_now(packet, None)
        for sub in range(2):
            payloads, _ = opus.encode(audio_frame(number * 2 + sub))
            for packet in packets(payloads, (number * 2 + sub) * 960, seq_a, 111):
                audio_recorder.deliver_now(packet, None)
                seq_a += 1
    recording.stop("requested", [])

    manifest = json.loads((recording.folder / MANIFEST_NAME).read_text())
    assert manifest["state"] == "stopped" and manifest["stop_reason"] == "requested"
    assert [p["identity"] for p in manifest["participants"]] == ["alice"]
    tracks = {t["kind"]: t for t in manifest["tracks"]}
    assert tracks["video"]["frames_lost"] >= 1
    video_segments = tracks["video"]["segments"]
    assert len(video_segments) >= SECONDS / SEGMENT_S - 1
    recorded = []
    for segment in video_segments:
        path = recording.folder / segment["key"]
        probe = ffprobe(path)
        print(segment["key"], probe)
        assert probe.errors == ""
        assert (probe.codec, probe.width, probe.height) == ("vp8", WIDTH, HEIGHT)
        assert probe.first_is_keyframe
        assert probe.frames == segment["frames"]
        assert abs(probe.duration_s - segment["duration_s"]) <= 0.1
        numbers = stamped_numbers(path)
        assert len(numbers) == probe.frames
        recorded += numbers
    # every frame sent is in a segment except those between the loss and the next keyframe
    missing = sorted(set(range(recorded[0], SECONDS * FPS)) - set(recorded))
    assert missing and missing[0] == lost_at and len(missing) <= FPS // 2, missing
    assert recorded == sorted(recorded)
    # a segment is cut on the first keyframe after SEGMENT_S - KEYFRAME_LEAD_S of media time
    starts = [segment["start_offset_s"] for segment in video_segments]
    for first, second in itertools.pairwise(starts):
        assert SEGMENT_S - 0.5 <= second - first <= SEGMENT_S + 0.5
    for segment in tracks["audio"]["segments"]:
        probe = ffprobe(recording.folder / segment["key"])
        assert probe.codec == "opus" and probe.errors == ""
        assert probe.frames == segment["frames"]
