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

from rtcfleet.signaling import ErrorCode, SignalingError

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 6 * 3600
CLOCK_SKEW_SECONDS = 10


@dataclass(frozen=True)
class Grant:
    """What a verified token lets its holder do."""

    room: str
    identity: str
    can_publish: bool
    can_subscribe: bool
    expires_at: int


def mint_token(
    api_key: str,
    api_secret: str,
    *,
    room: str,
    identity: str,
    can_publish: bool = True,
    can_subscribe: bool = True,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
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
            options={"require": ["exp", "iss", "room", "identity"]},
        )
    except jwt.ExpiredSignatureError:
        raise SignalingError(ErrorCode.TOKEN_EXPIRED, "token has expired") from None
    except jwt.PyJWTError as exc:
        raise SignalingError(ErrorCode.UNAUTHORIZED, f"token rejected: {exc}") from None
    room, identity = claims.get("room"), claims.get("identity")
    if not (isinstance(room, str) and room and isinstance(identity, str) and identity):
        raise SignalingError(ErrorCode.UNAUTHORIZED, "token lacks room or identity")
    return Grant(
        room=room,
        identity=identity,
        can_publish=bool(claims.get("can_publish", False)),
        can_subscribe=bool(claims.get("can_subscribe", False)),
        expires_at=int(claims["exp"]),
    )


def turn_credentials(
    shared_secret: str, identity: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, str]:
    """coturn's REST-API credentials: ``expiry:identity`` and its HMAC-SHA1, both sides derive."""
    expiry = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expiry}:{identity}"
    digest = hmac.new(shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()
