"""The drill's Azure backend: a region's front door stopped and its scale sets deallocated.

Inject: stop the region's client Application Gateway (the entry point the global DNS health
check probes, so the region's records stop answering with it) and deallocate its scale sets.
When the region was home: promote the standby region's PostgreSQL flexible-server replica to a
standalone writer, then on every surviving region's gateways run a command that points their
settings at the new writer and restarts them. Restore starts the scale sets and the Application
Gateway again; the promoted database stays the writer (moving home back is a planned change
through the stacks, not a drill).

Every call goes through the Azure SDK for Python (Resource Manager), waiting on its
long-running operations. ``dry_run`` records every call it would make and makes none.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from pydantic import BaseModel, ConfigDict, Field

from rtcfleet.azure_arm import arm_client_options
from rtcfleet.drill.backend import CloudRegionFacts, FaultKind

GATEWAY_ENV = "/etc/rtcfleet/gateway.env"
GATEWAY_UNIT = "rtcfleet-gateway.service"
# Run on each surviving gateway: the writer's host in the Postgres DSN, then a restart.
REPOINT_SCRIPT = [
    "set -eu",
    'sed -i -E "s|^(RTCFLEET_GATEWAY_POSTGRES_DSN=\\"postgresql://[^@]*@)[^:/]+|\\1$WRITE_HOST|" '
    + GATEWAY_ENV,
    f"systemctl restart {GATEWAY_UNIT}",
]
HEALTH_TIMEOUT_S = 2.0


class AzureRegionTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal_urls: list[str] = Field(min_length=1)
    admin_url: str
    # What the global DNS health check probes: the client entry point's /readyz.
    health_url: str
    resource_group: str
    # The client Application Gateway: stopping it takes the region out of DNS.
    application_gateway: str
    scale_sets: list[str] = Field(min_length=1)
    gateway_scale_set: str
    # The flexible server a promotion makes the writer (the region's cross-region replica).
    postgres_replica: str | None = None


class AzureDrillConfig(BaseModel):
    """Where the deployment's regions answer and what a drill may touch; no secrets inside."""

    model_config = ConfigDict(extra="forbid")

    env: str
    subscription_id: str
    home: str
    standby: str
    regions: dict[str, AzureRegionTarget] = Field(min_length=2)
    api_key: str = "default"

    @classmethod
    def load(cls, path: Path) -> AzureDrillConfig:
        return cls.model_validate(yaml.safe_load(path.read_text()))


@dataclass
class AzureClients:
    """The Resource Manager clients the drill uses, built once from one credential."""

    compute: Any
    network: Any
    postgres: Any

    @classmethod
    def create(
        cls,
        subscription_id: str,
        credential: Any = None,
        base_url: str | None = None,
        **options: Any,
    ) -> AzureClients:
        """``base_url`` points every client at another Resource Manager (a test double)."""
        from azure.mgmt.compute import ComputeManagementClient
        from azure.mgmt.network import NetworkManagementClient
        from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient

        credential, options = arm_client_options(credential, base_url, **options)
        return cls(
            compute=ComputeManagementClient(credential, subscription_id, **options),
            network=NetworkManagementClient(credential, subscription_id, **options),
            postgres=PostgreSQLManagementClient(credential, subscription_id, **options),
        )


@dataclass
class AzureBackend(CloudRegionFacts):
    config: AzureDrillConfig
    clients: AzureClients | None = None
    admin_token_value: str = ""
    api_secret: str = ""
    dry_run: bool = False
    # How the health probe checks TLS: a CA bundle path, or True for the system's.
    verify: str | bool = True
    log: Callable[[str], None] = print
    target: str = "azure"
    # the region's front door and machines go away: as a kill looks from outside
    faults: frozenset[FaultKind] = frozenset({FaultKind.KILL})
    calls: list[str] = field(default_factory=list)
    home_region: str = ""

    def __post_init__(self) -> None:
        self.home_region = self.config.home

    # ---- calls ----------------------------------------------------------------------------

    def _call(self, client: str, path: str, **params: Any) -> Any:
        """One SDK call (``operations.method``), recorded; a poller is waited on."""
        rendered = ", ".join(f"{k}={json.dumps(v, default=_as_json)}" for k, v in params.items())
        line = f"{client}.{path}({rendered})"
        self.calls.append(line)
        self.log(("would call " if self.dry_run else "") + line)
        if self.dry_run:
            return None
        if self.clients is None:
            raise RuntimeError("no Azure clients: create the backend with AzureClients")
        operations, method = path.split(".")
        result = getattr(getattr(getattr(self.clients, client), operations), method)(**params)
        if method.startswith("begin_"):
            return result.result()
        return result

    # ---- the sequence ----------------------------------------------------------------------

    async def region_healthy(self, region: str) -> bool:
        """What the DNS health check sees: the client entry point answering /readyz."""
        url = self.config.regions[region].health_url
        ssl: Any = None
        if isinstance(self.verify, str):
            import ssl as ssl_module

            ssl = ssl_module.create_default_context(cafile=self.verify)
        elif self.verify is False:
            ssl = False
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(url, ssl=ssl) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def replication_lag(self) -> dict[str, float]:
        """Not measured on Azure yet (it lives in Azure Monitor's metrics, not in ARM)."""
        return {}

    async def region_replication(self) -> dict[str, dict[str, Any]]:
        """Not measured through Resource Manager: each region's gateways report their copy's
        lag as ``rtcfleet_settings_replication_lag_seconds``."""
        return {}

    async def wait_standby_replayed(self, timeout: float) -> bool:
        """Resource Manager shows no WAL positions: unknown, so reported as not confirmed."""
        return False

    async def room_owner(self, region: str, room: str) -> str | None:
        raise NotImplementedError("the Azure backend does not read regions' room state")

    async def inject(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        if fault not in self.faults:
            raise ValueError(f"the Azure backend injects {sorted(self.faults)}, not {fault}")
        return await asyncio.to_thread(self._inject, region)

    def _inject(self, region: str) -> list[str]:
        target = self.config.regions[region]
        steps = []
        self._call(
            "network", "application_gateways.begin_stop",
            resource_group_name=target.resource_group,
            application_gateway_name=target.application_gateway,
        )  # fmt: skip
        steps.append(
            f"Application Gateway {target.application_gateway} stopped: {region} out of DNS"
        )
        for scale_set in target.scale_sets:
            self._call(
                "compute", "virtual_machine_scale_sets.begin_deallocate",
                resource_group_name=target.resource_group, vm_scale_set_name=scale_set,
            )  # fmt: skip
            steps.append(f"scale set {scale_set} deallocated")
        return steps

    async def fail_over_database(self) -> list[str]:
        return await asyncio.to_thread(self._fail_over_database)

    def _fail_over_database(self) -> list[str]:
        from azure.mgmt.postgresqlflexibleservers import models

        standby = self.config.standby
        target = self.config.regions[standby]
        if target.postgres_replica is None:
            raise ValueError(f"regions.{standby}.postgres_replica: needed to promote the standby")
        steps = []
        self._call(
            "postgres", "servers.begin_update",
            resource_group_name=target.resource_group, server_name=target.postgres_replica,
            parameters=models.ServerForPatch(
                properties=models.ServerPropertiesForPatch(
                    replica=models.Replica(promote_mode="Standalone", promote_option="Forced")
                )
            ),
        )  # fmt: skip
        server = self._call(
            "postgres", "servers.get",
            resource_group_name=target.resource_group, server_name=target.postgres_replica,
        )  # fmt: skip
        endpoint = (
            server.properties.fully_qualified_domain_name
            if server is not None and server.properties is not None
            else "<promoted endpoint>"
        )
        steps.append(
            f"PostgreSQL replica {target.postgres_replica} in {standby} promoted ({endpoint})"
        )
        for region, other in self.config.regions.items():
            if region == self.config.home:
                continue
            instances = self._call(
                "compute", "virtual_machine_scale_set_vms.list",
                resource_group_name=other.resource_group,
                virtual_machine_scale_set_name=other.gateway_scale_set,
            )  # fmt: skip
            ids = [vm.instance_id for vm in instances or ()] if not self.dry_run else ["<each>"]
            for instance in ids:
                self._call(
                    "compute", "virtual_machine_scale_set_vms.begin_run_command",
                    resource_group_name=other.resource_group,
                    vm_scale_set_name=other.gateway_scale_set, instance_id=instance,
                    parameters=models_run_command(endpoint),
                )  # fmt: skip
            steps.append(
                f"{region}: {len(ids)} gateway(s) of {other.gateway_scale_set} repointed to "
                f"{endpoint} and restarted"
            )
        self.home_region = standby
        return steps

    async def restore(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        return await asyncio.to_thread(self._restore, region)

    def _restore(self, region: str) -> list[str]:
        target = self.config.regions[region]
        steps = []
        for scale_set in target.scale_sets:
            self._call(
                "compute", "virtual_machine_scale_sets.begin_start",
                resource_group_name=target.resource_group, vm_scale_set_name=scale_set,
            )  # fmt: skip
            steps.append(f"scale set {scale_set} started")
        self._call(
            "network", "application_gateways.begin_start",
            resource_group_name=target.resource_group,
            application_gateway_name=target.application_gateway,
        )  # fmt: skip
        steps.append(f"Application Gateway {target.application_gateway} started")
        return steps


def models_run_command(write_host: str) -> Any:
    """The run-command request that repoints one gateway at the new writer."""
    from azure.mgmt.compute import models

    return models.RunCommandInput(
        command_id="RunShellScript",
        script=list(REPOINT_SCRIPT),
        parameters=[models.RunCommandInputParameter(name="WRITE_HOST", value=write_host)],
    )


def _as_json(value: Any) -> Any:
    """SDK models as the JSON they are sent as."""
    as_dict = getattr(value, "as_dict", None)
    return as_dict() if callable(as_dict) else str(value)
