"""The signaling protocol, version 1: every message a client, gateway or media node exchanges.

One module so the gateway, the media node and the client library cannot disagree. Messages are
JSON objects with a ``type`` discriminator; unknown fields are rejected so a typo is an error,
not a silently ignored option. ``docs/signaling.md`` is the human-readable form of this file.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
MAX_SDP_BYTES = 64 * 1024
# A frame a little larger than the largest valid message, so an oversized SDP gets a clear
# `too_large` error instead of a closed socket.
MAX_FRAME_BYTES = MAX_SDP_BYTES + 16 * 1024
MAX_NAME_LENGTH = 128
# Media sections (m-lines) in one publisher offer, and tracks one publisher may have at once:
# audio, camera and a screen share with its sound fit many times over; every track is forwarded
# to every subscriber of the room, so one publisher must not multiply everyone's work.
MAX_MEDIA_SECTIONS = 16

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[\w.@:+-]+$")]
Sdp = Annotated[str, Field(min_length=1)]
# Redis stream ids are two unsigned 64-bit integers; one id outside that range fails the whole
# XREAD that names it, so a resume cursor is checked against the range, not only the pattern.
STREAM_ID_PART_MAX = 2**64 - 1


def _stream_id_in_range(value: str) -> str:
    if any(int(part) > STREAM_ID_PART_MAX for part in value.split("-")):
        raise ValueError("cursor is outside the range of stream ids")
    return value


Cursor = Annotated[str, Field(pattern=r"^\d{1,20}-\d{1,20}$"), AfterValidator(_stream_id_in_range)]


class ErrorCode(StrEnum):
    """Stable error codes: clients match on these, never on the message text."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    TOO_MANY_TRACKS = "too_many_tracks"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    SESSION_NOT_FOUND = "session_not_found"
    ROOM_FULL = "room_full"
    NO_MEDIA_NODE = "no_media_node"
    MEDIA_ERROR = "media_error"
    INTERNAL = "internal"


class SignalingError(Exception):
    """A protocol error with its stable code; the gateway turns it into an ``error`` message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IceCandidate(_Message):
    """A trickled ICE candidate as the browser's ``RTCIceCandidateInit`` spells it."""

    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=255)] | None = None


class IceServer(_Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


PeerTarget = Literal["publisher", "subscriber"]


# ---- client -> gateway ------------------------------------------------------------------------


class Join(_Message):
    """First message on a socket; with ``session_id`` it resumes that session on any gateway."""

    type: Literal["join"] = "join"
    token: Annotated[str, Field(min_length=1, max_length=4096)]
    session_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    # last server message cursor the client saw; the gateway replays what came after it
    cursor: Cursor | None = None
    # regions this client failed to reach in the last REGION_UNREACHABLE_MEMORY_S: a region
    # that cannot ask a room's home itself takes the room over only on this word
    unreachable_regions: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=16)
    ] = []


class PublishOffer(_Message):
    """The offer of the client's publisher connection (client -> media node)."""

    type: Literal["publish_offer"] = "publish_offer"
    sdp: Annotated[Sdp, Field(max_length=MAX_SDP_BYTES)]


class SubscriberAnswer(_Message):
    """The answer to a ``subscriber_offer`` on the client's subscriber connection."""

    type: Literal["subscriber_answer"] = "subscriber_answer"
    sdp: Annotated[Sdp, Field(max_length=MAX_SDP_BYTES)]


class Trickle(_Message):
    """An ICE candidate for one of the two connections; ``null`` ends gathering."""

    type: Literal["trickle"] = "trickle"
    target: PeerTarget
    candidate: IceCandidate | None


class Rejoin(_Message):
    """After ``reconnect``: place the session's media again (new connections, same session)."""

    type: Literal["rejoin"] = "rejoin"


class Leave(_Message):
    type: Literal["leave"] = "leave"


class Ping(_Message):
    """Is the signaling path alive? The gateway answers ``pong`` at once, joined or not.

    A path that drops packets closes nothing; only an answer that fails to come tells."""

    type: Literal["ping"] = "ping"


ClientMessage = Annotated[
    Join | PublishOffer | SubscriberAnswer | Trickle | Rejoin | Leave | Ping,
    Field(discriminator="type"),
]
CLIENT_TYPES = frozenset(
    {"join", "publish_offer", "subscriber_answer", "trickle", "rejoin", "leave", "ping"}
)

# How a client watches its signaling path (the protocol's recommendation, see docs/signaling.md):
# a ping every PING_INTERVAL_S; nothing heard for SIGNALING_DEAD_AFTER_S means the path is dead.
PING_INTERVAL_S = 1.0
SIGNALING_DEAD_AFTER_S = 2.5
REGION_UNREACHABLE_MEMORY_S = 30.0


# ---- gateway / media node -> client ------------------------------------------------------------


class Joined(_Message):
    type: Literal["joined"] = "joined"
    session_id: str
    room: str
    identity: str
    region: str
    node_id: str
    resumed: bool = False
    can_publish: bool
    can_subscribe: bool
    participants: list[str]
    ice_servers: list[IceServer]
    # ordered signaling URLs to try when this gateway's region is gone (nearest first)
    fallback_urls: list[str]


class PublishAnswer(_Message):
    type: Literal["publish_answer"] = "publish_answer"
    sdp: str


class SubscriberOffer(_Message):
    type: Literal["subscriber_offer"] = "subscriber_offer"
    sdp: str


class ParticipantJoined(_Message):
    type: Literal["participant_joined"] = "participant_joined"
    identity: str


class ParticipantLeft(_Message):
    type: Literal["participant_left"] = "participant_left"
    identity: str


class TrackPublished(_Message):
    type: Literal["track_published"] = "track_published"
    publisher: str
    kind: Literal["audio", "video"]
    track_id: str


class TrackUnpublished(_Message):
    type: Literal["track_unpublished"] = "track_unpublished"
    publisher: str
    kind: Literal["audio", "video"]
    track_id: str


class SessionReplaced(_Message):
    """A newer ``join`` with the same identity took this session's place in its room (one
    session per identity per room): the session is over and the server closes its socket."""

    type: Literal["session_replaced"] = "session_replaced"


class Reconnect(_Message):
    """The session's media node is gone: close both connections and send ``rejoin``."""

    type: Literal["reconnect"] = "reconnect"
    reason: str


class Redirect(_Message):
    """The room lives in another region: join there (same token) at one of ``urls``."""

    type: Literal["redirect"] = "redirect"
    region: str
    urls: list[str]


class Error(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str


class RecordingStarted(_Message):
    """The room is being recorded, from ``started_at`` (also sent to each newcomer)."""

    type: Literal["recording_started"] = "recording_started"
    recording_id: str
    started_at: str


class RecordingStopped(_Message):
    type: Literal["recording_stopped"] = "recording_stopped"
    recording_id: str
    # requested, room_ended, node_stopped or error
    reason: str


class Pong(_Message):
    """The answer to ``ping``; not part of the session stream (no cursor)."""

    type: Literal["pong"] = "pong"


ServerMessage = Annotated[
    Joined
    | PublishAnswer
    | SubscriberOffer
    | Trickle
    | ParticipantJoined
    | ParticipantLeft
    | TrackPublished
    | TrackUnpublished
    | Reconnect
    | SessionReplaced
    | Redirect
    | Error
    | RecordingStarted
    | RecordingStopped
    | Pong,
    Field(discriminator="type"),
]

_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[Any] = TypeAdapter(ServerMessage)


def parse_client_message(
    raw: str | bytes,
) -> Join | PublishOffer | SubscriberAnswer | Trickle | Rejoin | Leave | Ping:
    """Validate one client frame, raising ``SignalingError`` with the code that fits."""
    if len(raw) > MAX_FRAME_BYTES:
        raise SignalingError(ErrorCode.TOO_LARGE, f"message over {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalingError(ErrorCode.BAD_JSON, f"not JSON: {exc}") from None
    except RecursionError:
        # no message nests deeper than three levels; a deeper frame is not ours to parse
        raise SignalingError(ErrorCode.BAD_JSON, "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise SignalingError(ErrorCode.BAD_MESSAGE, "a message is a JSON object")
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise SignalingError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}")
    sdp = data.get("sdp")
    if isinstance(sdp, str) and len(sdp.encode()) > MAX_SDP_BYTES:
        raise SignalingError(ErrorCode.TOO_LARGE, f"SDP over {MAX_SDP_BYTES} bytes")
    if isinstance(sdp, str) and media_sections(sdp) > MAX_MEDIA_SECTIONS:
        raise SignalingError(
            ErrorCode.TOO_MANY_TRACKS, f"SDP with over {MAX_MEDIA_SECTIONS} media sections"
        )
    try:
        message = _client_adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "message"
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"{where}: {first['msg']}") from None
    return message


def media_sections(sdp: str) -> int:
    """How many m-lines an SDP has (counted as a parser would: lines that start with ``m=``)."""
    return sum(1 for line in sdp.splitlines() if line.startswith("m="))


def parse_server_message(data: dict[str, Any]) -> Any:
    """Validate a server message (client side and tests)."""
    return _server_adapter.validate_python(data)


def encode(message: BaseModel, cursor: str | None = None) -> str:
    """Serialize a message; server messages carry the cursor a resuming client sends back."""
    data = message.model_dump(mode="json", exclude_none=False)
    if cursor is not None:
        data["cursor"] = cursor
    return json.dumps(data, separators=(",", ":"))


def error(code: ErrorCode, message: str) -> Error:
    return Error(code=code, message=message)
