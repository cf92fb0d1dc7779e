"""First boot of an Azure node: IMDS says who it is, Key Vault (with its identity's token) what
it runs with; custom data first, the scale set's tags when custom data is lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.spec import ENV_TAG, KEY_VAULT_TAG, ROLE_TAG
from rtcfleet.bundle import first_boot
from rtcfleet.bundle.first_boot import key_vault_uri, read_env_file, turn_secret
from tests.media_node.cloud_double import AzureInstance, CloudDouble

SECRETS = {
    "clusterSecret": "cluster-secret-1",
    "redisAuthToken": "redis key/with+chars",
    "dbPassword": "db-password-1",
    "apiSecret": "api-secret-1",
    "adminToken": "admin-token-1",
}
REDIS = {"host": "prod-weu-redis-abc.redis.cache.windows.net", "port": 6380, "tls": True}
POSTGRES = {
    "readHost": "prod-weu-postgres-replica.postgres.database.azure.com",
    "writeHost": "prod-weu-postgres.postgres.database.azure.com",
    "port": 5432,
    "database": "rtcfleet",
    "user": "rtcfleet",
}


@pytest.fixture
def cloud() -> Iterator[CloudDouble]:
    double = CloudDouble().start()
    double.azure = AzureInstance(
        name="prod-weu-media_3",
        resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/"
        "virtualMachineScaleSets/prod-weu-media/virtualMachines/3",
        tags={ROLE_TAG: "media", ENV_TAG: "prod", KEY_VAULT_TAG: "prod-weu-kv-1a2b3c"},
        secrets={
            "media-settings": json.dumps(
                {
                    "env": "prod",
                    "region": "westeurope",
                    "redis": REDIS,
                    "postgres": {k: v for k, v in POSTGRES.items() if k != "writeHost"},
                    "signalingUrl": "http://10.30.47.254:8080/internal/",
                    "mediaPorts": [49152, 65535],
                    "drainTimeoutSeconds": 3600,
                }
            ),
            "media-secrets": json.dumps(
                {k: SECRETS[k] for k in ("clusterSecret", "redisAuthToken", "dbPassword")}
            ),
            "gateway-settings": json.dumps(
                {"env": "prod", "region": "westeurope", "redis": REDIS, "postgres": POSTGRES}
            ),
            "gateway-secrets": json.dumps(SECRETS),
        },
    )
    yield double
    double.stop()


def test_media_node_reads_its_vault_with_its_identity(cloud: CloudDouble, tmp_path: Path) -> None:
    (tmp_path / "node.env").write_text(
        "\n".join(
            [
                "RTCFLEET_ROLE=media",
                "RTCFLEET_ENV=prod",
                "RTCFLEET_REGION=westeurope",
                "RTCFLEET_CLOUD=azure",
                f"RTCFLEET_KEY_VAULT_URI={cloud.url}/",
                "RTCFLEET_SECRET_NAME=media-secrets",
                "RTCFLEET_SETTINGS_SECRET_NAME=media-settings",
                "AZURE_CLIENT_ID=5ca1ab1e-0000-4000-8000-00000000c1d0",
            ]
        )
        + "\n"
    )
    code = first_boot.main(["--etc-dir", str(tmp_path), "--metadata-url", cloud.url])
    assert code == 0
    assert cloud.azure is not None
    # the token was the role's own identity's, for Key Vault; only the role's two secrets read
    assert cloud.azure.token_client_ids == ["5ca1ab1e-0000-4000-8000-00000000c1d0"]
    assert cloud.azure.secret_reads == ["media-settings", "media-secrets"]
    env = read_env_file(tmp_path / "media.env")
    assert env["RTCFLEET_MEDIA_NODE_ID"] == "prod-weu-media-3"
    assert env["RTCFLEET_MEDIA_REGION"] == "westeurope"
    assert env["RTCFLEET_MEDIA_CLOUD"] == "azure"
    assert env["RTCFLEET_MEDIA_REDIS_URL"] == (
        f"rediss://:redis%20key%2Fwith%2Bchars@{REDIS['host']}:6380/0"
    )
    assert env["RTCFLEET_MEDIA_SETTINGS_DSN"].startswith(
        f"postgresql://rtcfleet:db-password-1@{POSTGRES['readHost']}:5432/rtcfleet"
    )
    assert env["RTCFLEET_MEDIA_GATEWAY_URLS"] == '["http://10.30.47.254:8080"]'
    assert env["RTCFLEET_MEDIA_DRAIN_TIMEOUT_SECONDS"] == "3600"
    # the recorder's DefaultAzureCredential signs in as the same user-assigned identity
    assert env["AZURE_CLIENT_ID"] == "5ca1ab1e-0000-4000-8000-00000000c1d0"
    turn = (tmp_path / "turnserver.conf").read_text()
    assert f"static-auth-secret={turn_secret(SECRETS)}" in turn
    assert (tmp_path / "media.env").stat().st_mode & 0o777 == 0o600
    assert "adminToken" not in (tmp_path / "media.env").read_text()


def test_without_custom_data_the_scale_set_tags_name_role_env_and_vault(
    cloud: CloudDouble, tmp_path: Path
) -> None:
    assert cloud.azure is not None
    cloud.azure.tags[ROLE_TAG] = "gateway"
    # the vault the tag names, reached here through the double
    assert key_vault_uri({}, cloud.azure.tags) == "https://prod-weu-kv-1a2b3c.vault.azure.net/"
    code = first_boot.main(
        ["--cloud", "azure", "--etc-dir", str(tmp_path), "--metadata-url", cloud.url,
         "--key-vault-url", cloud.url]
    )  # fmt: skip
    assert code == 0
    assert cloud.azure.secret_reads == ["gateway-settings", "gateway-secrets"]
    env = read_env_file(tmp_path / "gateway.env")
    assert env["RTCFLEET_GATEWAY_ADMIN_TOKEN"] == "admin-token-1"
    assert str(POSTGRES["writeHost"]) in env["RTCFLEET_GATEWAY_POSTGRES_DSN"]
    assert cloud.azure.token_client_ids == [None], "one identity: IMDS needs no client_id"
    assert "AZURE_CLIENT_ID" not in env


def test_old_tag_names_and_a_refused_token_are_clear_failures(
    cloud: CloudDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cloud.azure is not None
    cloud.azure.tags = {"rtcfleet-role": "media", "rtcfleet-env": "prod"}
    args = ["--cloud", "azure", "--etc-dir", str(tmp_path), "--metadata-url", cloud.url]
    assert first_boot.main(args) == 1
    assert "name no role/env/vault" in capsys.readouterr().err
    cloud.azure.tags = {ROLE_TAG: "media", ENV_TAG: "prod", KEY_VAULT_TAG: "v"}
    cloud.azure.secrets.pop("media-secrets")
    assert first_boot.main([*args, "--key-vault-url", cloud.url]) == 1
    assert "media-secrets answered 404" in capsys.readouterr().err
    assert not (tmp_path / "media.env").exists()
