"""rtcfleet.tracing in one process: nothing at all when off; when on, context through a real
Redis stream entry and a pipe message, spans exported over OTLP/HTTP, ids in log lines."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator

import pytest

from rtcfleet import bus, redis_url, tracing
from rtcfleet.node_messages import NodeJoin, parse_worker_command
from rtcfleet.servers import RedisServer
from tests.otlp_receiver import OtlpReceiver

SESSION = "a" * 32


def join() -> NodeJoin:
    return NodeJoin(session=SESSION, room="r", identity="i", can_publish=True, can_subscribe=True)


async def last_entry(server: RedisServer, stream: str) -> dict[str, str]:
    redis = redis_url.connect(server.url)
    try:
        entries = await bus.read_streams(redis, {stream: "0-0"}, block_ms=100, count=1000)
        return entries[0][1][-1][1]
    finally:
        await redis.aclose()


async def test_off_every_helper_is_a_no_op_and_entries_carry_only_the_payload(
    redis_server: RedisServer,
) -> None:
    assert not tracing.enabled()
    first, second = tracing.span("a"), tracing.span("b", kind=tracing.SpanKind.SERVER)
    assert first is second, "off, a span must be the one shared no-op"
    assert tracing.continued("c", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is (
        first
    )
    assert tracing.carrier() == {}
    message = join().model_dump(mode="json")
    assert tracing.to_pipe(message) is message and tracing.PIPE_KEY not in message
    redis = redis_url.connect(redis_server.url)
    try:
        with tracing.span("signal join"):
            await bus.send_to_node(redis, "off-node", join())
    finally:
        await redis.aclose()
    assert set(await last_entry(redis_server, bus.node_inbox("off-node"))) == {"m"}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


async def test_on_context_crosses_a_stream_entry_and_a_pipe_and_logs_name_it(
    redis_server: RedisServer, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    # setup() hands its export to child processes through the environment: undone afterwards
    monkeypatch.setenv(tracing.WORKER_ENV, "")
    settings = tracing.TracingSettings(otlp_endpoint=receiver.endpoint)
    assert tracing.setup("test-gateway", settings, instance="gw-1", region="r1")
    try:
        redis = redis_url.connect(redis_server.url)
        try:
            with tracing.span("signal join", kind=tracing.SpanKind.SERVER):
                await bus.send_to_node(redis, "on-node", join())
        finally:
            await redis.aclose()
        fields = await last_entry(redis_server, bus.node_inbox("on-node"))
        assert tracing.TRACEPARENT in fields
        # the node's side: continue from the entry, hand on through the pipe
        with tracing.continued("node join", fields):
            item = tracing.to_pipe(join().model_dump(mode="json"))
        carrier = tracing.from_pipe(item)
        parse_worker_command(item)  # what is left is the command, valid as it was
        with tracing.continued("worker join", carrier):
            logging.getLogger("rtcfleet.test").warning("inside the worker's span")
        logging.getLogger("rtcfleet.test").warning("outside any span")
        # nothing continues a context nobody handed over
        assert tracing.continued("orphan", {}) is tracing.continued("orphan", None)
    finally:
        tracing.shutdown()
    await receiver.wait_for(lambda spans: len(spans) >= 4, 10, "4 spans")
    spans = {s.name: s for s in receiver.spans}
    assert set(spans) == {"signal join", "send join", "node join", "worker join"}
    assert spans["signal join"].parent_id == ""
    for child, parent in (
        ("send join", "signal join"),
        ("node join", "send join"),
        ("worker join", "node join"),
    ):
        assert spans[child].parent_id == spans[parent].span_id, child
        assert spans[child].trace_id == spans["signal join"].trace_id
    assert spans["send join"].kind == "producer"
    assert spans["send join"].attributes["messaging.destination.name"] == bus.node_inbox("on-node")
    assert fields[tracing.TRACEPARENT].split("-")[1:3] == [
        spans["send join"].trace_id,
        spans["send join"].span_id,
    ]
    assert {s.service for s in receiver.spans} == {"test-gateway"}
    assert {s.instance for s in receiver.spans} == {"gw-1"}
    worker = spans["worker join"]
    inside, outside = lines.getvalue().splitlines()
    assert inside == (
        "rtcfleet.test: inside the worker's span "
        f"trace_id={worker.trace_id} span_id={worker.span_id}"
    )
    assert outside == "rtcfleet.test: outside any span"
    assert not tracing.enabled()
    assert tracing.WORKER_ENV in os.environ  # for this process's workers, until undone


def test_bad_endpoints_are_refused_with_the_field_named() -> None:
    from pydantic import ValidationError

    for bad in ("collector:4318", "ftp://collector", "http://"):
        with pytest.raises(ValidationError, match="otlp_endpoint"):
            tracing.TracingSettings(otlp_endpoint=bad)
    with pytest.raises(ValidationError, match="trace_sample_ratio"):
        tracing.TracingSettings(trace_sample_ratio=1.5)
    assert tracing.TracingSettings(otlp_endpoint="").otlp_endpoint is None
    assert tracing.TracingSettings(otlp_endpoint="http://c:4318/").otlp_endpoint == "http://c:4318"
    assert tracing.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert tracing.traces_url("https://t.example/v1/traces") == "https://t.example/v1/traces"
