"""What tracing adds per relayed client message in the gateway's own code, off and on.

Run: ``.venv/bin/python -m benchmarks.tracing [--messages 20000]``.

The gateway's tracing calls for one client message that reaches a media node and comes back
(the ``trickle`` of ``benchmarks.signaling``): the request's span, the producer span around
the stream write with its trace context fields, and the relay's span for the reply. Timed in
one process without I/O, so the figure is the tracing code alone: "off" as deployed without an
endpoint, "on" with the real SDK and OTLP/HTTP exporter batching to a receiver in another
process (the export thread shares this interpreter, so its serializing counts against "on").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.signaling import SpanSink
from rtcfleet import tracing

RESULTS = Path(__file__).resolve().parent / "results" / "tracing.json"


def one_message() -> None:
    with (
        tracing.span("signal trickle", kind=tracing.SpanKind.SERVER),
        tracing.child_span("send trickle", kind=tracing.SpanKind.PRODUCER),
    ):
        fields = tracing.carrier()
    with tracing.continued("deliver error", fields):
        pass


def untraced_message() -> None:
    """The same three places with nothing in them: what the code costs without tracing."""
    fields: dict[str, str] = {}
    del fields


def per_message_us(messages: int, repeats: int, step: Callable[[], None] = one_message) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(messages):
            step()
        times.append((time.perf_counter() - started) / messages * 1e6)
        time.sleep(0.5)  # let the exporter empty its queue between repeats
    return round(min(times), 3)


def start_sink() -> tuple[SpanSink, str]:
    sink = SpanSink()
    return sink, asyncio.run(sink.start())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    untraced = per_message_us(args.messages, args.repeats, untraced_message)
    off = per_message_us(args.messages, args.repeats)
    sink, endpoint = start_sink()
    settings = tracing.TracingSettings(otlp_endpoint=endpoint)
    tracing.setup("benchmark", settings, instance="benchmark", region="local")
    # the SDK's queue holds 2048 spans: fewer messages per repeat, so none is dropped
    on = per_message_us(500, args.repeats)
    tracing.shutdown()
    time.sleep(0.5)
    asyncio.run(sink.stop())
    result = {
        "benchmark": "tracing",
        "gateway_us_per_message_untraced": untraced,
        "gateway_us_per_message_off": off,
        "gateway_us_per_message_on": on,
        "spans_per_message": 3,
        "spans_received": sink.spans,
        "spans_made": 3 * 500 * args.repeats,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"per message: without tracing calls {untraced} us, off {off} us, on {on} us (3 spans; "
        f"{sink.spans} of {result['spans_made']} received)"
    )


if __name__ == "__main__":
    main()
