"""Traces of a client's requests through the region: gateway -> Redis -> media node -> worker.

Off unless a service's settings name an OTLP/HTTP endpoint (``otlp_endpoint``). Off, no tracer
provider is installed and every helper here returns at once (one shared no-op context manager,
an empty carrier): the signaling path pays a global lookup per hop, nothing more.

Traces start only where a client's message enters (the gateway's signaling handler); every
other process continues the context it is handed and starts none of its own, so heartbeats,
probes and sweeps never make traces. Context crosses processes as W3C trace context
(``traceparent``, ``tracestate``):

- in Redis stream entries, as fields beside the payload field ``m`` (``rtcfleet.bus``);
- in supervisor <-> worker pipe messages, under ``PIPE_KEY``, taken off before the message is
  validated (``rtcfleet.node_messages`` models forbid unknown fields).

Log records written inside a span end with its ``trace_id=... span_id=...``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, Field, SecretStr, field_validator

__all__ = [
    "PIPE_KEY",
    "TRACEPARENT",
    "WORKER_ENV",
    "SpanKind",
    "TracingSettings",
    "attached",
    "carrier",
    "child_span",
    "continued",
    "enabled",
    "from_pipe",
    "set_attributes",
    "setup",
    "setup_worker",
    "shutdown",
    "span",
    "to_pipe",
]

PIPE_KEY = "trace"
TRACEPARENT = "traceparent"
# how a media node hands its export settings to the worker processes it spawns
WORKER_ENV = "RTCFLEET_TRACE_EXPORT"
TRACES_PATH = "/v1/traces"
NAMESPACE = "rtcfleet"

log = logging.getLogger("rtcfleet.tracing")

_OFF: AbstractContextManager[Any] = contextlib.nullcontext()
_tracer: trace.Tracer | None = None
_provider: Any = None


class TracingSettings(BaseModel):
    """Fields every service's settings carry (``RTCFLEET_GATEWAY_OTLP_ENDPOINT``,
    ``RTCFLEET_MEDIA_OTLP_ENDPOINT``, ...): where spans go, and how many traces to keep."""

    # an OTLP/HTTP receiver (collector, Jaeger, Tempo): spans go to <endpoint>/v1/traces; unset,
    # tracing is off
    otlp_endpoint: str | None = None
    # headers on every export request (a vendor's API key); secrets, never logged
    otlp_headers: dict[str, SecretStr] = Field(default_factory=dict)
    # share of new traces kept, decided where a trace starts; the other services follow it
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL of an OTLP/HTTP receiver")
        return value.rstrip("/")


def traces_url(endpoint: str) -> str:
    """The export URL for an endpoint given as a base (``http://host:4318``) or in full."""
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def enabled() -> bool:
    return _tracer is not None


def setup(service: str, settings: TracingSettings, *, instance: str, region: str) -> bool:
    """Install the exporter for this process when an endpoint is set; False when tracing is
    off. The export settings go to child processes through ``WORKER_ENV``."""
    if settings.otlp_endpoint is None:
        return False
    export = {
        "endpoint": traces_url(settings.otlp_endpoint),
        "headers": {k: v.get_secret_value() for k, v in settings.otlp_headers.items()},
        "ratio": settings.trace_sample_ratio,
        "instance": instance,
        "region": region,
    }
    os.environ[WORKER_ENV] = json.dumps(export)
    _install(service, export)
    log.info(
        "tracing on: spans to %s, %.0f %% of new traces kept",
        export["endpoint"],
        100 * settings.trace_sample_ratio,
    )
    return True


def setup_worker(service: str, name: str) -> bool:
    """In a process a service spawned (``name``): its parent's export, if it has one."""
    raw = os.environ.get(WORKER_ENV)
    if not raw:
        return False
    export = json.loads(raw)
    export["instance"] = f"{export['instance']}/{name}"
    _install(service, export)
    return True


def _install(service: str, export: dict[str, Any]) -> None:
    global _tracer, _provider
    # imported here: a process with tracing off never loads the SDK
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from rtcfleet import __version__

    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": NAMESPACE,
            "service.instance.id": export["instance"],
            "service.version": __version__,
            "cloud.region": export["region"],
        }
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(float(export["ratio"])))
    )
    exporter = OTLPSpanExporter(endpoint=export["endpoint"], headers=export["headers"])
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # a provider of our own, not the process-wide one: nothing else here is instrumented, and
    # Pulumi's SDK (in the same process in tests) installs its own when it traces
    _provider = provider
    _tracer = provider.get_tracer(NAMESPACE, __version__)
    _correlate_logs()


def shutdown() -> None:
    """Export what is buffered and stop (also done at interpreter exit)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


# ---- spans --------------------------------------------------------------------------------


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> AbstractContextManager[Any]:
    """A span under the current one, or a new trace; where a client's request enters."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def child_span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> AbstractContextManager[Any]:
    """A span only inside a recorded one: a step of a traced request, never a trace of its own."""
    tracer = _tracer
    if tracer is None or not trace.get_current_span().is_recording():
        return _OFF
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def continued(
    name: str,
    carrier: Mapping[str, str] | None,
    *,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> AbstractContextManager[Any]:
    """A span continuing the trace another process handed over (stream fields, pipe message);
    nothing when it handed none."""
    tracer = _tracer
    if tracer is None or not carrier or TRACEPARENT not in carrier:
        return _OFF
    parent = propagate.extract(carrier)
    return tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


def attached(carrier: Mapping[str, str] | None) -> AbstractContextManager[Any]:
    """Make a handed-over context current without a span of its own: a step that only passes
    a message on (what it sends carries the context it was handed)."""
    if _tracer is None or not carrier or TRACEPARENT not in carrier:
        return _OFF
    remote = trace.get_current_span(propagate.extract(carrier))
    return trace.use_span(remote, end_on_exit=False)


def set_attributes(**attributes: str | int | float | bool) -> None:
    """Name what a span learnt on the way (the session, the node placed on)."""
    if _tracer is not None:
        trace.get_current_span().set_attributes(
            {f"{NAMESPACE}.{key}": value for key, value in attributes.items()}
        )


# ---- context across processes ---------------------------------------------------------------


def carrier() -> dict[str, str]:
    """The current context as W3C trace context fields; empty when there is none."""
    if _tracer is None:
        return {}
    fields: dict[str, str] = {}
    propagate.inject(fields)
    return fields


def to_pipe(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with the current context under ``PIPE_KEY`` (unchanged without one)."""
    if _tracer is not None and (fields := carrier()):
        message[PIPE_KEY] = fields
    return message


def from_pipe(message: object) -> dict[str, str] | None:
    """Take the context off a pipe message before it is validated; None without one (and for
    what is not a message at all, which validation then refuses)."""
    if not isinstance(message, dict):
        return None
    fields = message.pop(PIPE_KEY, None)
    if not isinstance(fields, dict):
        return None
    return {str(k): str(v) for k, v in fields.items()}


# ---- logs -----------------------------------------------------------------------------------


class TraceIdFormatter(logging.Formatter):
    """Ends a record logged inside a span with the span's ids, whatever the format before."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return text
        return f"{text} trace_id={context.trace_id:032x} span_id={context.span_id:016x}"


def _correlate_logs() -> None:
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, TraceIdFormatter):
            handler.setFormatter(TraceIdFormatter(handler.formatter))
