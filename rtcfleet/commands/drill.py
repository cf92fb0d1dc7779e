"""``rtcfleet drill region-outage``: kill a region, measure the recovery, restore."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from rtcfleet.drill.backend import FaultKind

if TYPE_CHECKING:
    from rtcfleet.drill import DrillSpec
    from rtcfleet.drill.aws import AwsBackend
    from rtcfleet.drill.azure import AzureBackend
    from rtcfleet.netfault import Fabric


class _DrillConfig(Protocol):
    @property
    def regions(self) -> Mapping[str, Any]: ...


_Config = TypeVar("_Config", bound=_DrillConfig)

drill_app = typer.Typer(help="Failover drills.", no_args_is_help=True)


class Target(StrEnum):
    LOCAL = "local"
    AWS = "aws"
    AZURE = "azure"


def split_clouds(text: str | None) -> list[str]:
    return [] if not text else [cloud.strip() for cloud in text.split(",")]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def render(report: dict[str, Any], console: Console) -> None:
    fault = report.get("fault", "kill")
    table = Table(title=f"region outage: {report['region']} ({report['target']}, {fault})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("fault", fault),
        ("home region hit", "yes" if report["home_region_killed"] else "no"),
        ("time to detect", _seconds(report["time_to_detect_s"])),
        ("time until new joins land elsewhere", _seconds(report["time_to_new_joins_s"])),
        ("bots in the region", str(report["affected_bots"])),
        ("time to media p50", _seconds(report["time_to_media_p50_s"])),
        ("time to media max", _seconds(report["time_to_media_max_s"])),
        ("sessions dropped", str(report["sessions_dropped"])),
        ("settings writes acknowledged", str(report["settings_writes_acknowledged"])),
        ("settings writes lost", str(report["settings_writes_lost"])),
        (
            "standby replayed the last write before the fault",
            "yes" if report["standby_replayed_before_fault"] else "no",
        ),
        ("admin write after the fault", _seconds(report["settings_write_after_failover_s"])),
        ("replication lag at the fault", json.dumps(report["replication_lag_at_fault"])),
        ("settings fresh everywhere", _seconds(report["settings_fresh_everywhere_s"])),
    ]
    for name, fresh in report["settings_fresh_s"].items():
        rows.append((f"settings fresh in {name}", _seconds(fresh)))
    for name, copy in report["replication_at_fault"].items():
        rows.append((f"{name} settings copy at the fault", json.dumps(copy)))
    split = report.get("split_brain") or {}
    if split:
        rows += [
            ("partition length", _seconds(split["seconds"])),
            ("state samples (both regions, every 100 ms)", str(split["samples"])),
            (
                "samples with the room live in two regions",
                str(split["samples_live_in_two_regions"]),
            ),
            ("room owners seen per region", json.dumps(split["owners_seen"])),
        ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for step in report["steps"]:
        console.print(f"  - {step}")


@drill_app.command("region-outage")
def region_outage(
    target: Annotated[Target, typer.Option(help="Where the deployment runs")],
    region: Annotated[str, typer.Option(help="Region to take down")],
    dry_run: Annotated[bool, typer.Option(help="Print the fault and restore calls only")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    config: Annotated[
        Path | None,
        typer.Option(help="Cloud drill config (YAML): regions, entry points, scale groups"),
    ] = None,
    regions: Annotated[int, typer.Option(min=2, max=5, help="Local fleet regions")] = 2,
    clouds: Annotated[
        str | None,
        typer.Option(
            help="Local fleet: each region's cloud, comma-separated (aws,aws,azure); regions "
            "outside the first one's cloud read settings through logical replication"
        ),
    ] = None,
    bots: Annotated[int, typer.Option(min=2, help="Bots in the baseline")] = 6,
    rooms: Annotated[int, typer.Option(min=1, help="Rooms the bots spread over")] = 3,
    fault: Annotated[
        FaultKind,
        typer.Option(
            help="kill: SIGKILL the region; blackhole: drop its packets (no resets); "
            "partition: cut it off from the other regions while clients reach both "
            "(blackhole and partition: local target, as root, with ip and nft)"
        ),
    ] = FaultKind.KILL,
    partition_seconds: Annotated[
        float, typer.Option(min=1, max=600, help="How long a partition holds")
    ] = 30.0,
) -> None:
    """Take a whole region down and measure how the platform recovers."""
    from rtcfleet.drill import DrillSpec, run_region_outage

    spec = DrillSpec(
        region=region, bots=bots, rooms=rooms, fault=fault, partition_s=partition_seconds
    )
    console = Console(stderr=as_json)
    if target is Target.AZURE:
        report = _azure(spec, config, dry_run, console)
    elif target is Target.AWS:
        report = _aws(spec, config, dry_run, console)
    else:
        if dry_run:
            console.print("--dry-run applies to cloud targets; the local drill is harmless")
            raise typer.Exit(2)
        from media_node import rtp_hooks
        from rtcfleet.drill.local import LocalBackend
        from rtcfleet.local import FleetSpec, LocalFleet

        fleet_spec = FleetSpec(regions=regions, gateways=1, media=1, clouds=split_clouds(clouds))
        try:
            fleet_spec.region_clouds()
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--clouds") from None
        if region not in fleet_spec.region_names():
            console.print(f"--region: the local fleet's regions are {fleet_spec.region_names()}")
            raise typer.Exit(2)
        fabric = _fabric(fault, console)
        try:
            rtp_hooks.restrict_host_addresses(
                [fabric.client_address if fabric is not None else "127.0.0.1"]
            )
            fleet = LocalFleet(fleet_spec, fabric=fabric)
            where = "in network namespaces" if fabric is not None else "on loopback"
            console.print(f"starting a {regions}-region local fleet {where} ...")
            fleet.start()
            try:
                report = asyncio.run(run_region_outage(LocalBackend(fleet), spec)).to_json()
            finally:
                fleet.remove()
        finally:
            if fabric is not None:
                fabric.remove()
    if report is None:
        return
    if as_json:
        typer.echo(json.dumps(report))
    else:
        render(report, console)


def _fabric(fault: FaultKind, console: Console) -> Fabric | None:
    """A network fabric for the faults that drop packets; none for a kill."""
    if fault is FaultKind.KILL:
        return None
    from rtcfleet.netfault import Fabric, FabricError

    try:
        return Fabric().start()
    except FabricError as exc:
        console.print(f"--fault {fault}: {exc}")
        raise typer.Exit(2) from None


def _aws(
    spec: DrillSpec, config: Path | None, dry_run: bool, console: Console
) -> dict[str, Any] | None:
    from rtcfleet.drill.aws import AwsBackend, AwsDrillConfig

    if spec.fault is not FaultKind.KILL:
        console.print(f"--fault {spec.fault}: the AWS backend injects kill only")
        raise typer.Exit(2)
    settings = _cloud_config(AwsDrillConfig.load, "AWS", spec, config, console)
    backend = AwsBackend(settings, dry_run=dry_run, **_backend_options(console))
    return _cloud_drill(backend, settings.home, spec, dry_run, console)


def _azure(
    spec: DrillSpec, config: Path | None, dry_run: bool, console: Console
) -> dict[str, Any] | None:
    from rtcfleet.drill.azure import AzureBackend, AzureClients, AzureDrillConfig

    settings = _cloud_config(AzureDrillConfig.load, "Azure", spec, config, console)
    backend = AzureBackend(settings, dry_run=dry_run, **_backend_options(console))
    if not dry_run:
        backend.clients = AzureClients.create(settings.subscription_id)
    return _cloud_drill(backend, settings.home, spec, dry_run, console)


def _cloud_config(
    load: Callable[[Path], _Config],
    cloud: str,
    spec: DrillSpec,
    config: Path | None,
    console: Console,
) -> _Config:
    """The drill config file of a cloud backend, or exit 2 with what is wrong with it."""
    from pydantic import ValidationError

    if config is None:
        console.print(f"--config: the {cloud} drill needs its config file")
        raise typer.Exit(2)
    try:
        settings = load(config)
    except (OSError, ValidationError, ValueError) as exc:
        console.print(f"--config {config}: {exc}")
        raise typer.Exit(2) from None
    if spec.region not in settings.regions:
        console.print(f"--region: {config} lists {sorted(settings.regions)}")
        raise typer.Exit(2)
    return settings


def _backend_options(console: Console) -> dict[str, Any]:
    """What every cloud backend takes from the environment and the console."""
    return {
        "admin_token_value": os.environ.get("RTCFLEET_ADMIN_TOKEN", ""),
        "api_secret": os.environ.get("RTCFLEET_API_SECRET", ""),
        "log": lambda line: console.print(line, highlight=False, soft_wrap=True),
    }


def _cloud_drill(
    backend: AwsBackend | AzureBackend,
    home: str,
    spec: DrillSpec,
    dry_run: bool,
    console: Console,
) -> dict[str, Any] | None:
    """A dry run lists every call of the fault, failover and restore; a live run measures."""
    from rtcfleet.drill import run_region_outage

    if dry_run:
        asyncio.run(backend.inject(spec.region))
        if spec.region == home:
            asyncio.run(backend.fail_over_database())
        asyncio.run(backend.restore(spec.region))
        return None
    if not backend.admin_token_value or not backend.api_secret:
        console.print("RTCFLEET_ADMIN_TOKEN and RTCFLEET_API_SECRET must be set for a live drill")
        raise typer.Exit(2)
    return asyncio.run(run_region_outage(backend, spec)).to_json()


def register(app: typer.Typer) -> None:
    app.add_typer(drill_app, name="drill")
