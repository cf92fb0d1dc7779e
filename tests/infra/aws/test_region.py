"""The region program: one explicit regional provider for every AWS resource, and its outputs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("plan", "region"), [("home_plan", "us-east-1"), ("eu_plan", "eu-west-1")])
def test_every_aws_resource_uses_the_stack_region_provider(plan, region, request) -> None:
    stack_plan = request.getfixturevalue(plan)
    providers = stack_plan.of_type("pulumi:providers:aws")
    assert [p.inputs["region"] for p in providers] == [region]
    aws = [r for r in stack_plan.resources if r.type.startswith("aws:")]
    assert aws and all(r.region == region for r in aws)


def test_home_exports_what_other_regions_read(home_plan, eu_plan) -> None:
    assert {"postgresPrimaryArn", "postgresWriteEndpoint", "dbPassword"} <= set(home_plan.exports)
    assert eu_plan.exports["region"] == "eu-west-1"
    assert eu_plan.exports["vpcCidr"] == "10.11.0.0/16"
