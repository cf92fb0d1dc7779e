"""Commands that run the platform's processes and talk to it: the image's systemd units run
``rtcfleet gateway`` and ``rtcfleet media-node``; operators use ``token`` and ``bot``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from rtcfleet import tracing
from rtcfleet.config_file import describe_errors


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("RTCFLEET_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def gateway() -> None:
    """Run a signaling gateway (client port 8080, admin port 9090) until SIGTERM."""
    from gateway_node.app import serve
    from gateway_node.settings import ENV_PREFIX, GatewaySettings

    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        typer.echo(f"bad gateway settings:\n{describe_errors(exc, ENV_PREFIX)}", err=True)
        raise typer.Exit(2) from None
    _logging()
    tracing.setup(
        "rtcfleet-gateway", settings, instance=settings.gateway_id, region=settings.region
    )
    asyncio.run(serve(settings))


def media_node() -> None:
    """Run a media node (SFU) until drained: SIGTERM drains, a second SIGTERM exits at once."""
    from media_node.settings import ENV_PREFIX, MediaNodeSettings
    from media_node.supervisor import Supervisor

    try:
        settings = MediaNodeSettings()
    except ValidationError as exc:
        typer.echo(f"bad media node settings:\n{describe_errors(exc, ENV_PREFIX)}", err=True)
        raise typer.Exit(2) from None
    _logging()
    tracing.setup(
        "rtcfleet-media-node", settings, instance=settings.node_id, region=settings.region
    )
    from media_node.ice import PortRangeError

    try:
        asyncio.run(Supervisor(settings).run())
    except PortRangeError as exc:
        typer.echo(f"media node cannot start: {exc}", err=True)
        raise typer.Exit(2) from None


def token(
    room: Annotated[str, typer.Option(help="Room the token admits to")],
    identity: Annotated[str, typer.Option(help="Participant identity, unique in the room")],
    api_key: Annotated[str, typer.Option(envvar="RTCFLEET_API_KEY")],
    api_secret: Annotated[str, typer.Option(envvar="RTCFLEET_API_SECRET")],
    ttl: Annotated[int, typer.Option(help="Seconds until the token expires")] = 6 * 3600,
    publish: Annotated[bool, typer.Option(help="Grant publishing")] = True,
    subscribe: Annotated[bool, typer.Option(help="Grant subscribing")] = True,
) -> None:
    """Mint a join token (JWT, HS256) from an API key/secret."""
    from rtcfleet.tokens import mint_token

    if ttl <= 0:
        typer.echo("--ttl must be positive", err=True)
        raise typer.Exit(2)
    typer.echo(
        mint_token(
            api_key,
            api_secret,
            room=room,
            identity=identity,
            can_publish=publish,
            can_subscribe=subscribe,
            ttl_seconds=ttl,
        )
    )


def bot(
    room: Annotated[str, typer.Option(help="Room to join")],
    gateway_url: Annotated[
        list[str], typer.Option("--gateway", help="Signaling URL (ws://host:8080/v1/signal)")
    ],
    token: Annotated[
        str | None, typer.Option(help="Join token; minted from the API key if absent")
    ] = None,
    identity: Annotated[str | None, typer.Option(help="Identity when minting a token")] = None,
    seconds: Annotated[float, typer.Option(help="How long to stay in the room")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Join a room, publish synthetic audio+video, and report what was received."""
    from rtcfleet.client.bot import run_bot
    from rtcfleet.tokens import mint_token

    if token is None:
        key, secret = os.environ.get("RTCFLEET_API_KEY"), os.environ.get("RTCFLEET_API_SECRET")
        if not key or not secret:
            from rtcfleet.commands.local import read_state

            # a local fleet's own key, so `rtcfleet bot` works against it as it is
            state = read_state() or {}
            key, secret = state.get("api_key"), state.get("api_secret")
        if not key or not secret:
            typer.echo(
                "needs --token, RTCFLEET_API_KEY and RTCFLEET_API_SECRET, or a local fleet",
                err=True,
            )
            raise typer.Exit(2)
        identity = identity or f"bot-{os.getpid()}"
        token = mint_token(key, secret, room=room, identity=identity)
    else:
        import jwt

        try:
            claimed = jwt.decode(token, options={"verify_signature": False}).get("room")
        except jwt.PyJWTError:
            claimed = None
        if claimed != room:
            typer.echo(f"--token admits to room {claimed!r}, not --room {room!r}", err=True)
            raise typer.Exit(2)
    _loopback_media_for_loopback_gateways(gateway_url)
    report = asyncio.run(run_bot(gateway_url, token, seconds, name=identity or "bot"))
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"{report['name']} in {room} via {report['gateway']} on node {report['node_id']}")
    for track in report["tracks"]:
        size = f"{track['width']}x{track['height']}" if track["width"] else "-"
        typer.echo(
            f"  {track['publisher']}/{track['kind']}: {track['frames_decoded']} frames decoded, "
            f"{track['frames_lost']} lost, {size}"
        )
    if report["errors"]:
        typer.echo(f"  errors: {', '.join(report['errors'])}", file=sys.stderr)


def _loopback_media_for_loopback_gateways(urls: list[str]) -> None:
    """A bot talking to a local fleet keeps its media on 127.0.0.1, like the fleet's nodes."""
    from urllib.parse import urlsplit

    from media_node import rtp_hooks
    from media_node.settings import ICE_ADDRESSES_ENV

    if os.environ.get(ICE_ADDRESSES_ENV):
        rtp_hooks.restrict_host_addresses_from_environment()
    elif all(urlsplit(url).hostname in ("127.0.0.1", "localhost") for url in urls):
        rtp_hooks.restrict_host_addresses(["127.0.0.1"])


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
    app.command("media-node")(media_node)
    app.command("token")(token)
    app.command("bot")(bot)
