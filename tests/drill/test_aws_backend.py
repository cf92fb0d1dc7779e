"""The AWS drill backend's call sequence against moto, with Stubber for what moto lacks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from moto import mock_aws
from typer.testing import CliRunner

from rtcfleet.cli import app
from rtcfleet.drill.aws import SUSPENDED_PROCESSES, AwsBackend, AwsDrillConfig

HOME, STANDBY = "us-east-1", "eu-west-1"
PARAM = "/rtcfleet/prod/{}/gateway/settings"


def config(health: dict[str, str], datastore: bool = False) -> AwsDrillConfig:
    regions = {
        region: {
            "signal_urls": [f"wss://{region}.example.test/v1/signal"],
            "admin_url": f"https://admin.{region}.example.test",
            "health_check_id": health[region],
            "auto_scaling_groups": [f"prod-{region}-gateway", f"prod-{region}-media"],
            "db_replica_id": f"prod-{region}-replica" if region == STANDBY else None,
            "gateway_parameter": PARAM.format(region),
            "replication_group_id": f"prod-{region}-redis",
        }
        for region in (HOME, STANDBY)
    }
    return AwsDrillConfig.model_validate(
        {
            "env": "prod",
            "home": HOME,
            "standby": STANDBY,
            "regions": regions,
            "global_datastore_id": "ldgnf-prod-redis" if datastore else None,
        }
    )


class StubbedElastiCache:
    """A boto3 session whose ElastiCache client is stubbed (moto has no global datastores)."""

    def __init__(self) -> None:
        self.session = boto3.session.Session()
        self.stubbers: list[Stubber] = []

    def client(self, service: str, **kwargs: Any) -> Any:
        client = self.session.client(service, **kwargs)
        if service == "elasticache":
            stubber = Stubber(client)
            stubber.add_response(
                "failover_global_replication_group",
                {"GlobalReplicationGroup": {"GlobalReplicationGroupId": "ldgnf-prod-redis"}},
                {
                    "GlobalReplicationGroupId": "ldgnf-prod-redis",
                    "PrimaryRegion": STANDBY,
                    "PrimaryReplicationGroupId": f"prod-{STANDBY}-redis",
                },
            )
            stubber.activate()
            self.stubbers.append(stubber)
        return client


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": HOME,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        health = {}
        route53 = boto3.client("route53")
        for region in (HOME, STANDBY):
            check = route53.create_health_check(
                CallerReference=region,
                HealthCheckConfig={
                    "Type": "HTTPS",
                    "FullyQualifiedDomainName": f"{region}.example.test",
                    "ResourcePath": "/readyz",
                    "Port": 443,
                },
            )
            health[region] = check["HealthCheck"]["Id"]
            autoscaling = boto3.client("autoscaling", region_name=region)
            autoscaling.create_launch_configuration(
                LaunchConfigurationName=f"lc-{region}",
                ImageId="ami-12c6146b",
                InstanceType="t3.micro",
            )
            for role in ("gateway", "media"):
                autoscaling.create_auto_scaling_group(
                    AutoScalingGroupName=f"prod-{region}-{role}",
                    LaunchConfigurationName=f"lc-{region}",
                    MinSize=2,
                    MaxSize=6,
                    DesiredCapacity=2,
                    AvailabilityZones=[f"{region}a", f"{region}b"],
                )
            boto3.client("ssm", region_name=region).put_parameter(
                Name=PARAM.format(region),
                Type="String",
                Value=json.dumps({"postgres": {"writeHost": "home.example.test", "readHost": "r"}}),
            )
        home_rds = boto3.client("rds", region_name=HOME)
        primary = home_rds.create_db_instance(
            DBInstanceIdentifier="prod-home",
            DBInstanceClass="db.m6g.large",
            Engine="postgres",
            MasterUsername="rtcfleet",
            MasterUserPassword="secret-password-1",
            AllocatedStorage=50,
        )["DBInstance"]
        boto3.client("rds", region_name=STANDBY).create_db_instance_read_replica(
            DBInstanceIdentifier=f"prod-{STANDBY}-replica",
            SourceDBInstanceIdentifier=primary["DBInstanceArn"],
            DBInstanceClass="db.m6g.large",
        )
        yield health


def group(region: str, name: str) -> dict[str, Any]:
    client = boto3.client("autoscaling", region_name=region)
    return client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def test_home_outage_sequence(aws: dict[str, str]) -> None:
    session = StubbedElastiCache()
    backend = AwsBackend(config(aws, datastore=True), session=session, log=lambda _: None)
    route53 = boto3.client("route53")

    steps = asyncio.run(backend.inject(HOME))
    assert route53.get_health_check(HealthCheckId=aws[HOME])["HealthCheck"]["HealthCheckConfig"][
        "Inverted"
    ]
    for role in ("gateway", "media"):
        state = group(HOME, f"prod-{HOME}-{role}")
        assert (state["MinSize"], state["DesiredCapacity"]) == (0, 0)
        assert {p["ProcessName"] for p in state["SuspendedProcesses"]} == set(SUSPENDED_PROCESSES)
    assert group(STANDBY, f"prod-{STANDBY}-media")["DesiredCapacity"] == 2, "only the target"

    steps += asyncio.run(backend.fail_over_database())
    assert backend.home() == STANDBY
    document = json.loads(
        boto3.client("ssm", region_name=STANDBY).get_parameter(Name=PARAM.format(STANDBY))[
            "Parameter"
        ]["Value"]
    )
    assert document["postgres"]["writeHost"] != "home.example.test"
    assert document["postgres"]["readHost"] == "r"
    commands = boto3.client("ssm", region_name=STANDBY).list_commands()["Commands"]
    assert commands and commands[0]["Parameters"]["commands"] == [
        "systemctl restart rtcfleet-gateway.service"
    ]
    for stubber in session.stubbers:
        stubber.assert_no_pending_responses()

    steps += asyncio.run(backend.restore(HOME))
    assert not route53.get_health_check(HealthCheckId=aws[HOME])["HealthCheck"][
        "HealthCheckConfig"
    ]["Inverted"]
    for role in ("gateway", "media"):
        state = group(HOME, f"prod-{HOME}-{role}")
        assert (state["MinSize"], state["MaxSize"], state["DesiredCapacity"]) == (2, 6, 2)
        assert state["SuspendedProcesses"] == []

    operations = [call.split("(")[0] for call in backend.calls]
    assert operations == [
        "route53.update_health_check",
        "autoscaling.describe_auto_scaling_groups",
        "autoscaling.suspend_processes",
        "autoscaling.update_auto_scaling_group",
        "autoscaling.suspend_processes",
        "autoscaling.update_auto_scaling_group",
        "rds.promote_read_replica",
        "rds.describe_db_instances",
        "ssm.get_parameter",
        "ssm.put_parameter",
        "ssm.send_command",
        "elasticache.failover_global_replication_group",
        "autoscaling.update_auto_scaling_group",
        "autoscaling.resume_processes",
        "autoscaling.update_auto_scaling_group",
        "autoscaling.resume_processes",
        "route53.update_health_check",
    ]
    assert len(steps) == 9


def test_dry_run_prints_every_call_and_makes_none(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump(config({HOME: "hc-home", STANDBY: "hc-standby"}).model_dump()))
    result = CliRunner().invoke(
        app,
        ["drill", "region-outage", "--target", "aws", "--region", HOME, "--dry-run",
         "--config", str(path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("would call")]
    assert lines[0].startswith('would call route53.update_health_check(HealthCheckId="hc-home"')
    assert any("rds.promote_read_replica" in line for line in lines)
    assert lines[-1].startswith('would call route53.update_health_check(HealthCheckId="hc-home"')
    assert "Inverted=false" in lines[-1]


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "drill.yaml"
    path.write_text("env: prod\nhome: us-east-1\n")
    result = CliRunner().invoke(
        app, ["drill", "region-outage", "--target", "aws", "--region", HOME, "--config", str(path)]
    )
    assert result.exit_code == 2 and "standby" in result.output


def test_dry_run_replaces_a_third_regions_replica_from_the_promoted_one(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    document = config({HOME: "hc-home", STANDBY: "hc-standby"}).model_dump()
    third = "ap-southeast-1"
    document["regions"][third] = document["regions"][STANDBY] | {
        "health_check_id": "hc-third",
        "db_replica_id": f"prod-{third}-replica",
        "gateway_parameter": PARAM.format(third),
    }
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(
        app,
        ["drill", "region-outage", "--target", "aws", "--region", HOME, "--dry-run",
         "--config", str(path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("would call")]
    promote = next(i for i, line in enumerate(lines) if "rds.promote_read_replica" in line)
    replace = next(
        i for i, line in enumerate(lines) if "rds.create_db_instance_read_replica" in line
    )
    assert promote < replace
    assert f'"prod-{third}-replica-r' in lines[replace]
    assert f'SourceDBInstanceIdentifier="<arn of prod-{STANDBY}-replica>"' in lines[replace]
    assert f'SourceRegion="{STANDBY}"' in lines[replace]
    assert not any(
        "create_db_instance_read_replica" in line and STANDBY + "]" in line for line in lines
    )
