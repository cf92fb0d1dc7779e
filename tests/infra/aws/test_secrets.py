"""Secrets: generated or read as Pulumi secrets, handed to nodes through Secrets Manager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.plan.runner import Planner, StackFiles, placeholder
from infra.settings_errors import SettingsError
from infra.spec import ROLE_SECRETS, SECRET_NAMES, Role
from tests.infra.conftest import EXAMPLE_STACKS

STACKS = Path(__file__).resolve().parents[3] / "stacks"


def _secret_document(plan, role: str) -> dict[str, str]:
    version = plan.named("aws:secretsmanager/secretVersion:SecretVersion", f"prod-use1-{role}")
    return json.loads(version.inputs["secretString"])


def test_each_role_secret_holds_only_what_the_role_needs(home_plan) -> None:
    generated = {
        r.name.removeprefix("prod-use1-"): r.outputs["result"]
        for r in home_plan.of_type("random:index/randomPassword:RandomPassword")
    }
    assert set(generated) == set(SECRET_NAMES)
    for role in (Role.GATEWAY, Role.MEDIA_NODE):
        document = _secret_document(home_plan, role.value)
        assert document == {name: generated[name] for name in ROLE_SECRETS[role]}
    assert "adminToken" not in _secret_document(home_plan, "media")


def test_other_region_uses_the_home_database_password(home_plan, eu_plan) -> None:
    version = eu_plan.named("aws:secretsmanager/secretVersion:SecretVersion", "prod-euw1-gateway")
    assert (
        json.loads(version.inputs["secretString"])["dbPassword"] == home_plan.exports["dbPassword"]
    )
    names = {r.name for r in eu_plan.of_type("random:index/randomPassword:RandomPassword")}
    assert "prod-euw1-dbPassword" not in names


def test_secure_values_are_replaced_by_marked_placeholders(tmp_path: Path) -> None:
    for stack in EXAMPLE_STACKS:
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(
            (STACKS / f"Pulumi.{stack}.yaml").read_text()
        )
    path = tmp_path / "Pulumi.dev-aws-us-east-1.yaml"
    path.write_text(path.read_text() + "  rtcfleet:adminToken:\n    secure: v1:AAAABBBB\n")
    plan = Planner(StackFiles(tmp_path)).plan("dev-aws-us-east-1")
    assert plan.placeholders == ["rtcfleet:adminToken"]
    assert plan.passed
    version = plan.named("aws:secretsmanager/secretVersion:SecretVersion", "dev-use1-gateway")
    document = json.loads(version.inputs["secretString"])
    assert document["adminToken"] == placeholder("rtcfleet:adminToken")
    assert "NOT-A-SECRET" in document["adminToken"].upper()
    generated = {r.name for r in plan.of_type("random:index/randomPassword:RandomPassword")}
    assert "dev-use1-adminToken" not in generated


def test_plain_text_secret_in_a_stack_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev-aws-us-east-1.yaml"
    path.write_text((STACKS / path.name).read_text() + "  rtcfleet:dbPassword: hunter2hunter2\n")
    with pytest.raises(SettingsError) as caught:
        Planner(StackFiles(tmp_path)).plan("dev-aws-us-east-1")
    assert caught.value.keys == ["rtcfleet:dbPassword"]
