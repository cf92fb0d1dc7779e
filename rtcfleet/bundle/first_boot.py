"""First boot of a node image: learn who this machine is and write its services' settings.

``/etc/rtcfleet/node.env`` (from the launch template's user data or the scale set's custom
data) names the role and where its settings and secrets live; instance tags stand in when it
is absent. AWS: IMDSv2 gives the instance id, region and addresses; the SSM parameter and the
Secrets Manager secret are read with the instance profile. Azure: IMDS gives the same facts;
Key Vault holds the settings document (``<role>-settings``) and the secrets
(``<role>-secrets``), read with the managed identity.

The output is ``<etc>/<role>.env`` (the unit's ``EnvironmentFile``, mode 0600) and, on media
nodes, ``<etc>/turnserver.conf`` for coturn. Both services derive TURN credentials from one
secret: ``HMAC-SHA256(clusterSecret, "rtcfleet-turn")`` unless the secret sets ``turnSecret``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from gateway_node.settings import GatewaySettings
from infra.peers import PEER_REGIONS, PEER_SIGNAL_URLS
from infra.recordings import recording_environment
from infra.spec import (
    ENV_TAG,
    INTERNAL_PATH_PREFIX,
    KEY_VAULT_TAG,
    MEDIA_PORT_MAX,
    MEDIA_PORT_MIN,
    ROLE_TAG,
    TURN_PORT,
)
from media_node.cloud_metadata import AzureMetadata, Ec2Metadata, MetadataError
from media_node.public_address import PublicAddressError, public_address
from media_node.settings import ICE_ADDRESSES_ENV, MediaNodeSettings
from rtcfleet.bundle.templates import TURNSERVER_CONF

ETC_DIR = Path("/etc/rtcfleet")
NODE_ENV = "node.env"
KEY_VAULT_API = "7.4"
KEY_VAULT_RESOURCE = "https://vault.azure.net"
# the node's user-assigned identity (custom data): azure-identity's variable for it
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"


class FirstBootError(RuntimeError):
    """The machine lacks a fact its services need; the message names it."""


class NotYetReadable(RuntimeError):
    """A read the node will be allowed soon (its permission or its secret is still on its way)."""


@dataclass
class NodeFacts:
    """Everything first boot learned, in cloud-neutral terms."""

    cloud: str
    role: str
    env: str
    region: str
    node_id: str
    private_ip: str
    public_ip: str | None
    settings: dict[str, Any]
    secrets: dict[str, str]
    extra: dict[str, str] = field(default_factory=dict)


def turn_secret(secrets: dict[str, str]) -> str:
    if secrets.get("turnSecret"):
        return secrets["turnSecret"]
    cluster = _require(secrets, "clusterSecret", "the role's secret")
    return hmac.new(cluster.encode(), b"rtcfleet-turn", hashlib.sha256).hexdigest()


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if mapping.get(key) in (None, ""):
        raise FirstBootError(f"{where} has no {key!r}")
    return mapping[key]


def redis_url(settings: dict[str, Any], secrets: dict[str, str]) -> str:
    redis = _require(settings, "redis", "settings document")
    scheme = "rediss" if redis.get("tls", True) else "redis"
    token = secrets.get("redisAuthToken")
    auth = f":{quote(token, safe='')}@" if token else ""
    return f"{scheme}://{auth}{redis['host']}:{redis.get('port', 6379)}/0"


def postgres_dsn(settings: dict[str, Any], secrets: dict[str, str], host_key: str) -> str:
    pg = _require(settings, "postgres", "settings document")
    password = quote(secrets.get("dbPassword", ""), safe="")
    user = quote(str(pg.get("user", "postgres")), safe="")
    auth = f"{user}:{password}" if password else user
    query = "" if pg.get("tls") is False else "?sslmode=require"
    host = _require(pg, host_key, "settings document's postgres")
    return (
        f"postgresql://{auth}@{host}:{pg.get('port', 5432)}/{pg.get('database', 'postgres')}{query}"
    )


def media_environment(facts: NodeFacts) -> dict[str, str]:
    s, secrets = facts.settings, facts.secrets
    signaling = str(_require(s, "signalingUrl", "settings document")).rstrip("/")
    base = signaling.removesuffix(INTERNAL_PATH_PREFIX.rstrip("/"))
    ports = s.get("mediaPorts") or [MEDIA_PORT_MIN, MEDIA_PORT_MAX]
    env = MediaNodeSettings.environment(
        node_id=facts.node_id,
        region=facts.region,
        gateway_urls=[base],
        cluster_secret=_require(secrets, "clusterSecret", "the role's secret"),
        redis_url=redis_url(s, secrets),
        settings_dsn=postgres_dsn(s, secrets, "readHost"),
        bind_ip=facts.private_ip,
        port_min=ports[0],
        port_max=ports[1],
        cloud=facts.cloud,
        public_ip=facts.public_ip or None,
        drain_timeout_seconds=s.get("drainTimeoutSeconds") or None,
        # traces (rtcfleet.tracing): off unless the settings document names a receiver
        otlp_endpoint=s.get("otlpEndpoint") or None,
        trace_sample_ratio=s.get("traceSampleRatio"),
    )
    return env | {ICE_ADDRESSES_ENV: facts.private_ip} | recording_environment(s)


def gateway_environment(facts: NodeFacts) -> dict[str, str]:
    s, secrets = facts.settings, facts.secrets
    api_key = str(s.get("apiKey") or facts.env)
    postgres = s.get("postgres") or {}
    return GatewaySettings.environment(
        gateway_id=facts.node_id,
        region=facts.region,
        redis_url=redis_url(s, secrets),
        postgres_dsn=postgres_dsn(s, secrets, "writeHost"),
        api_keys={api_key: _require(secrets, "apiSecret", "the role's secret")},
        cluster_secret=_require(secrets, "clusterSecret", "the role's secret"),
        admin_token=_require(secrets, "adminToken", "the role's secret"),
        turn_secret=turn_secret(secrets),
        # the region's settings copy: its lag in /stats and /metrics
        settings_replica_dsn=(
            postgres_dsn(s, secrets, "readHost") if postgres.get("readHost") else None
        ),
        # the copy subscribes to a writer in another cloud: the gateways keep it following
        settings_subscription=postgres.get("subscription") or None,
        client_port=s.get("signalingPort"),
        admin_port=s.get("adminPort"),
        public_url=s.get("publicUrl"),
        node_turn_port=s.get("turnPort"),
        # lists: left out when empty
        turn_urls=s.get("turnUrls") or None,
        stun_urls=s.get("stunUrls") or None,
        fallback_urls=s.get("fallbackUrls") or None,
        regions_by_distance=s.get("regionsByDistance") or None,
        # the other regions' gateways (infra/peers.py): asked before a new room is placed here,
        # and where a client goes when one of them must decide about its room
        peer_regions=s.get(PEER_REGIONS) or None,
        peer_signal_urls=s.get(PEER_SIGNAL_URLS) or None,
        otlp_endpoint=s.get("otlpEndpoint") or None,
        trace_sample_ratio=s.get("traceSampleRatio"),
    )


def turnserver_conf(facts: NodeFacts) -> str:
    ports = facts.settings.get("mediaPorts") or [MEDIA_PORT_MIN, MEDIA_PORT_MAX]
    external = (
        f"external-ip={facts.public_ip}/{facts.private_ip}" if facts.public_ip else "# no public IP"
    )
    return TURNSERVER_CONF.substitute(
        listening_port=facts.settings.get("turnPort", TURN_PORT),
        listening_ip=facts.private_ip,
        external_ip_line=external,
        min_port=ports[0],
        max_port=ports[1],
        realm=f"{facts.env}.{facts.region}.rtcfleet",
        secret=turn_secret(facts.secrets),
    )


def environment_text(env: dict[str, str]) -> str:
    """systemd EnvironmentFile syntax: one ``KEY="value"`` per line, quotes escaped."""
    lines = []
    for key, value in sorted(env.items()):
        if "\n" in value:
            raise FirstBootError(f"{key}: a value spans lines")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def write_outputs(facts: NodeFacts, etc_dir: Path) -> list[Path]:
    builders = {"media": media_environment, "gateway": gateway_environment}
    if facts.role not in builders:
        raise FirstBootError(f"unknown role {facts.role!r} (gateway or media)")
    env = builders[facts.role](facts) | facts.extra
    etc_dir.mkdir(parents=True, exist_ok=True)
    written = [_write_private(etc_dir / f"{facts.role}.env", environment_text(env))]
    if facts.role == "media":
        written.append(_write_private(etc_dir / "turnserver.conf", turnserver_conf(facts)))
    return written


def _write_private(path: Path, text: str) -> Path:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            words = shlex.split(value)
            values[key] = words[0] if words else ""
    return values


# ---- AWS --------------------------------------------------------------------------------------


async def aws_facts(etc_dir: Path, metadata_url: str | None, endpoint_url: str | None) -> NodeFacts:
    import boto3

    node = read_env_file(etc_dir / NODE_ENV)
    async with aiohttp.ClientSession() as session:
        metadata = Ec2Metadata(session, metadata_url)
        instance_id = await metadata.instance_id()
        region = node.get("RTCFLEET_REGION") or await metadata.region()
        role = node.get("RTCFLEET_ROLE") or await metadata.tag(ROLE_TAG)
        env = node.get("RTCFLEET_ENV") or await metadata.tag(ENV_TAG)
        private_ip = await metadata.require("meta-data/local-ipv4")
        public_ip = await metadata.get("meta-data/public-ipv4")
    if not role or not env:
        raise FirstBootError(f"{etc_dir / NODE_ENV} and the instance tags name no role/env")
    parameter = (
        node.get("RTCFLEET_SETTINGS_PARAMETER") or f"/rtcfleet/{env}/{region}/{role}/settings"
    )
    secret_id = node.get("RTCFLEET_SECRET_ARN") or f"rtcfleet/{env}/{region}/{role}"
    ssm = boto3.client("ssm", region_name=region, endpoint_url=endpoint_url)
    secrets_manager = boto3.client("secretsmanager", region_name=region, endpoint_url=endpoint_url)
    document = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    secret = secrets_manager.get_secret_value(SecretId=secret_id)["SecretString"]
    return NodeFacts(
        cloud="aws",
        role=role,
        env=env,
        region=region,
        node_id=instance_id,
        private_ip=private_ip,
        public_ip=public_ip,
        settings=json.loads(document),
        secrets=json.loads(secret),
    )


# ---- Azure ------------------------------------------------------------------------------------


def key_vault_uri(node: dict[str, str], tags: dict[str, str]) -> str | None:
    """The vault custom data names, else the one the scale set's ``rtcfleet:keyVault`` tag names."""
    if node.get("RTCFLEET_KEY_VAULT_URI"):
        return node["RTCFLEET_KEY_VAULT_URI"]
    name = tags.get(KEY_VAULT_TAG)
    return f"https://{name}.vault.azure.net/" if name else None


async def azure_facts(
    etc_dir: Path, metadata_url: str | None, key_vault_url: str | None
) -> NodeFacts:
    node = read_env_file(etc_dir / NODE_ENV)
    async with aiohttp.ClientSession() as session:
        metadata = AzureMetadata(session, metadata_url)
        compute = await metadata.compute()
        tags = await metadata.tags()
        role = node.get("RTCFLEET_ROLE") or tags.get(ROLE_TAG)
        env = node.get("RTCFLEET_ENV") or tags.get(ENV_TAG)
        vault = key_vault_url or key_vault_uri(node, tags)
        if not role or not env or not vault:
            raise FirstBootError(f"{etc_dir / NODE_ENV} and the VM's tags name no role/env/vault")
        secrets_name = node.get("RTCFLEET_SECRET_NAME") or f"{role}-secrets"
        settings_name = node.get("RTCFLEET_SETTINGS_SECRET_NAME") or f"{role}-settings"
        address = (await metadata.instance())["network"]["interface"][0]["ipv4"]["ipAddress"][0]
        client_id = node.get(AZURE_CLIENT_ID) or None
        token = await metadata.access_token(KEY_VAULT_RESOURCE, client_id=client_id)

        async def secret(name: str) -> str:
            async with session.get(
                f"{vault.rstrip('/')}/secrets/{name}",
                params={"api-version": KEY_VAULT_API},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                if response.status in (401, 403, 404):
                    raise NotYetReadable(f"Key Vault secret {name} answered {response.status}")
                if response.status != 200:
                    raise FirstBootError(f"Key Vault secret {name} answered {response.status}")
                return str((await response.json())["value"])

        document = await secret(settings_name)
        secrets = await secret(secrets_name)
    return NodeFacts(
        cloud="azure",
        role=role,
        env=env,
        region=str(compute.get("location", "")),
        node_id=str(compute.get("name", "")).replace("_", "-"),
        private_ip=str(address.get("privateIpAddress")),
        public_ip=address.get("publicIpAddress") or None,
        settings=json.loads(document),
        secrets=json.loads(secrets),
        # the services sign in as the same user-assigned identity (azure-identity's
        # DefaultAzureCredential reads it from their environment)
        extra={AZURE_CLIENT_ID: client_id} if client_id else {},
    )


# Answers that mean "not yet": IAM grants and secrets propagate after the instance starts.
RETRYABLE_AWS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
        "ResourceNotFoundException",
        "ParameterNotFound",
        "ThrottlingException",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def backoff_delays(total_seconds: float, first: float = 1.0, cap: float = 15.0) -> list[float]:
    """Doubling waits from ``first`` up to ``cap``, summing to at most ``total_seconds``."""
    delays: list[float] = []
    delay, spent = first, 0.0
    while spent + delay <= total_seconds:
        delays.append(delay)
        spent += delay
        delay = min(delay * 2, cap)
    return delays


async def learn_facts(args: argparse.Namespace, cloud: str) -> NodeFacts:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if cloud == "aws":
            return await aws_facts(args.etc_dir, args.metadata_url, args.endpoint_url)
        return await azure_facts(args.etc_dir, args.metadata_url, args.key_vault_url)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in RETRYABLE_AWS_CODES:
            raise NotYetReadable(str(exc)) from exc
        raise FirstBootError(str(exc)) from exc
    except (BotoCoreError, MetadataError, aiohttp.ClientError, OSError) as exc:
        # no credentials yet, the metadata service or an endpoint not answering yet
        raise NotYetReadable(f"{type(exc).__name__}: {exc}") from exc


def learn_facts_patiently(args: argparse.Namespace, cloud: str) -> NodeFacts:
    """Retries "not yet" answers with bounded backoff, logging each, then gives up."""
    delays = backoff_delays(args.retry_seconds)
    for attempt in range(len(delays) + 1):
        try:
            return asyncio.run(learn_facts(args, cloud))
        except NotYetReadable as exc:
            if attempt == len(delays):
                raise FirstBootError(
                    f"still not readable after {attempt + 1} attempts: {exc}"
                ) from exc
            print(
                f"rtcfleet first boot: attempt {attempt + 1} not yet readable ({exc}); "
                f"retrying in {delays[attempt]:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud", choices=("aws", "azure"), default=None)
    parser.add_argument("--etc-dir", type=Path, default=ETC_DIR)
    parser.add_argument("--metadata-url", default=os.environ.get("RTCFLEET_METADATA_URL"))
    parser.add_argument("--endpoint-url", default=os.environ.get("RTCFLEET_AWS_ENDPOINT_URL"))
    parser.add_argument("--key-vault-url", default=os.environ.get("RTCFLEET_KEY_VAULT_URL"))
    parser.add_argument(
        "--retry-seconds",
        type=float,
        default=0.0,
        help="keep retrying reads that are not allowed or not answered yet for this long",
    )
    args = parser.parse_args(argv)
    cloud = args.cloud or read_env_file(args.etc_dir / NODE_ENV).get("RTCFLEET_CLOUD") or "aws"
    try:
        facts = learn_facts_patiently(args, cloud)
        if facts.role == "media" and not facts.public_ip and facts.settings.get("stunUrls"):
            # the cloud does not say (Azure Standard IPs): ask a STUN server outside the NAT
            facts.public_ip = asyncio.run(
                public_address(list(facts.settings["stunUrls"]), facts.private_ip)
            )
            print(f"public address {facts.public_ip} (STUN)", flush=True)
        if facts.role == "media":
            # the drain agent talks to the same endpoints first boot did
            facts.extra |= MediaNodeSettings.environment(
                metadata_url=args.metadata_url or None, cloud_api_url=args.endpoint_url or None
            )
        written = write_outputs(facts, args.etc_dir)
    except (FirstBootError, PublicAddressError, KeyError, ValueError) as exc:
        print(f"rtcfleet first boot failed: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
