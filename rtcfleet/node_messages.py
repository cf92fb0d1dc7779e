"""Messages inside a region, declared once: gateway -> media node (through the node's command
stream in Redis), node supervisor -> worker and worker -> supervisor (through their pipe).

``rtcfleet.signaling`` is the contract with clients; this is the contract between the region's
own processes. Each side builds these models and each receiving side validates what it reads,
so a malformed or oversized entry is refused where it enters, with the field that is wrong,
instead of failing deep inside a worker. Commands keep the client protocol's bounds (names,
SDP size, candidates).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from rtcfleet.nodes import NodeLoad
from rtcfleet.signaling import MAX_SDP_BYTES, IceCandidate, Name, PeerTarget

SessionId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_BYTES)]


class _Internal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- gateway -> media node (and supervisor -> worker) ---------------------------------------


class _SessionCommand(_Internal):
    session: SessionId
    room: Name


class NodeJoin(_SessionCommand):
    op: Literal["join"] = "join"
    identity: Name
    can_publish: bool
    can_subscribe: bool


class NodePublishOffer(_SessionCommand):
    op: Literal["publish_offer"] = "publish_offer"
    sdp: Sdp


class NodeSubscriberAnswer(_SessionCommand):
    op: Literal["subscriber_answer"] = "subscriber_answer"
    sdp: Sdp


class NodeTrickle(_SessionCommand):
    op: Literal["trickle"] = "trickle"
    target: PeerTarget
    candidate: IceCandidate | None


class NodeLeave(_SessionCommand):
    op: Literal["leave"] = "leave"


class NodeProbe(_Internal):
    """A gateway's region-health probe; the node answers on ``bus.session_stream(probe)``."""

    op: Literal["probe"] = "probe"
    probe: Annotated[str, Field(pattern=r"^probe-[\w.-]{1,100}$")]


class NodeRecording(_Internal):
    """Start or stop recording a room (admin API, or a backend's ``can_record`` token); the
    node answers with a ``RecordingAnswer`` on ``bus.session_stream(reply)``."""

    op: Literal["recording"] = "recording"
    room: Name
    action: Literal["start", "stop"]
    node_id: Annotated[str, Field(min_length=1, max_length=128)]
    reply: SessionId


class RecordingAnswer(_Internal):
    """A node's answer to ``NodeRecording``; ``error`` is a stable code when ``ok`` is false."""

    type: Literal["recording"] = "recording"
    ok: bool
    room: Name
    error: str | None = None
    detail: str | None = None
    recording_id: str | None = None
    state: Literal["recording", "stopped"] | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    # the object name of the manifest in the bucket / container
    manifest_key: str | None = None


NodeCommand = Annotated[
    NodeJoin
    | NodePublishOffer
    | NodeSubscriberAnswer
    | NodeTrickle
    | NodeLeave
    | NodeProbe
    | NodeRecording,
    Field(discriminator="op"),
]


# ---- supervisor -> worker only ----------------------------------------------------------------


class WorkerSettings(_Internal):
    op: Literal["settings"] = "settings"
    max_video_bitrate: int = Field(gt=0)
    max_participants: int = Field(ge=1)
    allowed_codecs: list[str]


class WorkerStop(_Internal):
    op: Literal["stop"] = "stop"


WorkerCommand = Annotated[
    NodeJoin
    | NodePublishOffer
    | NodeSubscriberAnswer
    | NodeTrickle
    | NodeLeave
    | NodeRecording
    | WorkerSettings
    | WorkerStop,
    Field(discriminator="op"),
]


# ---- worker -> supervisor ---------------------------------------------------------------------


class ToSession(_Internal):
    """A server message (``rtcfleet.signaling``) for one client session."""

    kind: Literal["to_session"] = "to_session"
    session: SessionId
    message: dict[str, Any]


class WorkerLoadReport(NodeLoad):
    """A worker's load, once a second: a node's load is the sum of its workers' reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["load"] = "load"
    # the most commands the worker held at once (read from its pipe, not finished) since its
    # last report; ``media_node.worker`` bounds them: a worker at its bound is behind, and its
    # pipe fills
    commands_waiting: int = Field(default=0, ge=0)


class SessionLeft(_Internal):
    kind: Literal["left"] = "left"
    session: SessionId
    room: Name


class RoomEmpty(_Internal):
    """The worker's room has no one left. ``joins``: the joins for it the worker finished since
    it last said so; fewer than the supervisor sent means a join is still on its way and the
    room lives on."""

    kind: Literal["room_closed"] = "room_closed"
    room: Name
    joins: int = Field(default=0, ge=0)


WorkerEvent = Annotated[
    ToSession | WorkerLoadReport | SessionLeft | RoomEmpty, Field(discriminator="kind")
]

_node_command: TypeAdapter[Any] = TypeAdapter(NodeCommand)
_worker_command: TypeAdapter[Any] = TypeAdapter(WorkerCommand)
_worker_event: TypeAdapter[Any] = TypeAdapter(WorkerEvent)

AnySessionCommand = NodeJoin | NodePublishOffer | NodeSubscriberAnswer | NodeTrickle | NodeLeave
AnyNodeCommand = AnySessionCommand | NodeProbe | NodeRecording
AnyWorkerCommand = AnySessionCommand | NodeRecording | WorkerSettings | WorkerStop
AnyWorkerEvent = ToSession | WorkerLoadReport | SessionLeft | RoomEmpty


def parse_node_command(raw: str | bytes) -> AnyNodeCommand:
    """A command from the node's stream; raises ``pydantic.ValidationError``."""
    return _node_command.validate_json(raw)


def parse_worker_command(data: dict[str, Any]) -> AnyWorkerCommand:
    return _worker_command.validate_python(data)


def parse_worker_event(data: dict[str, Any]) -> AnyWorkerEvent:
    return _worker_event.validate_python(data)
