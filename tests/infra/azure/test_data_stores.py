"""Redis and Postgres: zones, replicas, HA, privacy; Key Vault: who reads which secret."""

from __future__ import annotations

import json

from infra.spec import ROLE_SECRETS, Role

REDIS = "azure-native:redis:Redis"
SERVER = "azure-native:dbforpostgresql:Server"
SECRET = "azure-native:keyvault:Secret"
ASSIGNMENT = "azure-native:authorization:RoleAssignment"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def test_redis_replicas_across_zones_private_and_tls_only(weu_plan, neu_plan) -> None:
    cache = weu_plan.named(REDIS, "prod-weu-redis").inputs
    assert cache["sku"] == {"name": "Premium", "family": "P", "capacity": 2}
    assert cache["zones"] == ["1", "2", "3"] and cache["replicasPerPrimary"] == 2
    assert cache["enableNonSslPort"] is False and cache["minimumTlsVersion"] == "1.2"
    assert cache["publicNetworkAccess"] == "Disabled"
    endpoint = weu_plan.named("azure-native:network:PrivateEndpoint", "prod-weu-redis").inputs
    assert endpoint["subnet"]["id"].endswith("/subnets/redis")
    connection = endpoint["privateLinkServiceConnections"][0]
    assert connection["privateLinkServiceId"] == weu_plan.named(REDIS, "prod-weu-redis").id
    assert connection["groupIds"] == ["redisCache"]
    assert neu_plan.named(REDIS, "prod-neu-redis").inputs["replicasPerPrimary"] == 1


def test_home_writer_is_zone_redundant_with_an_in_region_replica(weu_plan) -> None:
    writer = weu_plan.named(SERVER, "prod-weu-postgres")
    i = writer.inputs
    assert i["createMode"] == "Create" and i["version"] == "16"
    assert i["highAvailability"] == {"mode": "ZoneRedundant", "standbyAvailabilityZone": "2"}
    assert i["availabilityZone"] == "1"
    assert i["backup"] == {"backupRetentionDays": 14, "geoRedundantBackup": "Enabled"}
    assert i["network"]["publicNetworkAccess"] == "Disabled"
    assert i["network"]["delegatedSubnetResourceId"].endswith("/subnets/postgres")
    assert i["sku"] == {"name": "Standard_D8ds_v5", "tier": "GeneralPurpose"}
    password = weu_plan.named("random:index/randomPassword:RandomPassword", "prod-weu-dbPassword")
    assert i["administratorLoginPassword"] == password.outputs["result"]
    assert "administratorLoginPassword" in writer.secret_inputs
    reader = weu_plan.named(SERVER, "prod-weu-postgres-read").inputs
    assert reader["createMode"] == "Replica" and reader["sourceServerResourceId"] == writer.id
    assert reader["availabilityZone"] == "3"
    assert weu_plan.exports["postgresServerId"] == writer.id


def test_other_region_holds_a_cross_region_replica_of_the_home_writer(weu_plan, neu_plan) -> None:
    [replica] = neu_plan.of_type(SERVER)
    assert replica.name == "prod-neu-postgres-replica" and replica.region == "northeurope"
    assert replica.inputs["createMode"] == "Replica"
    assert replica.inputs["sourceServerResourceId"] == weu_plan.exports["postgresServerId"]
    assert "/resourceGroups/rtcfleet-prod-westeurope/" in replica.inputs["sourceServerResourceId"]
    assert replica.inputs["network"]["delegatedSubnetResourceId"].startswith(
        neu_plan.exports["vnetId"]
    )
    assert neu_plan.exports["postgresWriteEndpoint"] == weu_plan.exports["postgresWriteEndpoint"]
    assert "postgresServerId" not in neu_plan.exports


def test_each_role_reads_only_its_own_secrets_through_its_identity(weu_plan) -> None:
    vault = weu_plan.named("azure-native:keyvault:Vault", "prod-weu-kv").inputs["properties"]
    assert vault["enableRbacAuthorization"] is True and vault["enablePurgeProtection"] is True
    assert vault["networkAcls"]["defaultAction"] == "Deny"
    subnets = [rule["id"] for rule in vault["networkAcls"]["virtualNetworkRules"]]
    assert [s.rsplit("/", 1)[-1] for s in subnets] == ["gateway", "media"]
    generated = {
        r.name.removeprefix("prod-weu-"): r.outputs["result"]
        for r in weu_plan.of_type("random:index/randomPassword:RandomPassword")
    }
    redis_key = "planned-redis-key-"
    for role in (Role.GATEWAY, Role.MEDIA_NODE):
        entry = weu_plan.named(SECRET, f"prod-weu-{role.value}-secrets")
        document = json.loads(entry.inputs["properties"]["value"])
        assert set(document) == set(ROLE_SECRETS[role])
        assert document["redisAuthToken"].startswith(redis_key)
        assert all(document[n] == generated[n] for n in document if n != "redisAuthToken")
        assert "properties" in entry.secret_inputs
        identity = weu_plan.named(IDENTITY, f"prod-weu-{role.value}")
        grants = [
            a
            for a in weu_plan.of_type(ASSIGNMENT)
            if a.inputs["principalId"] == identity.outputs["principalId"]
            and a.inputs["roleDefinitionId"].endswith(SECRETS_USER)
        ]
        settings = weu_plan.named(SECRET, f"prod-weu-{role.value}-settings")
        assert {g.inputs["scope"] for g in grants} == {entry.id, settings.id}
    media = json.loads(
        weu_plan.named(SECRET, "prod-weu-media-secrets").inputs["properties"]["value"]
    )
    assert "adminToken" not in media and "apiSecret" not in media


def test_settings_documents_point_at_the_private_endpoints(weu_plan) -> None:
    media = json.loads(
        weu_plan.named(SECRET, "prod-weu-media-settings").inputs["properties"]["value"]
    )
    assert media["redis"] == {"host": weu_plan.exports["redisHost"], "port": 6380, "tls": True}
    assert media["postgres"]["readHost"] == weu_plan.exports["postgresReadEndpoint"]
    assert media["signalingUrl"] == "http://10.30.47.254:8080/internal/"
    gateway = json.loads(
        weu_plan.named(SECRET, "prod-weu-gateway-settings").inputs["properties"]["value"]
    )
    assert gateway["postgres"]["writeHost"] == weu_plan.exports["postgresWriteEndpoint"]
