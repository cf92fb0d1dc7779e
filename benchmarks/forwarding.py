"""Forwarding capacity of one media node worker, against a MediaRelay (decode + re-encode) baseline.

Run: ``.venv/bin/python -m benchmarks.forwarding [--steps 10,25,50,...] [--window 8]``.

One publisher (640x360, 30 fps VP8 held near 1.2 Mbit/s by the node's REMB cap, plus Opus) and N
subscribers in one room. The server under test is the media node's real forwarding worker
(`media_node.worker`, one process, one core), driven over its pipe as the node supervisor drives
it; the baseline is a process of the same shape that decodes the publisher once and re-encodes
per subscriber with aiortc's `MediaRelay`. Subscribers are `benchmarks.loadgen` counting clients
in this process: they check RTP and count whole frames instead of decoding.

For each N the node's CPU (from /proc) and every subscriber's whole frames are measured over a
window; a subscriber "keeps up" when it receives at least 95 % of the frames the publisher sent.
Capacity per core is the CPU fit (streams one core can forward after the fixed ingest cost), and
the largest measured N at which every subscriber kept up is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.loadgen import CheapSubscriber, CountingSubscriber, process_cpu_seconds
from media_node import datagram_batch, rtp_hooks
from media_node.sfu import SfuConfig
from media_node.worker import worker_main
from rtcfleet.client.peer import ClientPeer

RESULTS = Path(__file__).resolve().parent / "results" / "forwarding.json"
LOOPBACK = "127.0.0.1"
ROOM = "bench"
VIDEO_BITRATE = 1_200_000
NOISE_ROWS = 26  # picture noise so the encoder spends about its 1.2 Mbit/s cap
KEEP_UP = 0.95
FPS = 30
FRAME_TICKS = 90_000 // FPS
# frames still in flight when the window closes (or held up by a stall here) are counted
GRACE_S = 1.5
TARGET_PER_CORE = 250
JOIN_BATCH = 10
PINNED = False  # set by main: server and load generator on cores of their own
SHARED_UDP_PORT = False  # set by main: the worker's connections on one UDP port

Handler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
Subscriber = CheapSubscriber | CountingSubscriber
# the server under test on one core, this process (load generator) and the publisher on another
SERVER_CORE = 0
LOADGEN_CORE = 1


def pin(pid: int, core: int) -> bool:
    """Pin a process to one core when the machine has it (Linux)."""
    if not hasattr(os, "sched_setaffinity") or core not in os.sched_getaffinity(0) | {0, 1}:
        return False
    if (os.cpu_count() or 1) <= core:
        return False
    os.sched_setaffinity(pid, {core})
    return True


# ---- the baseline server: decode once, re-encode per subscriber -----------------------------


def relay_main(conn: Connection) -> None:
    rtp_hooks.restrict_host_addresses([LOOPBACK])
    asyncio.run(_relay(conn))


async def _relay(conn: Connection) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaBlackhole, MediaRelay
    from aiortc.rtcconfiguration import RTCBundlePolicy

    config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    relay = MediaRelay()
    sources: dict[str, Any] = {}
    pcs: dict[str, Any] = {}
    sinks: list[Any] = []
    started: list[asyncio.Future[None]] = []
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            while conn.poll():
                inbox.put_nowait(conn.recv())
        except (EOFError, OSError):
            inbox.put_nowait(None)
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), readable)
    while (command := await inbox.get()) is not None:
        op, session = command.get("op"), str(command.get("session", ""))
        if op == "stop":
            break
        if op == "join" and command.get("can_subscribe") and sources:
            pc = pcs[session] = RTCPeerConnection(config)
            for kind in ("audio", "video"):
                pc.addTrack(relay.subscribe(sources[kind], buffered=False))
            await pc.setLocalDescription(await pc.createOffer())
            message = {"type": "subscriber_offer", "sdp": pc.localDescription.sdp}
            conn.send({"kind": "to_session", "session": session, "message": message})
        elif op == "publish_offer":
            pc = pcs[session] = RTCPeerConnection(config)

            @pc.on("track")
            def on_track(track: Any) -> None:
                sources[track.kind] = track
                # keeps the decoded source drained while no subscriber reads it
                sink = MediaBlackhole()
                sink.addTrack(relay.subscribe(track, buffered=False))
                sinks.append(sink)
                started.append(asyncio.ensure_future(sink.start()))

            await pc.setRemoteDescription(RTCSessionDescription(command["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            message = {"type": "publish_answer", "sdp": pc.localDescription.sdp}
            conn.send({"kind": "to_session", "session": session, "message": message})
        elif op == "subscriber_answer":
            await pcs[session].setRemoteDescription(RTCSessionDescription(command["sdp"], "answer"))
    for sink in sinks:
        await sink.stop()
    for pc in pcs.values():
        await pc.close()


# ---- the publisher, in a process of its own so load generator stalls never touch the source ---


def publisher_main(conn: Connection) -> None:
    rtp_hooks.restrict_host_addresses([LOOPBACK])
    asyncio.run(_publish(conn))


async def _publish(conn: Connection) -> None:
    peer = ClientPeer("publisher", noise_rows=NOISE_ROWS)
    conn.send({"offer": await peer.create_publish_offer()})
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def readable() -> None:
        try:
            while conn.poll():
                inbox.put_nowait(conn.recv())
        except (EOFError, OSError):
            inbox.put_nowait(None)
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), readable)
    while (command := await inbox.get()) is not None:
        if "answer" in command:
            await peer.apply_publish_answer(command["answer"])
        elif command.get("op") == "frames":
            assert peer.video_track is not None
            conn.send({"frames": peer.video_track.frames_sent})
        elif command.get("op") == "stop":
            break
    await peer.close()


class Publisher:
    """The publisher process and a pipe to it."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=publisher_main, args=(child,), daemon=True)
        self.process.start()
        if PINNED:
            assert self.process.pid is not None
            pin(self.process.pid, LOADGEN_CORE)

    async def offer(self) -> str:
        reply = await asyncio.to_thread(self.conn.recv)
        return str(reply["offer"])

    def answer(self, sdp: str) -> None:
        self.conn.send({"answer": sdp})

    async def frames_sent(self) -> int:
        self.conn.send({"op": "frames"})
        reply = await asyncio.to_thread(self.conn.recv)
        return int(reply["frames"])

    async def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send({"op": "stop"})
        await asyncio.to_thread(self.process.join, 15)
        if self.process.is_alive():
            self.process.kill()


# ---- driving a server process ------------------------------------------------------------------


class Server:
    """A forwarding worker or a relay process, spoken to over a pipe like the supervisor does."""

    def __init__(self, mode: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        if mode == "forward":
            # the clients are on loopback, as the node is
            config = SfuConfig(
                max_video_bitrate=VIDEO_BITRATE,
                local_candidates=True,
                shared_udp_port=SHARED_UDP_PORT,
            )
            args: tuple[Any, ...] = (child, config, 100_000, LOOPBACK)
            target: Callable[..., None] = worker_main
        else:
            args, target = (child,), relay_main
        self.process = context.Process(target=target, args=args, daemon=True)
        self.process.start()
        if PINNED:
            assert self.process.pid is not None
            pin(self.process.pid, SERVER_CORE)
        self.handlers: dict[str, Handler] = {}
        self.loads: list[dict[str, Any]] = []  # the worker's load reports, one a second
        self._tasks: set[asyncio.Task[None]] = set()
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._readable)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._dispatch(self.conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())

    def _dispatch(self, item: dict[str, Any]) -> None:
        # the worker's side of rtcfleet.node_messages: WorkerLoadReport and ToSession
        if item.get("kind") == "load":
            self.loads.append(item)
            del self.loads[:-30]
        handler = (
            self.handlers.get(item.get("session", "")) if item.get("kind") == "to_session" else None
        )
        if handler is not None:
            task = asyncio.create_task(handler(item["message"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def send(self, command: dict[str, Any]) -> None:
        self.conn.send(command | {"room": ROOM})

    async def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
        with contextlib.suppress(OSError):
            self.conn.send({"op": "stop"})
        await asyncio.to_thread(self.process.join, 15)
        if self.process.is_alive():
            self.process.kill()


async def join_publisher(server: Server, identity: str = "publisher") -> Publisher:
    publisher = Publisher()
    session = uuid.uuid4().hex
    answered = asyncio.Event()

    async def on_message(message: dict[str, Any]) -> None:
        if message.get("type") == "publish_answer":
            publisher.answer(message["sdp"])
            answered.set()

    server.handlers[session] = on_message
    server.send(
        {"op": "join", "session": session, "identity": identity, "can_publish": True,
         "can_subscribe": False}
    )  # fmt: skip
    server.send({"op": "publish_offer", "session": session, "sdp": await publisher.offer()})
    await asyncio.wait_for(answered.wait(), 30)
    return publisher


async def join_subscriber(server: Server, index: int, receivers: str = "full") -> Subscriber:
    name = f"viewer-{index}"
    subscriber: Subscriber
    if receivers == "full":
        subscriber = CountingSubscriber(name)
    else:
        subscriber = CheapSubscriber(name, cross_check=receivers == "cross-check")
    session = uuid.uuid4().hex

    async def on_message(message: dict[str, Any]) -> None:
        # (a publisher that leaves as the run ends re-offers to subscribers already closed)
        if message.get("type") == "subscriber_offer" and subscriber.pc.signalingState != "closed":
            answer = await subscriber.answer(message["sdp"])
            server.send({"op": "subscriber_answer", "session": session, "sdp": answer})

    server.handlers[session] = on_message
    server.send(
        {"op": "join", "session": session, "identity": subscriber.name, "can_publish": False,
         "can_subscribe": True}
    )  # fmt: skip
    return subscriber


async def wait_receiving(subscribers: list[Subscriber], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not all(s.receiving for s in subscribers):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def not_receiving(subscribers: list[Subscriber]) -> dict[str, int]:
    """How far the subscribers without media got: counts of their connection states."""
    states: dict[str, int] = {}
    for subscriber in subscribers:
        if subscriber.receiving:
            continue
        pc = subscriber.pc
        key = (
            f"signaling {pc.signalingState}, ice {pc.iceConnectionState},"
            f" connection {pc.connectionState}, packets"
            f" {subscriber.streams['video'].packets}/{subscriber.streams['audio'].packets}"
        )
        states[key] = states.get(key, 0) + 1
    return states


async def measure(
    server: Server, publisher: Publisher, subscribers: list[Subscriber], window: float
) -> dict[str, Any]:
    for subscriber in subscribers:
        subscriber.start_window()
    node_cpu, own_cpu = process_cpu_seconds(server.pid), process_cpu_seconds(os.getpid())
    frames = await publisher.frames_sent()
    started = time.monotonic()
    lag = 0.0
    while time.monotonic() - started < window:
        tick = time.monotonic()
        await asyncio.sleep(0.05)
        lag = max(lag, time.monotonic() - tick - 0.05)
    elapsed = time.monotonic() - started
    sent = await publisher.frames_sent() - frames
    node_cpu_start = node_cpu
    node_cpu = process_cpu_seconds(server.pid) - node_cpu
    own_cpu = process_cpu_seconds(os.getpid()) - own_cpu
    await asyncio.sleep(GRACE_S)
    for subscriber in subscribers:
        subscriber.stop_window()
    # the server's CPU per packet a subscriber received, over the same interval as the counts:
    # a cost that holds even when the shared machine leaves the server less than its core
    node_cpu_all = process_cpu_seconds(server.pid) - node_cpu_start
    packets = sum(s.streams[k].packets for s in subscribers for k in ("audio", "video"))
    sent = max(sent, 1)
    reports = [r["bitrate_out_bps"] for r in server.loads[-int(window) :] if "bitrate_out_bps" in r]
    ratios = [s.streams["video"].complete_frames(sent, FRAME_TICKS) / sent for s in subscribers]
    span = elapsed + GRACE_S
    video_bps = [8 * s.streams["video"].bytes / span for s in subscribers]
    audio = [s.streams["audio"].packets / span for s in subscribers]
    checked = all(
        len(s.streams[k].ssrcs) == 1 and len(s.streams[k].payload_types) == 1
        for s in subscribers
        for k in ("audio", "video")
    )
    step: dict[str, Any] = {
        "subscribers": len(subscribers),
        "node_cpu_percent": round(100 * node_cpu / elapsed, 1),
        "node_cpu_us_per_packet_out": round(1e6 * node_cpu_all / packets, 2) if packets else None,
        "loadgen_cpu_percent": round(100 * own_cpu / elapsed, 1),
        "loadgen_max_stall_ms": round(1000 * lag),
        "frames_sent": sent,
        "publisher_fps": round(sent / elapsed, 1),
        "min_frame_ratio": round(min(ratios), 3),
        "median_frame_ratio": round(statistics.median(ratios), 3),
        "video_kbps_per_subscriber": round(statistics.median(video_bps) / 1000),
        "node_out_mbps": round(statistics.median(reports) / 1e6, 1) if reports else None,
        "audio_packets_per_s": round(statistics.median(audio), 1),
        "one_ssrc_and_payload_type_per_stream": checked,
    }
    cheap = [s for s in subscribers if isinstance(s, CheapSubscriber)]
    if cheap:
        step["nacks_sent"] = sum(s.nacks_sent for s in cheap)
    if cheap and cheap[0].cross_check:
        pairs = [
            (
                s.streams["video"].complete_frames(sent, FRAME_TICKS),
                s.decrypted.streams["video"].complete_frames(sent, FRAME_TICKS),
                s.streams["audio"].packets,
                s.decrypted.streams["audio"].packets,
            )
            for s in cheap
        ]
        step["cross_check"] = {
            "frames_counted_from_clear_headers": sum(p[0] for p in pairs),
            "frames_counted_decrypted": sum(p[1] for p in pairs),
            "max_frame_difference_per_subscriber": max(abs(p[0] - p[1]) for p in pairs),
            "audio_packets_clear_vs_decrypted": [
                sum(p[2] for p in pairs),
                sum(p[3] for p in pairs),
            ],
            "min_decrypted_frame_ratio": round(min(p[1] for p in pairs) / sent, 3),
        }
    return step


async def run_mode(
    mode: str, steps: list[int], window: float, deadline: float, receivers: str
) -> dict[str, Any]:
    server = Server(mode)
    subscribers: list[Subscriber] = []
    results: list[dict[str, Any]] = []
    stopped = "all steps measured"
    publisher = await join_publisher(server)
    try:
        await asyncio.sleep(3.0)  # encoder ramp to the cap
        for n in steps:
            if time.monotonic() > deadline:
                stopped = "time budget"
                break
            while len(subscribers) < n:
                batch = min(JOIN_BATCH, n - len(subscribers))
                subscribers += await asyncio.gather(
                    *(
                        join_subscriber(server, len(subscribers) + i, receivers)
                        for i in range(batch)
                    )
                )
                await asyncio.sleep(0.3)
            if not await wait_receiving(subscribers, 30 + n * 0.3):
                receiving = sum(1 for s in subscribers if s.receiving)
                stopped = (
                    f"only {receiving} of {n} subscribers received media at N={n}"
                    f" (the others: {not_receiving(subscribers)})"
                )
                break
            await asyncio.sleep(2.0)
            step = await measure(server, publisher, subscribers, window)
            if not kept_up(step):
                # the machine is shared: one stalled window is measured again before it counts
                print(f"  {mode:8s} N={n:4d} again after {json.dumps(step)}", flush=True)
                step = await measure(server, publisher, subscribers, window)
                step["measured_twice"] = True
            results.append(step)
            print(f"  {mode:8s} N={n:4d} {json.dumps(step)}", flush=True)
            if not kept_up(step):
                stopped = f"a subscriber fell below {KEEP_UP:.0%} of frames at N={n}"
                if step["publisher_fps"] < KEEP_UP * FPS:
                    stopped = (
                        f"the publisher's video fell to {step['publisher_fps']} fps at N={n}"
                        " (its connection starved by the worker)"
                    )
                if step["loadgen_cpu_percent"] > 85:
                    stopped += (
                        f", with the load generator at {step['loadgen_cpu_percent']} % of its"
                        " core: this machine cannot offer more load"
                    )
                break
            if step["loadgen_cpu_percent"] > 90:
                stopped = f"the load generator saturated its core at N={n}"
                break
    finally:
        for subscriber in subscribers:
            await subscriber.close()
        await publisher.stop()
        await server.stop()
    return {"steps": results, "stopped": stopped, **capacity(results)}


def kept_up(step: dict[str, Any]) -> bool:
    """Served: every subscriber got its share of what the publisher sent, and the publisher
    still sent at its frame rate (a worker too busy for the publisher's connection makes it
    send less, and a share of almost nothing is not service)."""
    return step["min_frame_ratio"] >= KEEP_UP and step["publisher_fps"] >= KEEP_UP * FPS


def capacity(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares CPU = fixed + per_stream * N; streams per core from it."""
    kept = [s for s in steps if kept_up(s)]
    largest = max((s["subscribers"] for s in kept), default=0)
    served: dict[str, Any] = {"largest_n_keeping_up": largest}
    if kept:
        top = max(kept, key=lambda s: s["subscribers"])
        served["server_cpu_percent_at_largest_n"] = top["node_cpu_percent"]
        # measured, not fitted: N streams served by the share of one core it used
        if top["node_cpu_percent"] <= 100:
            served["streams_served_on_one_core"] = largest
    points = [(s["subscribers"], s["node_cpu_percent"]) for s in kept]
    if len(points) < 2:
        return served
    slope, fixed = _fit(points)
    return {
        **served,
        "cpu_percent_per_stream": round(slope, 3),
        "cpu_percent_fixed": round(fixed, 1),
        "streams_per_core": round((100 - fixed) / slope) if slope > 0 else None,
    }


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rtp_hooks.restrict_host_addresses([LOOPBACK])
    deadline = time.monotonic() + args.max_seconds
    load_before = load_average()
    print(f"forwarding worker, steps {args.steps}")
    forward = await run_mode("forward", args.steps, args.window, deadline, args.receivers)
    relay: dict[str, Any] = {}
    if args.relay_steps:
        print(f"MediaRelay baseline, steps {args.relay_steps}")
        relay = await run_mode(
            "relay", args.relay_steps, args.window, deadline + 120, args.receivers
        )
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {
        "benchmark": "forwarding",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                    "load_average_before": load_before, "load_average_after": load_average()},
        "publisher": {"video": "640x360 30 fps VP8", "video_cap_bps": VIDEO_BITRATE,
                      "audio": "Opus"},
        "window_s": args.window,
        "receivers": args.receivers,
        "pinned": {"server_core": SERVER_CORE, "load_generator_core": LOADGEN_CORE}
        if PINNED
        else None,
        "send_path": "sendmmsg" if datagram_batch.sendmmsg_enabled() else "python",
        "udp": "shared port" if SHARED_UDP_PORT else "a socket per connection",
        "git": _git_head(),
        "forward": forward,
        "relay": relay,
    }  # fmt: skip
    per_core, relay_per_core = forward.get("streams_per_core"), relay.get("streams_per_core")
    if per_core and relay_per_core:
        result["ratio_to_relay"] = round(per_core / relay_per_core, 1)
    served, relay_served = forward.get("largest_n_keeping_up"), relay.get("largest_n_keeping_up")
    if served and relay_served:
        result["served_ratio_to_relay"] = round(served / relay_served, 1)
    if per_core:
        result["node_streams_one_worker_per_core"] = per_core * cores
        result["target_per_core"] = TARGET_PER_CORE
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=_ints, default=[10, 25, 50, 75, 100, 125, 150])
    parser.add_argument("--relay-steps", type=_ints, default=[1, 2, 3, 4, 6])
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument(
        "--receivers",
        choices=["cheap", "full", "cross-check"],
        default="cheap",
        help="cheap: counted from clear RTP headers; full: decrypted and parsed by aiortc; "
        "cross-check: cheap subscribers that also decrypt every packet and count both ways",
    )
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to the OS")
    parser.add_argument(
        "--udp",
        choices=["shared", "per-connection"],
        default="shared",
        help="shared: every connection of the worker on one UDP port (media_node.udp_mux); "
        "per-connection: a socket per connection (the node's default)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    global PINNED, SHARED_UDP_PORT
    PINNED = not args.no_pin and pin(os.getpid(), LOADGEN_CORE)
    SHARED_UDP_PORT = args.udp == "shared"
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    forward, relay = result["forward"], result["relay"]
    print(
        f"\nforwarding: {forward.get('cpu_percent_per_stream')} % of a core per stream "
        f"(video + audio), {forward.get('streams_per_core')} streams per core "
        f"(target {TARGET_PER_CORE}); every subscriber kept >= 95 % of frames up to "
        f"N={forward['largest_n_keeping_up']} ({forward['stopped']})"
    )
    print(
        f"MediaRelay: {relay.get('cpu_percent_per_stream')} % per stream, "
        f"{relay.get('streams_per_core')} per core, "
        f"kept up to N={relay.get('largest_n_keeping_up')}"
        f"; ratio {result.get('ratio_to_relay')}x; node with one worker per core: "
        f"{result.get('node_streams_one_worker_per_core')} streams"
    )
    print(f"wrote {args.out}")


def _git_head() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip()


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v]


if __name__ == "__main__":
    main()
