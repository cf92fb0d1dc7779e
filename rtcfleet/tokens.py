"""Join tokens (JWT, HS256) and time-limited TURN credentials.

An API key names the secret that signed a token (the ``kid`` header and ``iss`` claim), so
keys can be rotated: a gateway accepts every key in its settings and a backend signs with one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt
from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from rtcfleet.signaling import ErrorCode, Name, SignalingError

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 6 * 3600
# A token is a bearer credential: one that lived for months would be a password in a URL.
MAX_TTL_SECONDS = 24 * 3600
CLOCK_SKEW_SECONDS = 10


class JoinClaims(BaseModel):
    """The claims of a join token, as docs/signaling.md documents them; nothing is coerced
    (the string ``"false"`` is not a grant) and room and identity are protocol names, since
    both end up in other participants' SDP and in Redis keys."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    room: Name
    identity: Name
    can_publish: StrictBool = False
    can_subscribe: StrictBool = False
    # start and stop the room's recording (the application backend's grant)
    can_record: StrictBool = False
    iat: int
    exp: int


@dataclass(frozen=True)
class Grant:
    """What a verified token lets its holder do."""

    room: str
    identity: str
    can_publish: bool
    can_subscribe: bool
    expires_at: int
    can_record: bool = False


def mint_token(
    api_key: str,
    api_secret: str,
    *,
    room: str,
    identity: str,
    can_publish: bool = True,
    can_subscribe: bool = True,
    can_record: bool = False,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"a token lives 1 to {MAX_TTL_SECONDS} seconds")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": api_key,
        "room": room,
        "identity": identity,
        "can_publish": can_publish,
        "can_subscribe": can_subscribe,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
    }
    if can_record:
        claims["can_record"] = True
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM, headers={"kid": api_key})


def verify_token(token: str, api_keys: dict[str, str]) -> Grant:
    """Check signature, expiry and claims; errors carry ``unauthorized`` or ``token_expired``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SignalingError(ErrorCode.UNAUTHORIZED, "token is not a JWT") from None
    key = header.get("kid")
    secret = api_keys.get(key) if isinstance(key, str) else None
    if secret is None:
        raise SignalingError(ErrorCode.UNAUTHORIZED, "token signed with an unknown API key")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=key,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iat", "iss", "room", "identity"]},
        )
    except jwt.ExpiredSignatureError:
        raise SignalingError(ErrorCode.TOKEN_EXPIRED, "token has expired") from None
    except jwt.PyJWTError as exc:
        raise SignalingError(ErrorCode.UNAUTHORIZED, f"token rejected: {exc}") from None
    try:
        checked = JoinClaims.model_validate(claims)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "claims"
        raise SignalingError(
            ErrorCode.UNAUTHORIZED, f"token claim {where}: {first['msg']}"
        ) from None
    if checked.exp - checked.iat > MAX_TTL_SECONDS:
        raise SignalingError(
            ErrorCode.UNAUTHORIZED, f"token lifetime over {MAX_TTL_SECONDS} seconds"
        )
    return Grant(
        room=checked.room,
        identity=checked.identity,
        can_publish=checked.can_publish,
        can_subscribe=checked.can_subscribe,
        expires_at=checked.exp,
        can_record=checked.can_record,
    )


def turn_credentials(
    shared_secret: str, identity: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, str]:
    """coturn's REST-API credentials: ``expiry:identity`` and its HMAC-SHA1, both sides derive."""
    expiry = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expiry}:{identity}"
    digest = hmac.new(shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()
