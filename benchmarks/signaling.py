"""Signaling throughput of one gateway process, and the latency it adds.

Run: ``.venv/bin/python -m benchmarks.signaling [--rates 500,1000,...] [--window 5]``.

A local fleet (Redis with Sentinel, Postgres, one gateway, one media node) on loopback. WebSocket
clients join rooms, then send ``trickle`` messages for a publisher connection they never opened;
each one crosses the gateway into Redis (the node's inbox stream), the media node answers it with
an ``error`` (``forbidden``) into the session's stream, and the gateway relays that back: one
message relayed each way, the full path of every offer and answer. Clients stay under the
per-socket rate limit (40 of 50 messages/s), so a step's offered rate is set by the client count.

Per step: messages the gateway relayed per second (both directions) and its CPU share, which give
messages per gateway core-second; and the latency the gateway adds, from Redis' own stream entry
ids (server time, 1 ms resolution): client send -> entry in the node's inbox, and the session
entry -> client receipt. The round trip (with the media node's work) is reported beside them.

``--tracing on`` runs every service with an OTLP endpoint: a receiver in this process that
decodes and counts what the services export (rtcfleet.tracing); ``off`` (the default) runs
them as deployed without one. Each trickle is then one trace of five spans in three processes.
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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.loadgen import process_cpu_seconds
from rtcfleet import bus, redis_url
from rtcfleet.local import FleetSpec, LocalFleet

RESULTS = Path(__file__).resolve().parent / "results" / "signaling.json"
PER_CLIENT_RATE = 40.0
SUSTAINED_P99_MS = 100.0
ROOMS = 20


@dataclass
class Client:
    index: int
    ws: aiohttp.ClientWebSocketResponse
    session_id: str = ""
    sent: dict[int, float] = field(default_factory=dict)  # seq -> wall ms at send
    pending: list[tuple[int, float]] = field(default_factory=list)  # (seq, perf s) FIFO
    round_trips: list[float] = field(default_factory=list)
    egress_ms: list[float] = field(default_factory=list)
    replies: int = 0


def candidate(seq: int) -> dict[str, Any]:
    return {
        "candidate": f"candidate:{seq} 1 udp 2122260223 127.0.0.1 9 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }


async def read_replies(client: Client) -> None:
    async for frame in client.ws:
        if frame.type != aiohttp.WSMsgType.TEXT:
            return
        message = json.loads(frame.data)
        if message.get("type") == "joined":
            client.session_id = message["session_id"]
        if message.get("type") != "error" or message.get("code") != "forbidden":
            continue
        now_wall, now = time.time() * 1000, time.perf_counter()
        client.replies += 1
        if client.pending:
            _, sent_at = client.pending.pop(0)
            client.round_trips.append(1000 * (now - sent_at))
        cursor = message.get("cursor")
        if cursor:
            client.egress_ms.append(now_wall - int(cursor.split("-")[0]))


async def send_loop(client: Client, seqs: list[int], rate: float, stop: asyncio.Event) -> None:
    interval = 1.0 / rate
    await asyncio.sleep(interval * (client.index % 40) / 40)  # spread the clients' phases
    next_at = time.perf_counter()
    while not stop.is_set():
        seq = seqs[0] = seqs[0] + 1
        message = {"type": "trickle", "target": "publisher", "candidate": candidate(seq)}
        client.sent[seq] = time.time() * 1000
        client.pending.append((seq, time.perf_counter()))
        await client.ws.send_str(json.dumps(message))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


async def watch_inbox(
    redis: Any, stream: str, arrivals: dict[int, int], stop: asyncio.Event
) -> None:
    """Record the Redis time at which each trickle entered the media node's inbox."""
    last = "$"
    while not stop.is_set():
        for _, entries in await bus.read_streams(redis, {stream: last}, block_ms=200, count=1000):
            for entry_id, fields in entries:
                last = entry_id
                command = bus.decode_entry(fields)
                if command.get("op") == "trickle" and command.get("candidate"):
                    seq = int(command["candidate"]["candidate"].split()[0].split(":")[1])
                    arrivals[seq] = int(entry_id.split("-")[0])


class SpanSink:
    """An OTLP/HTTP receiver that counts the spans it is sent, in a process of its own: decoding
    exports in the clients' loop would delay their sends and show up as gateway latency."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._spans = context.Value("q", 0)
        self._requests = context.Value("q", 0)
        self._ready = context.Queue()
        self.process = context.Process(
            target=serve_sink, args=(self._spans, self._requests, self._ready), daemon=True
        )

    @property
    def spans(self) -> int:
        return int(self._spans.value)

    @property
    def requests(self) -> int:
        return int(self._requests.value)

    async def start(self) -> str:
        self.process.start()
        port = await asyncio.to_thread(self._ready.get, True, 30)
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.process.terminate()
        await asyncio.to_thread(self.process.join, 5)


def serve_sink(spans: Any, requests: Any, ready: Any) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    async def export(request: web.Request) -> web.Response:
        batch = ExportTraceServiceRequest()
        batch.ParseFromString(await request.read())
        with requests.get_lock():
            requests.value += 1
        with spans.get_lock():
            spans.value += sum(
                len(scope.spans)
                for resource in batch.resource_spans
                for scope in resource.scope_spans
            )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", export)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ready.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(serve())


def percentiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": None, "p99": None}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p99": round(cuts[98], 2)}


async def run(
    rates: list[int], window: float, deadline: float, tracing: bool = False
) -> dict[str, Any]:
    sink = SpanSink() if tracing else None
    endpoint = await sink.start() if sink is not None else None
    fleet = LocalFleet(
        FleetSpec(regions=1, gateways=1, media=1, log_level="WARNING", otlp_endpoint=endpoint)
    )
    await asyncio.to_thread(fleet.start)
    http = aiohttp.ClientSession()
    region = fleet.regions[fleet.home]
    gateway = region.gateways[0]
    gateway_pid = gateway.process.pid
    node_pid = region.media_nodes[0].process.pid
    assert gateway_pid is not None and node_pid is not None
    redis = redis_url.connect(region.redis.url)
    clients: list[Client] = []
    readers: list[asyncio.Task[None]] = []
    steps: list[dict[str, Any]] = []
    seqs = [0]
    node_id = ""
    stopped = "all steps measured"
    try:
        for rate in rates:
            if time.monotonic() > deadline:
                stopped = "time budget"
                break
            wanted = max(1, round(rate / PER_CLIENT_RATE))
            while len(clients) < wanted:
                index = len(clients)
                ws = await http.ws_connect(gateway.signal_url, max_msg_size=0)
                client = Client(index, ws)
                clients.append(client)
                readers.append(asyncio.create_task(read_replies(client)))
                token = fleet.token(f"sig-{index % ROOMS}", f"client-{index}")
                await ws.send_str(json.dumps({"type": "join", "token": token}))
            await asyncio.sleep(1.0 + wanted * 0.01)
            if not node_id:
                record = await redis.hgetall(bus.session_key(clients[0].session_id))
                node_id = str(record.get("node_id", ""))
            arrivals: dict[int, int] = {}
            stop = asyncio.Event()
            watcher = asyncio.create_task(
                watch_inbox(redis, bus.node_inbox(node_id), arrivals, stop)
            )
            for client in clients:
                client.sent.clear()
                client.pending.clear()
                client.round_trips.clear()
                client.egress_ms.clear()
                client.replies = 0
            senders = [
                asyncio.create_task(send_loop(c, seqs, PER_CLIENT_RATE, stop)) for c in clients
            ]
            await asyncio.sleep(1.0)  # warm-up, not counted
            for client in clients:
                client.round_trips.clear()
                client.egress_ms.clear()
            replies0 = sum(c.replies for c in clients)
            sent0 = seqs[0]
            spans_before = sink.spans if sink is not None else 0
            node_cpu0 = process_cpu_seconds(node_pid)
            cpu0, started = process_cpu_seconds(gateway_pid), time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - started
            cpu = process_cpu_seconds(gateway_pid) - cpu0
            node_cpu = process_cpu_seconds(node_pid) - node_cpu0
            spans_after = sink.spans if sink is not None else 0
            sent, replies = seqs[0] - sent0, sum(c.replies for c in clients) - replies0
            stop.set()
            await asyncio.gather(*senders)
            await asyncio.sleep(1.0)  # let the last replies come home
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            ingress = [
                arrivals[seq] - at for c in clients for seq, at in c.sent.items() if seq in arrivals
            ]
            unanswered = sum(len(c.pending) for c in clients)
            relayed = (sent + replies) / elapsed
            cpu_share = cpu / elapsed
            step: dict[str, Any] = {
                "clients": len(clients),
                "offered_in_per_s": round(len(clients) * PER_CLIENT_RATE),
                "relayed_per_s": round(relayed),
                "gateway_cpu_percent": round(100 * cpu_share, 1),
                "relayed_per_gateway_core_s": round(relayed / cpu_share) if cpu_share else None,
                "node_supervisor_cpu_percent": round(100 * node_cpu / elapsed, 1),
                "unanswered": unanswered,
                "gateway_in_ms": percentiles(ingress),
                "gateway_out_ms": percentiles([e for c in clients for e in c.egress_ms]),
                "round_trip_ms": percentiles([r for c in clients for r in c.round_trips]),
            }
            if sink is not None:
                step["spans_exported_per_s"] = round((spans_after - spans_before) / elapsed)
            steps.append(step)
            print(f"  {json.dumps(step)}", flush=True)
            if step["gateway_cpu_percent"] > 90:
                stopped = f"the gateway saturated its core at {rate} msg/s offered"
                break
            if unanswered > 0.05 * max(sent, 1):
                stopped = f"replies fell behind at {rate} msg/s offered"
                break
    finally:
        for client in clients:
            await client.ws.close()
        for reader in readers:
            reader.cancel()
        await http.close()
        await redis.aclose()
        await asyncio.to_thread(fleet.remove)
        if sink is not None:
            await sink.stop()
    # sustained: everything answered with a round trip under SUSTAINED_P99_MS
    keeping_up = [
        s
        for s in steps
        if s["unanswered"] == 0 and (s["round_trip_ms"]["p99"] or 1e9) < SUSTAINED_P99_MS
    ]
    return {
        "steps": steps,
        "stopped": stopped,
        "sustained": max(keeping_up, key=lambda s: s["relayed_per_s"], default=None),
        "peak": max(steps, key=lambda s: s["relayed_per_s"], default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--rates",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[250, 500, 1000, 1500, 2000, 3000],
    )
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--tracing", choices=["off", "on"], default="off")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    result = asyncio.run(
        run(args.rates, args.window, time.monotonic() + args.max_seconds, args.tracing == "on")
    )
    result = {
        "benchmark": "signaling",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "path": "client WebSocket -> gateway -> Redis stream -> media node -> Redis -> gateway",
        "tracing": args.tracing,
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("sustained", "peak"):
        step = result[name]
        if step:
            print(
                f"{name}: {step['relayed_per_s']} messages/s relayed at "
                f"{step['gateway_cpu_percent']} % of a gateway core "
                f"({step['relayed_per_gateway_core_s']} per core-second); gateway adds "
                f"{step['gateway_in_ms']} ms in and {step['gateway_out_ms']} ms out; "
                f"round trip {step['round_trip_ms']} ms"
            )
    print(f"stopped: {result['stopped']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
