"""Join tokens and TURN credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from rtcfleet.signaling import ErrorCode, SignalingError
from rtcfleet.tokens import mint_token, turn_credentials, verify_token

KEYS = {"k1": "a" * 40, "k2": "b" * 40}


def test_round_trip_carries_the_grants() -> None:
    token = mint_token("k2", KEYS["k2"], room="r", identity="i", can_publish=False)
    grant = verify_token(token, KEYS)
    assert (grant.room, grant.identity, grant.can_publish, grant.can_subscribe) == (
        "r",
        "i",
        False,
        True,
    )


def test_a_token_signed_with_one_key_but_naming_another_fails() -> None:
    token = mint_token("k1", KEYS["k2"], room="r", identity="i")
    with pytest.raises(SignalingError) as caught:
        verify_token(token, KEYS)
    assert caught.value.code is ErrorCode.UNAUTHORIZED


def test_expiry_is_its_own_code() -> None:
    token = mint_token("k1", KEYS["k1"], room="r", identity="i", ttl_seconds=1, now=0)
    with pytest.raises(SignalingError) as caught:
        verify_token(token, KEYS)
    assert caught.value.code is ErrorCode.TOKEN_EXPIRED


def test_turn_credentials_are_what_coturn_derives() -> None:
    username, credential = turn_credentials("shared", "alice", ttl_seconds=600, now=1000)
    assert username == "1600:alice"
    expected = base64.b64encode(hmac.new(b"shared", b"1600:alice", hashlib.sha1).digest())
    assert credential == expected.decode()


def test_join_answer_ice_servers_carry_time_limited_turn_credentials() -> None:
    from gateway_node.ice_servers import ice_servers
    from gateway_node.settings import GatewaySettings

    settings = GatewaySettings(
        redis_url="redis://127.0.0.1:1/0",
        postgres_dsn="postgresql://x@127.0.0.1/x",
        api_keys={"k": "s" * 40},
        cluster_secret="c" * 20,
        admin_token="a" * 20,
        stun_urls=["stun:turn.example.test:3478"],
        turn_urls=["turn:turn.example.test:3478?transport=udp", "turns:turn.example.test:443"],
        turn_secret="shared-turn-secret",
        turn_ttl_seconds=600,
    )
    stun, turn = ice_servers(settings, "alice")
    assert stun.urls == ["stun:turn.example.test:3478"] and stun.username is None
    assert turn.urls == settings.turn_urls
    assert turn.username is not None and turn.username.endswith(":alice")
    expiry = int(turn.username.split(":")[0])
    expected = base64.b64encode(
        hmac.new(b"shared-turn-secret", turn.username.encode(), hashlib.sha1).digest()
    ).decode()
    assert turn.credential == expected
    import time

    assert 590 <= expiry - time.time() <= 600


def test_join_answer_points_at_the_media_nodes_own_coturn() -> None:
    """Every media node runs coturn: a session's TURN is on the node that carries its media."""
    from gateway_node.ice_servers import ice_servers
    from gateway_node.settings import GatewaySettings

    settings = GatewaySettings(
        redis_url="redis://127.0.0.1:1/0",
        postgres_dsn="postgresql://x@127.0.0.1/x",
        api_keys={"k": "s" * 40},
        cluster_secret="c" * 20,
        admin_token="a" * 20,
        turn_secret="shared-turn-secret",
    )
    stun, turn = ice_servers(settings, "bob", "203.0.113.7")
    assert stun.urls == ["stun:203.0.113.7:3478"]
    assert turn.urls == [
        "turn:203.0.113.7:3478?transport=udp",
        "turn:203.0.113.7:3478?transport=tcp",
    ]
    assert turn.username is not None and turn.username.endswith(":bob") and turn.credential
    assert ice_servers(settings, "bob", None) == []
    off = settings.model_copy(update={"node_turn_port": None})
    assert ice_servers(off, "bob", "203.0.113.7") == []


def test_turn_urls_must_be_turn_urls() -> None:
    from pydantic import ValidationError

    from gateway_node.settings import GatewaySettings

    with pytest.raises(ValidationError, match="turn_urls"):
        GatewaySettings(
            redis_url="redis://127.0.0.1:1/0",
            postgres_dsn="postgresql://x@127.0.0.1/x",
            api_keys={"k": "s" * 40},
            cluster_secret="c" * 20,
            admin_token="a" * 20,
            turn_urls=["http://nope"],
        )
