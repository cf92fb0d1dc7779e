"""Postgres: the home writer and its reader; a cross-region replica elsewhere."""

from __future__ import annotations

DB = "aws:rds/instance:Instance"


def test_home_primary_is_multi_az_encrypted_backed_up_protected(home_plan, dev_plan) -> None:
    primary = home_plan.named(DB, "prod-use1-postgres")
    assert primary.inputs["engine"] == "postgres"
    assert primary.inputs["multiAz"] is True
    assert primary.inputs["storageEncrypted"] is True
    assert primary.inputs["backupRetentionPeriod"] == 14
    assert primary.inputs["deletionProtection"] is True
    assert primary.inputs["publiclyAccessible"] is False
    assert "replicateSourceDb" not in primary.inputs
    password = home_plan.named("random:index/randomPassword:RandomPassword", "prod-use1-dbPassword")
    assert primary.inputs["password"] == password.outputs["result"]
    assert dev_plan.named(DB, "dev-use1-postgres").inputs["deletionProtection"] is False


def test_home_reader_replicates_the_primary_in_region(home_plan) -> None:
    primary = home_plan.named(DB, "prod-use1-postgres")
    reader = home_plan.named(DB, "prod-use1-postgres-read")
    assert reader.inputs["replicateSourceDb"] == primary.outputs["identifier"]
    assert reader.region == primary.region == "us-east-1"
    assert "kmsKeyId" not in reader.inputs
    assert home_plan.exports["postgresReadEndpoint"] == reader.outputs["address"]


def test_other_region_replicates_the_home_primary_by_arn(home_plan, eu_plan) -> None:
    replica = eu_plan.named(DB, "prod-euw1-postgres-replica")
    home_primary = home_plan.named(DB, "prod-use1-postgres")
    assert replica.inputs["replicateSourceDb"] == home_primary.outputs["arn"]
    assert replica.inputs["replicateSourceDb"].startswith("arn:aws:rds:us-east-1:")
    assert replica.region == "eu-west-1"
    key = eu_plan.named("aws:kms/key:Key", "prod-euw1-postgres")
    assert replica.inputs["kmsKeyId"] == key.outputs["arn"] and key.region == "eu-west-1"
    assert replica.inputs["multiAz"] is True and replica.inputs["storageEncrypted"] is True
    assert [r.name for r in eu_plan.of_type(DB)] == ["prod-euw1-postgres-replica"]


def test_home_outputs_reach_the_other_region_through_a_stack_reference(home_plan, eu_plan) -> None:
    reference = eu_plan.named(
        "pulumi:pulumi:StackReference", "organization/rtcfleet/prod-aws-us-east-1"
    )
    assert {"postgresPrimaryArn", "postgresWriteEndpoint", "dbPassword"} <= set(
        reference.outputs["outputNames"]
    )
    assert eu_plan.exports["postgresWriteEndpoint"] == home_plan.exports["postgresWriteEndpoint"]
    assert "postgresPrimaryArn" not in eu_plan.exports
