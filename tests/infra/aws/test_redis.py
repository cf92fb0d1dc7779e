"""Redis: replica in another zone, automatic failover, multi-AZ, encryption, auth from a secret."""

from __future__ import annotations

RG = "aws:elasticache/replicationGroup:ReplicationGroup"


def test_replication_group_fails_over_across_zones_encrypted(home_plan) -> None:
    group = home_plan.named(RG, "prod-use1-redis")
    assert group.inputs["automaticFailoverEnabled"] is True
    assert group.inputs["multiAzEnabled"] is True
    assert group.inputs["numCacheClusters"] == 3
    assert group.inputs["preferredCacheClusterAzs"] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert group.inputs["atRestEncryptionEnabled"] is True
    assert group.inputs["transitEncryptionEnabled"] is True
    assert group.inputs["port"] == 6379


def test_auth_token_is_the_generated_secret(home_plan) -> None:
    group = home_plan.named(RG, "prod-use1-redis")
    token = home_plan.named(
        "random:index/randomPassword:RandomPassword", "prod-use1-redisAuthToken"
    )
    assert group.inputs["authToken"] == token.outputs["result"]


def test_private_subnets_and_own_group(home_plan) -> None:
    group = home_plan.named(RG, "prod-use1-redis")
    subnets = home_plan.named("aws:elasticache/subnetGroup:SubnetGroup", "prod-use1-redis")
    private = {s.id for s in home_plan.of_type("aws:ec2/subnet:Subnet") if "private" in s.name}
    assert set(subnets.inputs["subnetIds"]) == private
    assert group.inputs["subnetGroupName"] == subnets.outputs["name"]
    redis_sg = home_plan.named("aws:ec2/securityGroup:SecurityGroup", "prod-use1-redis")
    assert group.inputs["securityGroupIds"] == [redis_sg.id]


def test_smallest_stack_keeps_one_replica(dev_plan) -> None:
    group = dev_plan.named(RG, "dev-use1-redis")
    assert group.inputs["numCacheClusters"] == 2
    assert group.inputs["preferredCacheClusterAzs"] == ["us-east-1a", "us-east-1b"]


def test_secret_values_reach_the_engine_as_pulumi_secrets(home_plan) -> None:
    assert "authToken" in home_plan.named(RG, "prod-use1-redis").secret_inputs
    assert (
        "password"
        in home_plan.named("aws:rds/instance:Instance", "prod-use1-postgres").secret_inputs
    )
    for role in ("gateway", "media"):
        version = home_plan.named(
            "aws:secretsmanager/secretVersion:SecretVersion", f"prod-use1-{role}"
        )
        assert "secretString" in version.secret_inputs
