"""What recording costs a media node worker: CPU per recorded track, its effect on forwarding,
and the bytes per hour a recorded 640x360 track puts on disk, on the uplink and in storage.

Run: ``.venv/bin/python -m benchmarks.recording [--publishers 2] [--subscribers 20] [--window 8]``.

The server is the media node's real forwarding worker (``media_node.worker``, one process, one
core) driven over its pipe as the supervisor drives it (the harness of
``benchmarks.forwarding``). One publisher (640x360 30 fps VP8 held near 1.2 Mbit/s, plus
Opus) in its own process and N counting subscribers share one room. The worker's CPU is
measured over windows without recording and with the room recorded (the publisher's video
and audio written to WebM segments in a spool folder), in turn, ending without; CPU per
recorded track is the difference of the means over the two tracks. Uploads run in the
supervisor, not in the worker, and are not part of these figures.

On a machine other jobs load, that difference is within the noise; so the recording path is
also measured on its own: 20 s of 640x360 VP8 (noisy picture, ~1.2 Mbit/s) and Opus, encoded
beforehand into RTP packets, fed through the recorders of one room in this process, timed
with ``time.process_time`` (CPU seconds per second of media = share of a core per track).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.forwarding import (
    NOISE_ROWS,
    VIDEO_BITRATE,
    Server,
    join_publisher,
    join_subscriber,
    load_average,
    measure,
    wait_receiving,
)
from media_node import rtp_hooks

RESULTS = Path(__file__).resolve().parent / "results" / "recording.json"
LOOPBACK = "127.0.0.1"


async def recording(server: Server, action: str) -> dict[str, Any]:
    """Start or stop the room's recording as the supervisor would; the worker's answer."""
    reply = uuid.uuid4().hex
    answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_message(message: dict[str, Any]) -> None:
        answered.set_result(message)

    server.handlers[reply] = on_message
    server.send({"op": "recording", "action": action, "node_id": "bench", "reply": reply})
    answer = await asyncio.wait_for(answered, 10)
    assert answer["ok"], answer
    return answer


def spool_bytes(root: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in root.rglob(f"*{suffix}") if p.is_file())


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rtp_hooks.restrict_host_addresses([LOOPBACK])
    spool = Path(tempfile.mkdtemp(prefix="rtcfleet-recording-bench-"))
    # the worker reads its recording settings from the environment it is spawned with
    os.environ.update(
        {
            "RTCFLEET_RECORDING_BUCKET": "bench",
            "RTCFLEET_RECORDING_SPOOL_DIR": str(spool),
            "RTCFLEET_RECORDING_SEGMENT_S": str(args.segment_s),
        }
    )
    load_before = load_average()
    server = Server("forward")
    publishers = []
    try:
        for index in range(args.publishers):
            publishers.append(await join_publisher(server, f"publisher-{index}"))
        subscribers = [await join_subscriber(server, i) for i in range(args.subscribers)]
        if not await wait_receiving(subscribers, 60):
            raise RuntimeError("subscribers did not start receiving")
        await asyncio.sleep(2.0)
        phases: dict[str, dict[str, Any]] = {}
        written = written_s = 0.0
        answer: dict[str, Any] = {}
        # off and on in turn, so a change in the machine's load falls on both sides
        for round_ in range(args.rounds):
            phases[f"off-{round_}"] = await measure(server, publishers[0], subscribers, args.window)
            answer = await recording(server, "start")
            await asyncio.sleep(2.0)  # first keyframes, first segments opened
            before, started = spool_bytes(spool, ".webm"), time.monotonic()
            phases[f"on-{round_}"] = await measure(server, publishers[0], subscribers, args.window)
            written += spool_bytes(spool, ".webm") - before
            written_s += time.monotonic() - started
            await recording(server, "stop")
            await asyncio.sleep(1.0)
        phases[f"off-{args.rounds}"] = await measure(
            server, publishers[0], subscribers, args.window
        )
    finally:
        for publisher in publishers:
            await publisher.stop()
        await server.stop()
    return summarize(args, spool, phases, answer, load_before, written / written_s)


def summarize(
    args: argparse.Namespace,
    spool: Path,
    phases: dict[str, dict[str, Any]],
    answer: dict[str, Any],
    load_before: list[float],
    written_bps: float,
) -> dict[str, Any]:
    manifests = [json.loads(p.read_text()) for p in spool.rglob("manifest.json")]
    all_tracks = [t for manifest in manifests for t in manifest["tracks"]]
    track_bytes: dict[str, list[float]] = {"video": [], "audio": []}
    for track in all_tracks:
        seconds = sum(s["duration_s"] for s in track["segments"])
        if seconds > 0:
            track_bytes[track["kind"]].append(sum(s["bytes"] for s in track["segments"]) / seconds)
    off = [p["node_cpu_percent"] for name, p in phases.items() if name.startswith("off")]
    on = [p["node_cpu_percent"] for name, p in phases.items() if name.startswith("on")]
    idle = sum(off) / len(off)
    tracks = 2 * args.publishers
    per_track = (sum(on) / len(on) - idle) / tracks
    per_stream_forwarded = idle / max(1, args.subscribers * args.publishers)
    video_bps = sum(track_bytes["video"]) / max(1, len(track_bytes["video"])) * 8
    audio_bps = sum(track_bytes["audio"]) / max(1, len(track_bytes["audio"])) * 8
    segment_lengths = [s["duration_s"] for t in all_tracks for s in t["segments"][:-1]]
    return {
        "benchmark": "recording",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_before": load_before, "load_average_after": load_average()},
        "publishers": args.publishers,
        "rounds": args.rounds,
        "subscribers": args.subscribers,
        "recorded_tracks": tracks,
        "window_s": args.window,
        "segment_s": args.segment_s,
        "phases": phases,
        "recording_id": answer.get("recording_id"),
        "cpu_percent_per_recorded_track": round(per_track, 2),
        "cpu_percent_per_recorded_participant": round(2 * per_track, 2),
        "cpu_percent_per_forwarded_stream_here": round(per_stream_forwarded, 3),
        "forwarded_streams_per_recorded_participant": round(
            2 * per_track / per_stream_forwarded, 1
        ) if per_stream_forwarded > 0 else None,
        "spool_write_kbps_all_tracks": round(8 * written_bps / 1000),
        "recorded_video_kbps": round(video_bps / 1000),
        "recorded_audio_kbps": round(audio_bps / 1000),
        "storage_mb_per_hour_640x360_video_and_audio": round(
            (video_bps + audio_bps) / 8 * 3600 / 1e6
        ),
        "segment_length_s": {"min": min(segment_lengths, default=None),
                             "max": max(segment_lengths, default=None)},
    }  # fmt: skip


def packet_path_cost(seconds: int, segment_s: float) -> dict[str, Any]:
    """CPU of the recording path alone, per track, from packets encoded beforehand."""
    from fractions import Fraction

    import av
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import RtpPacket

    from media_node.recording.room_recording import RoomRecording
    from media_node.recording.settings import RecordingSettings
    from media_node.recording.track_recorder import SpoolBudget

    class Track:
        def __init__(self, kind: str) -> None:
            self.kind, self.track_id, self.publisher = kind, f"{kind}-1", "alice"
            self.downtracks: set[Any] = set()
            self.wanted = True

        def request_keyframe(self) -> bool:
            self.wanted = True
            return True

    video, audio = Track("video"), Track("audio")
    vp8 = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96))
    vp8.target_bitrate = VIDEO_BITRATE  # type: ignore[attr-defined]
    opus = get_encoder(
        RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111)
    )
    video_packets: list[list[RtpPacket]] = []
    seq = 0
    for number in range(seconds * 30):
        # the forwarding benchmark's publisher picture: flat, with NOISE_ROWS rows of noise
        frame = av.VideoFrame(640, 360, "yuv420p")
        stride = frame.planes[0].line_size
        noisy = NOISE_ROWS * stride
        frame.planes[0].update(b"\x50" * (360 * stride - noisy) + os.urandom(noisy))
        for plane in frame.planes[1:]:
            plane.update(b"\x80" * plane.buffer_size)
        frame.pts, frame.time_base = number * 3000, Fraction(1, 90_000)
        payloads, _ = vp8.encode(frame, force_keyframe=number % int(30 * segment_s) == 0)
        batch = []
        for i, payload in enumerate(payloads):
            marker = i == len(payloads) - 1
            batch.append(
                RtpPacket(
                    payload_type=96,
                    marker=marker,
                    sequence_number=seq % 65536,
                    timestamp=number * 3000,
                    ssrc=1,
                    payload=payload,
                )
            )
            seq += 1
        video_packets.append(batch)
    audio_packets = []
    for number in range(seconds * 50):
        samples = av.AudioFrame(format="s16", layout="stereo", samples=960)
        samples.planes[0].update(os.urandom(3840))
        samples.pts, samples.sample_rate = number * 960, 48_000
        samples.time_base = Fraction(1, 48_000)
        payloads, _ = opus.encode(samples)
        for payload in payloads:
            audio_packets.append(
                RtpPacket(
                    payload_type=111,
                    sequence_number=number % 65536,
                    timestamp=number * 960,
                    ssrc=2,
                    payload=payload,
                )
            )
    spool = Path(tempfile.mkdtemp(prefix="rtcfleet-recording-path-"))
    settings = RecordingSettings(bucket="bench", spool_dir=spool, segment_s=segment_s)
    room = RoomRecording("bench", "bench", settings, SpoolBudget(spool, 10**12))
    room.add_track(video)  # type: ignore[arg-type]
    room.add_track(audio)  # type: ignore[arg-type]
    recorders = {r.track.kind: r for r in room.recorders.values()}
    cost: dict[str, float] = {}
    for kind, packets in (
        ("video", [p for batch in video_packets for p in batch]),
        ("audio", audio_packets),
    ):
        started = time.process_time()
        for packet in packets:
            recorders[kind].deliver_now(packet, None)
        cost[kind] = time.process_time() - started
    room.stop("requested", [])
    video_bytes = sum(len(p.payload) for batch in video_packets for p in batch)
    return {
        "media_seconds": seconds,
        "video_kbps": round(8 * video_bytes / seconds / 1000),
        "video_packets": sum(len(b) for b in video_packets),
        "cpu_percent_video_track": round(100 * cost["video"] / seconds, 2),
        "cpu_percent_audio_track": round(100 * cost["audio"] / seconds, 2),
        "segments": sum(len(t.segments) for t in room.manifest.tracks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--segment-s", type=float, default=4.0)
    parser.add_argument("--path-seconds", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    result["recording_path_alone"] = packet_path_cost(args.path_seconds, args.segment_s)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}, indent=2))
    for name, phase in result["phases"].items():
        print(
            f"{name:>9}: node {phase['node_cpu_percent']} % CPU, worst subscriber "
            f"{phase['min_frame_ratio']:.1%} of frames, median {phase['median_frame_ratio']:.1%}"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
