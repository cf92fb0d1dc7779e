"""Traces across the region's real processes: gateway -> Redis -> media node -> worker -> back.

A local fleet exports to an OTLP/HTTP receiver run by the test (``tests.otlp_receiver``), as
it would to a collector; the spans checked are those the three kinds of process sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial

import aiohttp
import pytest

from rtcfleet.client.bot import Bot
from rtcfleet.local import FleetSpec, LocalFleet
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.platform.conftest import receives_from, wait_until

pytestmark = pytest.mark.slow

GATEWAY, NODE, WORKER = "rtcfleet-gateway", "rtcfleet-media-node", "rtcfleet-media-worker"


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[LocalFleet, OtlpReceiver]]:
    """One gateway and one media node (one worker), exporting to the test's receiver."""
    receiver = OtlpReceiver().start()
    spec = FleetSpec(regions=1, gateways=1, media=1, otlp_endpoint=receiver.endpoint)
    fleet = LocalFleet(spec)
    try:
        with pytest.MonkeyPatch.context() as patch:
            # export every 100 ms, not every 5 s (the SDK's own variable, read by each service)
            patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
            fleet.start()
        yield fleet, receiver
    finally:
        fleet.remove()
        receiver.stop()


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{len(found)} spans {service}/{name} in {describe(spans)}"
    return found[0]


def describe(spans: list[ReceivedSpan]) -> list[str]:
    return [f"{s.service}/{s.name} {s.span_id}<-{s.parent_id or 'root'}" for s in spans]


def assert_child(child: ReceivedSpan, parent: ReceivedSpan) -> None:
    assert child.trace_id == parent.trace_id
    assert child.parent_id == parent.span_id, f"{child.name}'s parent is not {parent.name}"
    assert child.start_ns >= parent.start_ns, f"{child.name} starts before {parent.name}"


def trace_of(spans: list[ReceivedSpan], name: str, session: str) -> list[ReceivedSpan]:
    """The trace a gateway started for ``session``'s client message ``name`` (empty: none)."""
    roots = [
        s
        for s in spans
        if s.service == GATEWAY
        and s.name == name
        and s.attributes.get("rtcfleet.session") == session
    ]
    assert len(roots) <= 1, f"{len(roots)} {name} traces for {session}"
    return [s for s in spans if roots and s.trace_id == roots[0].trace_id]


async def complete_trace(
    receiver: OtlpReceiver, name: str, session: str, names: set[str]
) -> list[ReceivedSpan]:
    """That trace once every process has exported the spans named (each exports on its own)."""
    await receiver.wait_for(
        lambda spans: names <= {s.name for s in trace_of(spans, name, session)},
        15,
        f"{sorted(names)} in the trace of {name} of {session}",
    )
    return trace_of(list(receiver.spans), name, session)


async def test_a_join_is_one_trace_from_gateway_to_worker_and_back(
    traced: tuple[LocalFleet, OtlpReceiver],
) -> None:
    fleet, receiver = traced
    gateway = fleet.regions[fleet.home].gateways[0]
    urls = [gateway.signal_url]
    alice = Bot(urls, fleet.token("traced", "alice"), name="alice", width=320, height=180, fps=15)
    bob = Bot(urls, fleet.token("traced", "bob"), name="bob", width=320, height=180, fps=15)
    try:
        await alice.start()
        # alice's tracks are in the room once the worker answered her offer
        await receiver.wait_for(
            lambda spans: any(s.name == "worker publish_offer" for s in spans),
            15,
            "alice's publish",
        )
        await bob.start()
        # bob's join found alice's tracks: the worker offered them to him in the same trace
        await wait_until(partial(receives_from, bob, ["alice"]), 20, "bob's media from alice")
    finally:
        await asyncio.gather(alice.close(), bob.close())
    bob_session, alice_session = bob.session.session_id, alice.session.session_id
    assert bob_session and alice_session

    join = await complete_trace(
        receiver,
        "signal join",
        bob_session,
        {
            "signal join",
            "placement",
            "send join",
            "node join",
            "worker join",
            "negotiate subscriber",
            "deliver subscriber_offer",
            "deliver joined",
        },
    )
    print("\n".join(describe(join)))
    root = one(join, GATEWAY, "signal join")
    assert root.parent_id == "" and root.kind == "server"
    assert root.attributes["rtcfleet.room"] == "traced"
    placement = one(join, GATEWAY, "placement")
    assert_child(placement, root)
    assert placement.attributes["rtcfleet.node"] == bob.session.node_id
    send = one(join, GATEWAY, "send join")
    assert_child(send, root)
    assert send.kind == "producer" and send.attributes["messaging.system"] == "redis"
    assert placement.end_ns <= send.start_ns, "the command went out before the room was placed"
    node = one(join, NODE, "node join")
    assert_child(node, send)
    assert node.kind == "consumer" and node.instance == bob.session.node_id
    worker = one(join, WORKER, "worker join")
    assert_child(worker, node)
    negotiate = one(join, WORKER, "negotiate subscriber")
    assert_child(negotiate, worker)
    offer = one(join, GATEWAY, "deliver subscriber_offer")
    assert_child(offer, negotiate)
    answer = one(join, GATEWAY, "deliver joined")
    assert_child(answer, root)
    assert not any(s.error for s in join), describe([s for s in join if s.error])

    # alice's publish: the worker's negotiation, and its answer back through the gateway
    publish = await complete_trace(
        receiver,
        "signal publish_offer",
        alice_session,
        {
            "signal publish_offer",
            "send publish_offer",
            "node publish_offer",
            "worker publish_offer",
            "negotiate publisher",
            "deliver publish_answer",
        },
    )
    print("\n".join(describe(publish)))
    root = one(publish, GATEWAY, "signal publish_offer")
    send = one(publish, GATEWAY, "send publish_offer")
    assert_child(send, root)
    node = one(publish, NODE, "node publish_offer")
    assert_child(node, send)
    worker = one(publish, WORKER, "worker publish_offer")
    assert_child(worker, node)
    assert_child(one(publish, WORKER, "negotiate publisher"), worker)
    assert_child(one(publish, GATEWAY, "deliver publish_answer"), worker)


async def test_a_refused_command_is_logged_with_its_trace_id(
    traced: tuple[LocalFleet, OtlpReceiver],
) -> None:
    """The worker's log line about a refused command names the trace the gateway started."""
    fleet, receiver = traced
    gateway = fleet.regions[fleet.home].gateways[0]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(gateway.signal_url) as ws,
    ):
        await ws.send_str(json.dumps({"type": "join", "token": fleet.token("lonely", "carol")}))
        joined = json.loads((await ws.receive(timeout=10)).data)
        assert joined["type"] == "joined", joined
        # an offer whose media line is cut short: the worker refuses it
        await ws.send_str(json.dumps({"type": "publish_offer", "sdp": "v=0\r\nm=audio\r\n"}))
        while (reply := json.loads((await ws.receive(timeout=10)).data))["type"] != "error":
            pass
        assert reply["code"] == "media_error", reply
    session = joined["session_id"]

    spans = await complete_trace(
        receiver,
        "signal publish_offer",
        session,
        {"signal publish_offer", "worker publish_offer", "deliver error"},
    )
    worker = one(spans, WORKER, "worker publish_offer")
    assert_child(one(spans, GATEWAY, "deliver error"), worker)
    node = fleet.regions[fleet.home].media_nodes[0]
    log = (fleet.workdir / "logs" / f"{node.name}.log").read_text()
    lines = [line for line in log.splitlines() if "command publish_offer refused" in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"trace_id={worker.trace_id} span_id={worker.span_id}"), lines[0]
