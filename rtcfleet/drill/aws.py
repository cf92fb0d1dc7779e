"""The drill's AWS backend: a region taken out of DNS and scaled to zero, through boto3.

Inject: invert the region's Route 53 health check (its latency and failover records stop
answering with it), suspend its groups' scaling processes and scale them to zero. When the
region was home: promote the standby region's RDS replica, point every surviving region's
gateway settings at it and restart their gateways, and fail over the ElastiCache global
datastore if the deployment uses one. Restore undoes the DNS and capacity changes; the promoted
database stays primary (moving home back is a planned change through the stacks, not a drill).

``dry_run`` records every call it would make and makes none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from pydantic import BaseModel, ConfigDict, Field

from rtcfleet.drill.backend import CloudRegionFacts, FaultKind

SUSPENDED_PROCESSES = [
    "Launch",
    "HealthCheck",
    "ReplaceUnhealthy",
    "AZRebalance",
    "AlarmNotification",
]
GATEWAY_ROLE_TAG = "rtcfleet:role"


class AwsRegionTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal_urls: list[str] = Field(min_length=1)
    admin_url: str
    health_check_id: str
    auto_scaling_groups: list[str] = Field(min_length=1)
    # the RDS instance a promotion would make primary (the region's cross-region replica)
    db_replica_id: str | None = None
    gateway_parameter: str
    replication_group_id: str | None = None


class AwsDrillConfig(BaseModel):
    """Where the deployment's regions answer and what a drill may touch; no secrets inside."""

    model_config = ConfigDict(extra="forbid")

    env: str
    home: str
    standby: str
    regions: dict[str, AwsRegionTarget] = Field(min_length=2)
    global_datastore_id: str | None = None
    api_key: str = "default"

    @classmethod
    def load(cls, path: Path) -> AwsDrillConfig:
        return cls.model_validate(yaml.safe_load(path.read_text()))


@dataclass
class _Capacity:
    min_size: int
    max_size: int
    desired: int


@dataclass
class AwsBackend(CloudRegionFacts):
    config: AwsDrillConfig
    admin_token_value: str = ""
    api_secret: str = ""
    dry_run: bool = False
    endpoint_url: str | None = None
    session: Any = None
    log: Callable[[str], None] = print
    target: str = "aws"
    faults: frozenset[FaultKind] = frozenset({FaultKind.KILL})
    calls: list[str] = field(default_factory=list)
    _capacity: dict[str, _Capacity] = field(default_factory=dict)
    home_region: str = ""

    def __post_init__(self) -> None:
        self.session = self.session or boto3.session.Session()
        self.home_region = self.config.home

    # ---- calls ----------------------------------------------------------------------------

    def _client(self, service: str, region: str) -> Any:
        return self.session.client(service, region_name=region, endpoint_url=self.endpoint_url)

    def _call(self, service: str, region: str, operation: str, **params: Any) -> dict[str, Any]:
        rendered = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in params.items())
        line = f"{service}.{operation}({rendered}) [{region}]"
        self.calls.append(line)
        self.log(("would call " if self.dry_run else "") + line)
        if self.dry_run:
            return {}
        result: dict[str, Any] = getattr(self._client(service, region), operation)(**params)
        return result

    # ---- the sequence ----------------------------------------------------------------------

    async def region_healthy(self, region: str) -> bool:
        target = self.config.regions[region]
        status = await asyncio.to_thread(
            self._call, "route53", "us-east-1", "get_health_check_status",
            HealthCheckId=target.health_check_id,
        )  # fmt: skip
        observations = status.get("HealthCheckObservations", [])
        healthy = [o for o in observations if o["StatusReport"]["Status"].startswith("Success")]
        return not observations or len(healthy) * 2 > len(observations)

    async def replication_lag(self) -> dict[str, float]:
        """The standby replica's ReplicaLag (CloudWatch, last minute), in seconds."""
        replica = self.config.regions[self.config.standby].db_replica_id
        if replica is None:
            return {}
        seconds = await asyncio.to_thread(self._replica_lag, self.config.standby, replica)
        return {"seconds": seconds}

    async def region_replication(self) -> dict[str, dict[str, Any]]:
        """Every region's RDS replica lag (CloudWatch ReplicaLag, last minute); regions in other
        clouds are measured by their gateways' ``rtcfleet_settings_replication_lag_seconds``."""
        out: dict[str, dict[str, Any]] = {}
        for region, target in self.config.regions.items():
            if region == self.home_region or target.db_replica_id is None:
                continue
            seconds = await asyncio.to_thread(self._replica_lag, region, target.db_replica_id)
            out[region] = {"kind": "physical", "lag_s": seconds}
        return out

    def _replica_lag(self, region: str, instance: str) -> float:
        import datetime

        now = datetime.datetime.now(datetime.UTC)
        stats = self._call(
            "cloudwatch", region, "get_metric_statistics",
            Namespace="AWS/RDS", MetricName="ReplicaLag",
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance}],
            StartTime=now - datetime.timedelta(minutes=1), EndTime=now,
            Period=60, Statistics=["Maximum"],
        )  # fmt: skip
        points = stats.get("Datapoints", [])
        return max((float(p["Maximum"]) for p in points), default=0.0)

    async def wait_standby_replayed(self, timeout: float) -> bool:
        """RDS shows a drill no WAL positions: a standby ReplicaLag of 0 s is the nearest sign."""
        deadline = time.monotonic() + timeout
        while (await self.replication_lag()).get("seconds", 0.0) > 0.0:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(5.0)
        return True

    async def inject(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        if fault not in self.faults:
            raise ValueError(f"the AWS backend injects {sorted(self.faults)}, not {fault}")
        return await asyncio.to_thread(self._inject, region)

    async def room_owner(self, region: str, room: str) -> str | None:
        raise NotImplementedError("the AWS backend does not read regions' room state")

    def _inject(self, region: str) -> list[str]:
        target = self.config.regions[region]
        steps = []
        self._call(
            "route53", "us-east-1", "update_health_check",
            HealthCheckId=target.health_check_id, Inverted=True,
        )  # fmt: skip
        steps.append(
            f"Route 53 health check {target.health_check_id} inverted: {region} out of DNS"
        )
        groups = self._call(
            "autoscaling", region, "describe_auto_scaling_groups",
            AutoScalingGroupNames=target.auto_scaling_groups,
        )  # fmt: skip
        for group in groups.get("AutoScalingGroups", []):
            self._capacity[group["AutoScalingGroupName"]] = _Capacity(
                group["MinSize"], group["MaxSize"], group["DesiredCapacity"]
            )
        for name in target.auto_scaling_groups:
            self._call(
                "autoscaling", region, "suspend_processes",
                AutoScalingGroupName=name, ScalingProcesses=SUSPENDED_PROCESSES,
            )  # fmt: skip
            self._call(
                "autoscaling", region, "update_auto_scaling_group",
                AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0,
            )  # fmt: skip
            steps.append(f"{name} scaled to zero")
        return steps

    async def fail_over_database(self) -> list[str]:
        return await asyncio.to_thread(self._fail_over_database)

    def _fail_over_database(self) -> list[str]:
        standby = self.config.standby
        target = self.config.regions[standby]
        if target.db_replica_id is None:
            raise ValueError(f"regions.{standby}.db_replica_id: needed to promote the standby")
        steps = []
        self._call(
            "rds", standby, "promote_read_replica", DBInstanceIdentifier=target.db_replica_id
        )
        if not self.dry_run:
            waiter = self._client("rds", standby).get_waiter("db_instance_available")
            waiter.wait(
                DBInstanceIdentifier=target.db_replica_id,
                WaiterConfig={"Delay": 5, "MaxAttempts": 120},
            )
        described = self._call(
            "rds", standby, "describe_db_instances", DBInstanceIdentifier=target.db_replica_id
        )
        instances = described.get("DBInstances", [{}])
        endpoint = instances[0].get("Endpoint", {}).get("Address", "<promoted endpoint>")
        promoted_arn = instances[0].get("DBInstanceArn", f"<arn of {target.db_replica_id}>")
        steps.append(f"RDS replica {target.db_replica_id} in {standby} promoted ({endpoint})")
        steps += self._replace_replicas(promoted_arn)
        for region, other in self.config.regions.items():
            if region == self.config.home:
                continue
            current = self._call("ssm", region, "get_parameter", Name=other.gateway_parameter)
            document = json.loads(current.get("Parameter", {}).get("Value", "{}"))
            document.setdefault("postgres", {})["writeHost"] = endpoint
            self._call(
                "ssm", region, "put_parameter",
                Name=other.gateway_parameter, Value=json.dumps(document),
                Type="String", Overwrite=True,
            )  # fmt: skip
            self._call(
                "ssm", region, "send_command",
                DocumentName="AWS-RunShellScript",
                Targets=[{"Key": f"tag:{GATEWAY_ROLE_TAG}", "Values": ["gateway"]}],
                Parameters={"commands": ["systemctl restart rtcfleet-gateway.service"]},
                Comment="rtcfleet drill: settings database moved",
            )  # fmt: skip
            steps.append(f"{region} gateways repointed to {endpoint} and restarted")
        if self.config.global_datastore_id and target.replication_group_id:
            self._call(
                "elasticache", standby, "failover_global_replication_group",
                GlobalReplicationGroupId=self.config.global_datastore_id,
                PrimaryRegion=standby, PrimaryReplicationGroupId=target.replication_group_id,
            )  # fmt: skip
            steps.append(f"ElastiCache global datastore primary moved to {standby}")
        self.home_region = standby
        return steps

    def _replace_replicas(self, promoted_arn: str) -> list[str]:
        """An RDS replica cannot change its source: every other surviving region's replica of
        the dead writer gets a replacement replicating from the promoted one, with the old
        one's class, subnets, security groups and the region's key. The region's readers move
        to it, and the old replica goes, with the region's next ``pulumi up`` against the new
        home (``rtcfleet:homeRegion``)."""
        steps = []
        for region, other in self.config.regions.items():
            if region in (self.config.home, self.config.standby) or other.db_replica_id is None:
                continue
            described = self._call(
                "rds", region, "describe_db_instances", DBInstanceIdentifier=other.db_replica_id
            )
            old = (described.get("DBInstances") or [{}])[0]
            replacement = f"{other.db_replica_id}-r{int(time.time())}"
            params: dict[str, Any] = {
                "DBInstanceIdentifier": replacement,
                "SourceDBInstanceIdentifier": promoted_arn,
                "SourceRegion": self.config.standby,
                "DBInstanceClass": old.get("DBInstanceClass", "<class of the old replica>"),
                "DBSubnetGroupName": old.get("DBSubnetGroup", {}).get(
                    "DBSubnetGroupName", "<subnet group of the old replica>"
                ),
                "VpcSecurityGroupIds": [
                    g["VpcSecurityGroupId"] for g in old.get("VpcSecurityGroups", [])
                ]
                or ["<security groups of the old replica>"],
                "KmsKeyId": old.get("KmsKeyId", "<key of the old replica>"),
                "PubliclyAccessible": False,
                "MultiAZ": bool(old.get("MultiAZ", True)),
            }
            if old.get("DBParameterGroups"):
                params["DBParameterGroupName"] = old["DBParameterGroups"][0]["DBParameterGroupName"]
            self._call("rds", region, "create_db_instance_read_replica", **params)
            if not self.dry_run:
                waiter = self._client("rds", region).get_waiter("db_instance_available")
                waiter.wait(
                    DBInstanceIdentifier=replacement,
                    WaiterConfig={"Delay": 15, "MaxAttempts": 160},
                )
            steps.append(
                f"{region}: replacement replica {replacement} of the promoted writer "
                f"(the old {other.db_replica_id} followed the dead one)"
            )
        return steps

    async def restore(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        return await asyncio.to_thread(self._restore, region)

    def _restore(self, region: str) -> list[str]:
        target = self.config.regions[region]
        steps = []
        for name in target.auto_scaling_groups:
            capacity = self._capacity.get(name)
            if capacity is not None:
                self._call(
                    "autoscaling", region, "update_auto_scaling_group",
                    AutoScalingGroupName=name, MinSize=capacity.min_size,
                    MaxSize=capacity.max_size, DesiredCapacity=capacity.desired,
                )  # fmt: skip
            self._call(
                "autoscaling", region, "resume_processes",
                AutoScalingGroupName=name, ScalingProcesses=SUSPENDED_PROCESSES,
            )  # fmt: skip
            steps.append(f"{name} back to its capacity")
        self._call(
            "route53", "us-east-1", "update_health_check",
            HealthCheckId=target.health_check_id, Inverted=False,
        )  # fmt: skip
        steps.append(f"Route 53 health check {target.health_check_id} restored")
        return steps
