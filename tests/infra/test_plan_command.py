"""`rtcfleet plan`: the three example stacks pass; bad settings and violations fail loudly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy
from typer.testing import CliRunner

import infra.policy
from rtcfleet.cli import app
from tests.infra.conftest import EXAMPLE_STACKS

STACKS = Path(__file__).resolve().parents[2] / "stacks"
runner = CliRunner()


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_example_stacks_pass_the_policy_pack(stack: str) -> None:
    result = runner.invoke(app, ["plan", "--stack", stack])
    assert result.exit_code == 0, result.output
    assert "policy pack: passed" in result.output
    assert "aws:rds:Instance" in result.output


def test_json_is_one_document_without_secret_values() -> None:
    result = runner.invoke(app, ["plan", "--stack", "prod-aws-eu-west-1", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["passed"] is True and document["violations"] == []
    assert document["references"] == ["prod-aws-us-east-1"]
    replica = next(r for r in document["resources"] if r["name"] == "prod-euw1-postgres-replica")
    assert replica["region"] == "eu-west-1"
    assert replica["inputs"]["replicateSourceDb"].startswith("arn:aws:rds:us-east-1:")
    assert "planned-random-" not in result.stdout
    groups = [r for r in document["resources"] if r["type"].endswith("SecurityGroup")]
    assert {g["inputs"]["tags"]["rtcfleet:role"] for g in groups} >= {"gateway", "media", "redis"}


def _stacks_with(tmp_path: Path, stack: str, old: str, new: str) -> Path:
    for name in EXAMPLE_STACKS:
        text = (STACKS / f"Pulumi.{name}.yaml").read_text()
        if name == stack:
            assert old in text
            text = text.replace(old, new)
        (tmp_path / f"Pulumi.{name}.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("    - 203.0.113.10/32", "    - 0.0.0.0/0", "rtcfleet:adminAllowList"),
        ("    - us-east-1b\n", "", "rtcfleet:availabilityZones"),
        ("      mode: self-signed", "      mode: borrowed", "rtcfleet:certificates"),
    ],
)
def test_bad_settings_exit_2_naming_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    stacks = _stacks_with(tmp_path, "dev-aws-us-east-1", old, new)
    result = runner.invoke(
        app, ["plan", "--stack", "dev-aws-us-east-1", "--stacks-dir", str(stacks)]
    )
    assert result.exit_code == 2
    assert key in result.output and "nothing planned" in result.output
    assert "aws:" not in result.output


def test_bad_home_region_stops_the_region_that_reads_it(tmp_path: Path) -> None:
    stacks = _stacks_with(
        tmp_path, "prod-aws-us-east-1", "    - us-east-1c\n", "    - eu-west-1c\n"
    )
    result = runner.invoke(
        app, ["plan", "--stack", "prod-aws-eu-west-1", "--stacks-dir", str(stacks), "--json"]
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout)["settingsErrors"][0]["key"] == "rtcfleet:availabilityZones"


def test_a_violation_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_nat(args, report) -> None:
        if args.resource_type == "aws:ec2/natGateway:NatGateway":
            report("no NAT allowed in this test")

    strict = ResourceValidationPolicy(
        name="test-no-nat",
        description="test",
        validate=refuse_nat,
        enforcement_level=EnforcementLevel.MANDATORY,
    )
    monkeypatch.setattr(infra.policy, "POLICIES", [*infra.policy.POLICIES, strict])
    result = runner.invoke(app, ["plan", "--stack", "dev-aws-us-east-1"])
    assert result.exit_code == 1
    assert "test-no-nat" in result.output and "FAILED" in result.output
