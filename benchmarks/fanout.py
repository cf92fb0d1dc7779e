"""CPU of the fan-out alone: what one published packet costs per subscriber, send included.

Run: ``.venv/bin/python -m benchmarks.fanout [--subscribers 50] [--seconds 6]``.

The SFU (`media_node.sfu.Sfu`), N `CheapSubscriber`s and the timing share one process; the
publisher runs in a process of its own. Every call of `PublishedTrack.on_rtp` (which forwards
to all subscribers without suspending) is timed with the thread's CPU clock, so the figure is
CPU spent, not wall time: other processes on a shared machine slow it far less than they slow
the end-to-end benchmark (`benchmarks.forwarding`). The result is CPU microseconds per
subscriber per packet, the send system calls (and loopback delivery, which the kernel does in
the sender's call) included; decryption and counting at the subscribers are not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.forwarding import LOOPBACK, Publisher, wait_receiving
from benchmarks.loadgen import CheapSubscriber
from media_node import datagram_batch, rtp_hooks
from media_node.publisher import PublishedTrack
from media_node.sfu import Sfu, SfuConfig

ROOM = "fanout"
RESULTS = Path(__file__).resolve().parent / "results" / "fanout.json"


async def run(subscribers: int, seconds: float, shared_udp_port: bool = False) -> dict[str, Any]:
    rtp_hooks.restrict_host_addresses([LOOPBACK])
    viewers: dict[str, CheapSubscriber] = {}
    tasks: set[asyncio.Task[None]] = set()
    closing = False

    async def answer(name: str, sdp: str) -> None:
        await sfu.subscriber_answer(ROOM, name, await viewers[name].answer(sdp))

    def on_event(room: str, who: str, kind: str, payload: dict[str, Any]) -> None:
        # (the publisher's departure at the end re-offers to viewers already closed)
        if kind == "subscriber_offer" and who in viewers and not closing:
            task = asyncio.ensure_future(answer(who, payload["sdp"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    config = SfuConfig(
        max_video_bitrate=1_200_000, local_candidates=True, shared_udp_port=shared_udp_port
    )
    sfu = Sfu(config, on_event)
    publisher = Publisher()
    await sfu.join(ROOM, "publisher", can_publish=True, can_subscribe=False)
    publisher.answer(await sfu.publish_offer(ROOM, "publisher", await publisher.offer()))
    await asyncio.sleep(3)
    for i in range(subscribers):
        viewers[f"v{i}"] = CheapSubscriber(f"v{i}")
        await sfu.join(ROOM, f"v{i}", can_publish=False, can_subscribe=True)
    if not await wait_receiving(list(viewers.values()), 60):
        raise RuntimeError("not every subscriber received media")
    await asyncio.sleep(1)

    spent = [0.0, 0]  # CPU seconds, packets
    original: Callable[..., Awaitable[None]] = PublishedTrack.on_rtp

    async def timed(self: PublishedTrack, *args: Any) -> None:
        start = time.thread_time()
        await original(self, *args)
        if self.downtracks:
            spent[0] += time.thread_time() - start
            spent[1] += 1

    setattr(PublishedTrack, "on_rtp", timed)  # noqa: B010
    load_before = [round(x, 2) for x in os.getloadavg()]
    await asyncio.sleep(seconds)
    setattr(PublishedTrack, "on_rtp", original)  # noqa: B010
    cpu, packets = spent
    closing = True
    for viewer in viewers.values():
        await viewer.close()
    await publisher.stop()
    await sfu.close()
    return {
        "benchmark": "fanout",
        "subscribers": subscribers,
        "seconds": seconds,
        "packets_in": packets,
        "send_path": "sendmmsg" if datagram_batch.sendmmsg_enabled() else "python",
        "udp": "shared port" if shared_udp_port else "a socket per connection",
        "cpu_us_per_incoming_packet": round(1e6 * cpu / max(packets, 1), 1),
        "cpu_us_per_subscriber_packet": round(1e6 * cpu / max(packets * subscribers, 1), 2),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--udp", choices=["shared", "per-connection"], default="per-connection")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(run(args.subscribers, args.seconds, args.udp == "shared"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
