"""A call through an impaired path: one subscriber's packets dropped (and delayed), the others' not.

A one-region local fleet runs on a network fabric (``rtcfleet.netfault``, root needed); three
bots join one room, each in a process of its own with its own address on the fabric (ICE
gathers on that address only). With ``--loss`` alone, once media flows, that share of the UDP
packets to and from the "lossy" bot's address is dropped on the bridge (nftables' random drop)
for ``--seconds``. With ``--delay-ms``/``--jitter-ms`` the lossy bot runs in a host of its own
behind the userspace relay (``rtcfleet.netfault.relay``: this kernel has no netem), which drops
``--loss`` % of its UDP and delays the rest by the delay ± jitter, both ways, from its join on.
For the publisher's video as each subscriber decoded it: the share of frames decoded (by
sequence number), the frames lost, and the longest freeze.

    .venv/bin/python -m benchmarks.impairment --loss 5 --seconds 60
    .venv/bin/python -m benchmarks.impairment --loss 5 --delay-ms 40 --jitter-ms 20 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "impairment.json"


async def _participant(urls: list[str], token: str, name: str, seconds: float) -> None:
    from media_node import rtp_hooks
    from rtcfleet.client.bot import Bot

    rtp_hooks.restrict_host_addresses_from_environment()
    bot = Bot(urls, token, name=name, width=320, height=180, fps=15)
    await bot.start()
    await asyncio.sleep(seconds)
    print(json.dumps(bot.report()), flush=True)
    await bot.close()


def _summary(report: dict[str, Any], publisher: str) -> dict[str, Any]:
    video = next(
        t for t in report["tracks"] if t["publisher"] == publisher and t["kind"] == "video"
    )
    expected = video["frames_expected"]
    kept = expected - video["frames_lost"]
    return {
        "subscriber": report["name"],
        "frames_expected": expected,
        "frames_decoded_share": round(kept / expected, 4) if expected else None,
        "frames_lost": video["frames_lost"],
        # a freeze still going on at the end counts
        "longest_freeze_s": max(video["longest_gap_s"], video["since_last_frame_s"] or 0.0),
        "freezes_over_half_s": video["gaps_over_half_s"],
        "media_rejoins": report["media_rejoins"],
        "media_timeouts": report["media_timeouts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", type=int, default=5, help="percent of UDP packets dropped")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one way, through the relay")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± around the delay")
    parser.add_argument("--reorder", action="store_true", help="jitter may reorder datagrams")
    parser.add_argument("--participant", nargs=3, metavar=("URL", "TOKEN", "NAME"))
    args = parser.parse_args()
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    if args.participant:
        url, token, name = args.participant
        asyncio.run(_participant([url], token, name, args.seconds))
        return

    from media_node.rtp_hooks import ICE_ADDRESSES_ENV
    from rtcfleet.local import FleetSpec, LocalFleet
    from rtcfleet.netfault import Fabric, Impairment, Loss

    relayed = args.delay_ms > 0 or args.jitter_ms > 0
    try:
        impairment = Impairment(args.delay_ms, args.jitter_ms, args.loss, args.reorder)
    except ValueError as exc:
        parser.error(str(exc))
    load_before = os.getloadavg()
    fabric = Fabric().start()
    children: list[subprocess.Popen[str]] = []
    try:
        fleet = LocalFleet(FleetSpec(regions=1, gateways=1, media=1), fabric=fabric).start()
        try:
            url = fleet.gateway_urls("local-1")[0]
            names = ["publisher", "lossy", "clean"]
            settle = 8.0
            addresses = fabric.client_addresses[: len(names)]
            prefixes: list[list[str]] = [[] for _ in names]
            if relayed:
                host = fabric.add_impaired_host("lossy", impairment, args.seconds + settle + 90)
                addresses[1], prefixes[1] = host.address, host.exec_prefix()
            for index, name in enumerate(names):
                env = os.environ | {ICE_ADDRESSES_ENV: addresses[index]}
                children.append(
                    subprocess.Popen(
                        [*prefixes[index], sys.executable, "-m", "benchmarks.impairment",
                         "--seconds", str(args.seconds + settle),
                         "--participant", url, fleet.token("impaired", name), name],
                        stdout=subprocess.PIPE, text=True, env=env,
                    )
                )  # fmt: skip
            time.sleep(settle)
            if relayed:
                fault = f"{impairment.describe()} through the relay from the join on"
            else:
                fabric.apply([Loss((addresses[1],), args.loss)])
                fault = f"{args.loss} % UDP loss on the bridge after {settle:g} s"
            started = time.monotonic()
            reports = []
            for child in children:
                out, _ = child.communicate(timeout=args.seconds + settle + 60)
                reports.append(json.loads(out.strip().splitlines()[-1]))
            impaired_for = time.monotonic() - started
            fabric.heal()
        finally:
            fleet.remove()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        fabric.remove()
    result = {
        "fault": f"{fault}, for the lossy subscriber ({addresses[1]}) only",
        "relay": fabric.relay_reports(),
        "load_average_before": load_before,
        "impaired_seconds": round(impaired_for, 1),
        "settle_seconds_before_loss": settle,
        "load_average": os.getloadavg(),
        "publisher_video_as_received": [_summary(r, "publisher") for r in reports[1:]],
    }
    path = RESULTS.with_name("impairment_relay.json") if relayed else RESULTS
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
