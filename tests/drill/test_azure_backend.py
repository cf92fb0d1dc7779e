"""The Azure drill backend through the Azure SDK against a local Resource Manager double.

The first test checks the calls, their order and their bodies; the second runs the whole
region-outage drill (the same driver as every target) with the double's actions tied to a
two-region local fleet, so its figures are measured on real gateways, media and Postgres.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rtcfleet.cli import app
from rtcfleet.drill import DrillSpec, run_region_outage
from rtcfleet.drill.azure import AzureBackend, AzureClients, AzureDrillConfig
from rtcfleet.local import FleetSpec, LocalFleet
from tests.drill.arm_double import ArmDouble, StaticToken

SUB = "5ca1ab1e-0000-4000-8000-00000000d811"
SHORT = {"westeurope": "weu", "northeurope": "neu", "local-1": "l1", "local-2": "l2"}


def group(region: str) -> str:
    return f"rtcfleet-prod-{region}"


def arm(region: str, kind: str, name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group(region)}/providers/{kind}/{name}"


def drill_config(home: str, standby: str, urls: dict[str, dict[str, str]], health: str) -> dict:
    regions = {}
    for region in (home, standby):
        short = SHORT[region]
        regions[region] = {
            "signal_urls": [urls[region]["signal"]],
            "admin_url": urls[region]["admin"],
            "health_url": f"{health}/health/{region}",
            "resource_group": group(region),
            "application_gateway": f"prod-{short}-client",
            "scale_sets": [f"prod-{short}-gateway", f"prod-{short}-media"],
            "gateway_scale_set": f"prod-{short}-gateway",
            "postgres_replica": f"prod-{short}-postgres" if region == standby else None,
        }
    return {"env": "prod", "subscription_id": SUB, "home": home, "standby": standby,
            "regions": regions}  # fmt: skip


def populate(double: ArmDouble, regions: list[str], standby: str, gateways: int = 2) -> None:
    server = f"prod-{SHORT[standby]}-postgres"
    for region in regions:
        short = SHORT[region]
        double.put(
            arm(region, "Microsoft.Network/applicationGateways", f"prod-{short}-client"),
            {"tags": {"region": region}, "properties": {"operationalState": "Running"}},
        )
        for role in ("gateway", "media"):
            scale_set = arm(
                region, "Microsoft.Compute/virtualMachineScaleSets", f"prod-{short}-{role}"
            )
            double.put(scale_set, {"properties": {"orchestrationMode": "Uniform"}})
            if role == "gateway":
                for instance in range(gateways):
                    double.put(
                        f"{scale_set}/virtualMachines/{instance}",
                        {"instanceId": str(instance), "name": f"prod-{short}-gateway_{instance}"},
                    )
    double.put(
        arm(standby, "Microsoft.DBforPostgreSQL/flexibleServers", server),
        {
            "location": standby,
            "properties": {
                "fullyQualifiedDomainName": f"{server}.postgres.database.azure.com",
                "replicationRole": "AsyncReplica",
                "replica": {"role": "AsyncReplica"},
            },
        },
    )


@pytest.fixture
def double(tmp_path: Path) -> Iterator[ArmDouble]:
    server = ArmDouble(tmp_path).start()
    yield server
    server.stop()


def backend_for(double: ArmDouble, config: dict[str, Any], **kwargs: Any) -> AzureBackend:
    clients = AzureClients.create(
        SUB,
        credential=StaticToken(),
        base_url=double.url,
        connection_verify=str(double.ca_file),
        polling_interval=0,
    )
    return AzureBackend(
        AzureDrillConfig.model_validate(config),
        clients=clients,
        verify=str(double.ca_file),
        log=lambda _: None,
        **kwargs,
    )


def test_home_outage_calls_in_order(double: ArmDouble) -> None:
    home, standby = "westeurope", "northeurope"
    populate(double, [home, standby], standby)
    urls = {r: {"signal": f"wss://{r}.example.test/v1/signal", "admin": "https://a"} for r in SHORT}
    backend = backend_for(double, drill_config(home, standby, urls, double.url))

    assert asyncio.run(backend.region_healthy(home)) is True
    steps = asyncio.run(backend.inject(home))
    assert asyncio.run(backend.region_healthy(home)) is False, "front door stopped: out of DNS"
    assert asyncio.run(backend.region_healthy(standby)) is True
    steps += asyncio.run(backend.fail_over_database())
    assert backend.home() == standby
    replica = double.resources[
        arm(standby, "Microsoft.DBforPostgreSQL/flexibleServers", "prod-neu-postgres").lower()
    ]
    assert replica["properties"]["replicationRole"] == "None"
    steps += asyncio.run(backend.restore(home))
    assert asyncio.run(backend.region_healthy(home)) is True

    weu, neu = (
        f"/subscriptions/{SUB}/resourceGroups/{group(home)}/providers",
        (f"/subscriptions/{SUB}/resourceGroups/{group(standby)}/providers"),
    )
    postgres = f"{neu}/Microsoft.DBforPostgreSQL/flexibleServers/prod-neu-postgres"
    vms = f"{neu}/Microsoft.Compute/virtualMachineScaleSets/prod-neu-gateway/virtualMachines"
    assert double.calls() == [
        f"POST {weu}/Microsoft.Network/applicationGateways/prod-weu-client/stop",
        f"POST {weu}/Microsoft.Compute/virtualMachineScaleSets/prod-weu-gateway/deallocate",
        f"POST {weu}/Microsoft.Compute/virtualMachineScaleSets/prod-weu-media/deallocate",
        f"PATCH {postgres}",
        f"GET {postgres}",  # the long-running update's final read
        f"GET {postgres}",  # the promoted server's endpoint
        f"GET {vms}",
        f"POST {vms}/0/runCommand",
        f"POST {vms}/1/runCommand",
        f"POST {weu}/Microsoft.Compute/virtualMachineScaleSets/prod-weu-gateway/start",
        f"POST {weu}/Microsoft.Compute/virtualMachineScaleSets/prod-weu-media/start",
        f"POST {weu}/Microsoft.Network/applicationGateways/prod-weu-client/start",
    ]
    # every long-running operation was polled until it succeeded, never taken for done
    assert len(double.operations) == 9
    assert all(op.polls >= 2 for op in double.operations.values())
    patch = next(r for r in double.requests if r.method == "PATCH")
    assert patch.body == {"properties": {"replica": {"promoteMode": "Standalone",
                                                     "promoteOption": "Forced"}}}  # fmt: skip
    assert patch.api_version and all(
        r.api_version for r in double.requests if "/subscriptions/" in r.path
    )
    command = next(r for r in double.requests if r.path.endswith("/0/runCommand")).body
    assert command["commandId"] == "RunShellScript"
    assert command["parameters"] == [
        {"name": "WRITE_HOST", "value": "prod-neu-postgres.postgres.database.azure.com"}
    ]
    assert command["script"][-1] == "systemctl restart rtcfleet-gateway.service"
    assert len(steps) == 8 and "promoted (prod-neu-postgres" in steps[3]


def test_dry_run_lists_every_call_and_makes_none(tmp_path: Path) -> None:
    urls = {r: {"signal": f"wss://{r}.example.test/v1/signal", "admin": "https://a"} for r in SHORT}
    path = tmp_path / "drill-azure.yaml"
    path.write_text(
        yaml.safe_dump(drill_config("westeurope", "northeurope", urls, "https://unused.test"))
    )
    result = CliRunner().invoke(
        app,
        ["drill", "region-outage", "--target", "azure", "--region", "westeurope", "--dry-run",
         "--config", str(path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("would call")]
    operations = [line.removeprefix("would call ").split("(")[0] for line in lines]
    assert operations == [
        "network.application_gateways.begin_stop",
        "compute.virtual_machine_scale_sets.begin_deallocate",
        "compute.virtual_machine_scale_sets.begin_deallocate",
        "postgres.servers.begin_update",
        "postgres.servers.get",
        "compute.virtual_machine_scale_set_vms.list",
        "compute.virtual_machine_scale_set_vms.begin_run_command",
        "compute.virtual_machine_scale_sets.begin_start",
        "compute.virtual_machine_scale_sets.begin_start",
        "network.application_gateways.begin_start",
    ]
    assert '"promoteMode": "Standalone"' in lines[3]
    missing = CliRunner().invoke(
        app, ["drill", "region-outage", "--target", "azure", "--region", "westeurope"]
    )
    assert missing.exit_code == 2 and "--config" in missing.output


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    running = LocalFleet(FleetSpec(regions=2, gateways=1, media=1)).start()
    yield running
    running.remove()


async def test_region_outage_drill_through_resource_manager(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    home, standby = fleet.home, fleet.standby
    assert standby is not None
    double = ArmDouble(tmp_path).start()
    try:
        populate(double, [home, standby], standby, gateways=1)
        # what Azure would do to the machines, done to the local fleet's region
        gateway_set = arm(home, "Microsoft.Compute/virtualMachineScaleSets", "prod-l1-gateway")
        media_set = arm(home, "Microsoft.Compute/virtualMachineScaleSets", "prod-l1-media")
        replica = arm(standby, "Microsoft.DBforPostgreSQL/flexibleServers", "prod-l2-postgres")
        double.on[f"deallocate {gateway_set.lower()}"] = lambda _: fleet.kill_region(home)
        double.on[f"start {media_set.lower()}"] = lambda _: fleet.restore_region(home)
        double.on[f"PATCH {replica.lower()}"] = lambda _: fleet.promote_standby()
        urls = {
            region: {
                "signal": fleet.gateway_urls(region)[0],
                "admin": fleet.regions[region].gateways[0].admin_url,
            }
            for region in (home, standby)
        }
        config = drill_config(home, standby, urls, double.url)
        config["api_key"] = fleet.spec.api_key
        backend = backend_for(
            double,
            config,
            admin_token_value=fleet.spec.admin_token,
            api_secret=fleet.spec.api_secret,
        )
        report = await run_region_outage(backend, DrillSpec(region=home, bots=4, rooms=2))
    finally:
        double.stop()
    print(json.dumps(report.to_json(), indent=1))
    assert report.target == "azure" and report.home_region_killed
    assert fleet.home == standby and backend.home() == standby
    assert report.affected_bots >= 2 and report.sessions_dropped == 0
    assert len(report.time_to_media_s) == report.affected_bots
    assert report.time_to_detect_s is not None and report.time_to_new_joins_s is not None
    assert report.settings_writes_acknowledged == 20
    assert report.settings_write_after_failover_s is not None
    assert [step.split(":")[0].split(" (")[0] for step in report.steps] == [
        "Application Gateway prod-l1-client stopped",
        "scale set prod-l1-gateway deallocated",
        "scale set prod-l1-media deallocated",
        "PostgreSQL replica prod-l2-postgres in local-2 promoted",
        "local-2",
        "scale set prod-l1-gateway started",
        "scale set prod-l1-media started",
        "Application Gateway prod-l1-client started",
    ]


def test_the_repoint_script_moves_only_the_writer_host(tmp_path: Path) -> None:
    import subprocess

    from rtcfleet.drill.azure import GATEWAY_ENV, REPOINT_SCRIPT

    env = tmp_path / "gateway.env"
    env.write_text(
        'RTCFLEET_GATEWAY_POSTGRES_DSN="postgresql://rtcfleet:p%40ss@old.postgres.database.azure'
        '.com:5432/rtcfleet?sslmode=require"\n'
        'RTCFLEET_GATEWAY_REDIS_URL="rediss://:key@old.redis.cache.windows.net:6380/0"\n'
    )
    script = [line.replace(GATEWAY_ENV, str(env)) for line in REPOINT_SCRIPT[:-1]]
    subprocess.run(
        ["bash", "-c", "\n".join(script)],
        env={"WRITE_HOST": "new.postgres.database.azure.com", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert env.read_text().splitlines() == [
        'RTCFLEET_GATEWAY_POSTGRES_DSN="postgresql://rtcfleet:p%40ss@new.postgres.database.azure'
        '.com:5432/rtcfleet?sslmode=require"',
        'RTCFLEET_GATEWAY_REDIS_URL="rediss://:key@old.redis.cache.windows.net:6380/0"',
    ]
