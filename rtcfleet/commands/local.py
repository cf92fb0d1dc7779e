"""``rtcfleet local up|status|down``: the whole platform on this machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rtcfleet.tokens import MAX_TTL_SECONDS

local_app = typer.Typer(
    help="Run the platform on this machine (the local fleet).", no_args_is_help=True
)

DEMO_ROOM = "demo"
START_TIMEOUT_S = 180.0


def state_dir() -> Path:
    return Path(os.environ.get("RTCFLEET_STATE_DIR", Path.home() / ".rtcfleet"))


def state_file() -> Path:
    return state_dir() / "local.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state() -> dict[str, Any] | None:
    """The running fleet's facts, or None when no fleet runs."""
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not _alive(int(state.get("pid", 0))):
        return None
    return state


def _console() -> Console:
    # URLs and tokens must not be cut when the output goes to a file or a CI log
    return Console() if sys.stdout.isatty() else Console(width=240, soft_wrap=True)


def render(state: dict[str, Any], console: Console) -> None:
    table = Table(title=f"rtcfleet local fleet — home region {state['home_region']}")
    table.add_column("region")
    table.add_column("signaling URLs")
    table.add_column("admin console")
    table.add_column("media nodes")
    for region in state["regions"]:
        table.add_row(
            region["region"],
            "\n".join(region["signal_urls"]),
            region["admin_url"] + "/",
            "\n".join(region["media_nodes"]),
        )
    console.print(table)
    console.print(f"admin token: [bold]{state['admin_token']}[/bold]")
    console.print(f"join token for room '{DEMO_ROOM}': {state['join_token']}")
    first = state["regions"][0]["signal_urls"][0]
    console.print(
        f"in a browser: {first.replace('ws://', 'http://').split('/v1/')[0]}/demo#token={state['join_token']}"
    )
    console.print(f"try it: rtcfleet bot --room {DEMO_ROOM} --gateway {first} --token <join token>")
    console.print(f"logs: {state['workdir']}/logs")


@local_app.command("up")
def up(
    regions: Annotated[int, typer.Option(min=1, max=5, help="Regions to run")] = 2,
    gateways: Annotated[int, typer.Option(min=1, max=8, help="Gateways per region")] = 2,
    media: Annotated[int, typer.Option(min=1, max=8, help="Media nodes per region")] = 2,
    workers: Annotated[int, typer.Option(min=1, help="Forwarding workers per media node")] = 1,
    clouds: Annotated[
        str | None,
        typer.Option(
            help="Each region's cloud, comma-separated (aws,aws,azure); regions outside the "
            "first one's cloud read settings through a logical-replication subscriber"
        ),
    ] = None,
    detach: Annotated[bool, typer.Option(help="Leave the fleet running in the background")] = False,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            envvar="RTCFLEET_OTLP_ENDPOINT",
            help="An OTLP/HTTP receiver (http://127.0.0.1:4318) for every service's spans",
        ),
    ] = None,
) -> None:
    """Start the fleet, print its URLs and tokens, and run until Ctrl-C."""
    console = _console()
    if read_state() is not None:
        console.print("a local fleet is already running: `rtcfleet local status` or `local down`")
        raise typer.Exit(1)
    from rtcfleet.commands.drill import split_clouds
    from rtcfleet.local import FleetSpec, LocalFleet

    spec = FleetSpec(
        regions=regions,
        gateways=gateways,
        media=media,
        workers_per_node=workers,
        clouds=split_clouds(clouds),
        otlp_endpoint=_otlp_endpoint(otlp_endpoint),
    )
    try:
        spec.region_clouds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--clouds") from None
    if detach:
        _detach(regions, gateways, media, workers, clouds, console, otlp_endpoint)
        return
    fleet = LocalFleet(spec)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"starting {regions} region(s) in {fleet.workdir} ...")
    try:
        fleet.start(ready_timeout=START_TIMEOUT_S)
        state = fleet.status() | {
            "pid": os.getpid(),
            "join_token": fleet.token(DEMO_ROOM, "guest", ttl_seconds=MAX_TTL_SECONDS),
        }
        state_dir().mkdir(parents=True, exist_ok=True)
        state_file().write_text(json.dumps(state, indent=2))
        render(state, console)
        console.print("running; Ctrl-C stops the fleet")
        stop.wait()
    finally:
        console.print("stopping the fleet ...")
        state_file().unlink(missing_ok=True)
        fleet.remove()


def _otlp_endpoint(value: str | None) -> str | None:
    from pydantic import ValidationError

    from rtcfleet.tracing import TracingSettings

    try:
        return TracingSettings(otlp_endpoint=value).otlp_endpoint
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise typer.BadParameter(message, param_hint="--otlp-endpoint") from None


def _detach(
    regions: int,
    gateways: int,
    media: int,
    workers: int,
    clouds: str | None,
    console: Console,
    otlp_endpoint: str | None = None,
) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    log = state_dir() / "local.log"
    argv = [
        sys.executable, "-m", "rtcfleet", "local", "up",
        "--regions", str(regions), "--gateways", str(gateways),
        "--media", str(media), "--workers", str(workers),
        *(["--clouds", clouds] if clouds else []),
        *(["--otlp-endpoint", otlp_endpoint] if otlp_endpoint else []),
    ]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while (state := read_state()) is None:
        if process.poll() is not None:
            console.print(f"the fleet failed to start; see {log}")
            raise typer.Exit(1)
        if time.monotonic() > deadline:
            process.terminate()
            console.print(f"the fleet did not become ready; see {log}")
            raise typer.Exit(1)
        time.sleep(0.5)
    render(state, console)
    console.print("running in the background; `rtcfleet local down` stops it")


@local_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Print the running fleet's regions, URLs, admin token and a join token."""
    state = read_state()
    if state is None:
        typer.echo("no local fleet is running", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(state))
    else:
        render(state, _console())


@local_app.command("down")
def down() -> None:
    """Stop the fleet started with ``--detach``."""
    state = read_state()
    if state is None:
        typer.echo("no local fleet is running")
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        typer.echo(f"fleet process {pid} did not stop", err=True)
        raise typer.Exit(1)
    typer.echo("local fleet stopped")


def register(app: typer.Typer) -> None:
    app.add_typer(local_app, name="local")
