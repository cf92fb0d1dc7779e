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

With ``--chromium`` the impaired participant is headless Chromium publishing its camera (a noise
clip, so its encoder spends what the congestion controller allows) from the demo page, always
behind the relay (``--loss 0`` and no delay for a baseline), and two bots subscribe on clean
paths; Chromium's ``getStats`` (bitrate, frame rate, NACKs, PLIs, round trip) is sampled every
second, and the bots count the frames of its video they decoded.
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


CHROMIUM_OUTBOUND = """(async () => {
  if (typeof pubPc === "undefined" || !pubPc) return null;
  const out = {};
  (await pubPc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      Object.assign(out, {bytes: s.bytesSent, at: s.timestamp, fps: s.framesPerSecond,
        retransmitted: s.retransmittedBytesSent, nacks: s.nackCount, plis: s.pliCount,
        width: s.frameWidth, height: s.frameHeight, limitation: s.qualityLimitationReason});
    }
    if (s.type === "remote-inbound-rtp" && s.kind === "video") {
      Object.assign(out, {rtt: s.roundTripTime, fraction_lost: s.fractionLost});
    }
  });
  return out.bytes === undefined ? null : out;
})()"""


async def _chromium(http_url: str, token: str, seconds: float) -> None:
    """Publish from the demo page in headless Chromium; print getStats samples as JSON."""
    import tempfile

    from tests.browser.chromium import Browser, ensure_chromium
    from tests.browser.conftest import write_camera

    camera = write_camera(Path(tempfile.mkdtemp()) / "noise.y4m", 960, 540, 30)
    # the page is served from the fabric's private address, which a browser does not count as
    # a secure context: camera access needs it named as one
    flags = (
        f"--use-file-for-fake-video-capture={camera}",
        f"--unsafely-treat-insecure-origin-as-secure={http_url}",
    )
    browser = Browser(ensure_chromium(), flags)
    await browser.start()
    samples: list[dict[str, Any]] = []
    state = None
    try:
        page = await browser.open(f"{http_url}/demo?room=impaired&video=960x540#token={token}")
        loaded = "document.readyState === 'complete' && !!window.rtcfleetDemo"
        await page.wait_for(loaded, 30, "the demo script")
        await page.evaluate("document.querySelector('#join button[type=submit]').click()")
        await page.wait_for("window.rtcfleetDemo?.joined", 30, "the page to join")
        started = time.monotonic()
        last = None
        while time.monotonic() - started < seconds:
            await asyncio.sleep(1.0)
            now = await page.evaluate(CHROMIUM_OUTBOUND)
            if now is None:
                continue
            if last is not None:
                bps = 8 * (now["bytes"] - last["bytes"]) * 1000 / max(now["at"] - last["at"], 1)
                samples.append(now | {"bps": round(bps), "t": round(time.monotonic() - started)})
            last = now
        state = await page.evaluate(
            "({status: window.rtcfleetDemo.status, errors: window.rtcfleetDemo.errors})"
        )
    finally:
        await browser.close()
        camera.unlink(missing_ok=True)
    print(json.dumps({"name": "chromium", "samples": samples, "page": state}), flush=True)


def _chromium_summary(samples: list[dict[str, Any]], skip_s: float) -> dict[str, Any]:
    """Chromium's sending over the samples after the first ``skip_s`` seconds (its ramp)."""
    steady = [s for s in samples if s["t"] > skip_s] or samples
    last = steady[-1] if steady else {}
    fps = sorted(s["fps"] for s in steady if s.get("fps") is not None)
    return {
        "steady_from_s": skip_s,
        "mean_bitrate_bps": round(sum(s["bps"] for s in steady) / max(len(steady), 1)),
        "min_bitrate_bps": min((s["bps"] for s in steady), default=None),
        "median_fps": fps[len(fps) // 2] if fps else None,
        "min_fps": fps[0] if fps else None,
        "resolution": [last.get("width"), last.get("height")],
        "nacks_received": last.get("nacks"),
        "plis_received": last.get("plis"),
        "retransmitted_bytes": last.get("retransmitted"),
        "round_trip_s": last.get("rtt"),
        "quality_limitation": last.get("limitation"),
        "bitrate_per_second_bps": [s["bps"] for s in samples],
    }


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


def _decoded(report: dict[str, Any], publisher: str) -> dict[str, Any]:
    """What a subscriber decoded of a publisher whose frames carry no number (a camera)."""
    video = next(
        (t for t in report["tracks"] if t["publisher"] == publisher and t["kind"] == "video"),
        None,
    )
    if video is None:
        return {"subscriber": report["name"], "frames_decoded": 0, "tracks": report["tracks"]}
    return {
        "subscriber": report["name"],
        "frames_decoded": video["frames_decoded"],
        "longest_freeze_s": max(video["longest_gap_s"], video["since_last_frame_s"] or 0.0),
        "freezes_over_half_s": video["gaps_over_half_s"],
        "size": [video["width"], video["height"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", type=int, default=5, help="percent of UDP packets dropped")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one way, through the relay")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± around the delay")
    parser.add_argument("--reorder", action="store_true", help="jitter may reorder datagrams")
    parser.add_argument("--chromium", action="store_true", help="Chromium is the impaired one")
    parser.add_argument("--participant", nargs=3, metavar=("URL", "TOKEN", "NAME"))
    args = parser.parse_args()
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    if args.participant:
        url, token, name = args.participant
        if name == "chromium":
            asyncio.run(_chromium(url, token, args.seconds))
        else:
            asyncio.run(_participant([url], token, name, args.seconds))
        return

    from media_node.settings import ICE_ADDRESSES_ENV
    from rtcfleet.local import FleetSpec, LocalFleet
    from rtcfleet.netfault import Fabric, Impairment, Loss

    relayed = args.chromium or args.delay_ms > 0 or args.jitter_ms > 0
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
            if args.chromium:
                names = ["chromium", "viewer-1", "viewer-2"]
            settle = 8.0
            addresses = fabric.client_addresses[: len(names)]
            prefixes: list[list[str]] = [[] for _ in names]
            impaired = 0 if args.chromium else 1
            if relayed:
                host = fabric.add_impaired_host("lossy", impairment, args.seconds + settle + 90)
                addresses[impaired], prefixes[impaired] = host.address, host.exec_prefix()
            # the publisher stays 5 s longer: its leaving is no freeze of the others'
            for index, name in enumerate(names):
                env = os.environ | {ICE_ADDRESSES_ENV: addresses[index]}
                children.append(
                    subprocess.Popen(
                        [*prefixes[index], sys.executable, "-m", "benchmarks.impairment",
                         "--seconds", str(args.seconds + settle + (5 if index == 0 else 0)),
                         "--participant",
                         url.removesuffix("/v1/signal").replace("ws://", "http://", 1)
                         if name == "chromium" else url,
                         fleet.token("impaired", name), name],
                        stdout=subprocess.PIPE, text=True, env=env,
                    )
                )  # fmt: skip
            time.sleep(settle)
            if relayed:
                fault = f"{impairment.describe()} through the relay from the join on"
            else:
                fabric.apply([Loss((addresses[impaired],), args.loss)])
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
    who = "the Chromium publisher" if args.chromium else "the lossy subscriber"
    result: dict[str, Any] = {
        "fault": f"{fault}, for {who} ({addresses[impaired]}) only",
        "relay": fabric.relay_reports(),
        "load_average_before": load_before,
        "impaired_seconds": round(impaired_for, 1),
        "settle_seconds_before_loss": settle,
        "load_average": os.getloadavg(),
    }
    if args.chromium:
        result["chromium_sending"] = _chromium_summary(reports[0]["samples"], settle)
        result["chromium_page"] = reports[0]["page"]
        result["chromium_video_as_received"] = [_decoded(r, "chromium") for r in reports[1:]]
        name = f"impairment_chromium{'_clean' if impairment == Impairment() else ''}.json"
        path = RESULTS.with_name(name)
    else:
        result["publisher_video_as_received"] = [_summary(r, "publisher") for r in reports[1:]]
        relay_name = "impairment_relay_reorder.json" if args.reorder else "impairment_relay.json"
        path = RESULTS.with_name(relay_name) if relayed else RESULTS
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
