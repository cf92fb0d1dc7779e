"""The built bundle, installed into a fresh folder, runs a call.

``rtcfleet bundle`` builds the archive; its ``install.sh`` installs it (files only) into a
temporary prefix with a venv of its own; first boot learns each node's facts from an IMDSv2
double, SSM and Secrets Manager (moto) exactly as on an instance; then the gateway and the
media node start with the ``ExecStart`` and ``EnvironmentFile`` of their installed units, and
two bots talk through them. Media stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from moto.server import ThreadedMotoServer

from infra.aws.node_groups import user_data
from infra.spec import MEDIA_PORT_MAX, MEDIA_PORT_MIN, Role
from rtcfleet.bundle.first_boot import NodeFacts, read_env_file, turn_secret, turnserver_conf
from rtcfleet.client.bot import Bot
from rtcfleet.servers import RedisServer, ReplicatedPostgres, free_port
from rtcfleet.servers.process import ServerProcess
from rtcfleet.tokens import mint_token, turn_credentials
from tests.media_node.cloud_double import AwsInstance, CloudDouble

pytestmark = pytest.mark.slow

REGION = "eu-west-1"
ENV = "smoke"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
SECRETS = {
    "apiSecret": "api-secret-of-the-smoke-region-0123456789",
    "clusterSecret": "cluster-secret-of-the-smoke-region-012345",
    "adminToken": "admin-token-of-the-smoke-region-0123",
    "dbPassword": "unused-with-trust-auth",
}


def run(argv: list[str], timeout: float = 180, **kwargs) -> subprocess.CompletedProcess[str]:
    """Runs outside the checkout, so ``python -m`` cannot import the development tree."""
    kwargs.setdefault("cwd", "/")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """``rtcfleet bundle`` output, installed by its own install.sh under a fresh prefix."""
    root = tmp_path_factory.mktemp("bundle")
    started = time.monotonic()
    checkout = Path(__file__).resolve().parents[2]
    built = run(
        [sys.executable, "-m", "rtcfleet", "bundle", "--out", str(root / "dist")], cwd=checkout
    )
    archive = Path(built.stdout.split()[0])
    build_seconds = time.monotonic() - started
    with tarfile.open(archive) as tar:
        tar.extractall(root / "unpacked", filter="data")
    (unpacked,) = (root / "unpacked").iterdir()
    paths = {
        "archive": archive,
        "unpacked": unpacked,
        "prefix": root / "opt",
        "etc": root / "etc",
        "units": root / "units",
        "sysctl": root / "sysctl",
    }
    started = time.monotonic()
    run(
        [
            str(unpacked / "install.sh"),
            "--prefix",
            str(paths["prefix"]),
            "--etc-dir",
            str(paths["etc"]),
            "--unit-dir",
            str(paths["units"]),
            "--sysctl-dir",
            str(paths["sysctl"]),
            "--python",
            sys.executable,
            "--no-system",
        ],
    )
    print(
        f"\nbundle: {built.stdout.strip()}\n  built in {build_seconds:.1f} s, "
        f"installed in {time.monotonic() - started:.1f} s"
    )
    yield paths


def test_bundle_holds_pinned_node_wheels_units_sysctl_and_turn(installed) -> None:
    unpacked = installed["unpacked"]
    manifest = json.loads((unpacked / "manifest.json").read_text())
    lock = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text()
    for name, version in manifest["pins"].items():
        assert re.search(rf"^{re.escape(name)}=={re.escape(version)}$", lock, re.M | re.I), name
    assert {"aiortc", "aiohttp", "av", "boto3", "redis", "asyncpg"} <= set(manifest["pins"])
    assert not {"pulumi", "pulumi-aws", "moto", "pytest"} & set(manifest["pins"])
    requirements = (unpacked / "requirements.txt").read_text().splitlines()
    assert requirements and all("--hash=sha256:" in line for line in requirements)
    assert any(w.startswith("rtcfleet-0.1.0-") for w in manifest["wheels"])
    assert sorted(p.name for p in installed["units"].iterdir()) == [
        "rtcfleet-first-boot.service",
        "rtcfleet-gateway.service",
        "rtcfleet-media.service",
        "rtcfleet-turn.service",
    ]
    sysctl = (installed["sysctl"] / "90-rtcfleet.conf").read_text()
    assert "net.ipv4.ip_local_port_range = 49152 65535" in sysctl
    assert "net.core.rmem_max = 26214400" in sysctl
    site = installed["prefix"] / "venv" / "lib"
    assert not list(site.glob("python3*/site-packages/pulumi*")), "Pulumi is not a node service"
    # installed from the bundle, not the development checkout
    where = run(
        [
            str(installed["prefix"] / "venv/bin/python"),
            "-c",
            "import media_node; print(media_node.__file__)",
        ]
    ).stdout
    assert where.startswith(str(installed["prefix"])), where


def test_health_check_passes(installed) -> None:
    result = run([str(installed["prefix"] / "bin" / "rtcfleet-health-check")])
    assert "rtcfleet bundle healthy" in result.stdout


def test_systemd_verifies_every_unit(installed) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    assert shutil.which("turnserver"), "coturn is not installed (apt-get install coturn)"
    run(["systemd-analyze", "verify", *map(str, sorted(installed["units"].iterdir()))])


async def test_turn_unit_relays_for_the_gateways_credentials_only(installed) -> None:
    """coturn started as its unit starts it, with the config first boot writes, allocates a
    relay for credentials the gateway signs with the shared secret, and refuses others."""
    assert shutil.which("turnserver"), "coturn is not installed (apt-get install coturn)"
    port = free_port()
    facts = NodeFacts(
        cloud="aws",
        role="media",
        env=ENV,
        region=REGION,
        node_id="i-0media00000000002",
        private_ip="127.0.0.1",
        public_ip=None,
        settings={"turnPort": port, "mediaPorts": [MEDIA_PORT_MIN, MEDIA_PORT_MAX]},
        secrets=SECRETS,
    )
    (installed["etc"] / "turnserver.conf").write_text(turnserver_conf(facts))
    unit = installed["units"] / "rtcfleet-turn.service"
    argv, _ = unit_command(unit, environment=False)
    # systemd hands coturn its configuration as a credential: a root-only file copied into
    # the service's credentials directory (%d), readable by the service user alone
    credential = re.search(r"^LoadCredential=turnserver\.conf:(.+)$", unit.read_text(), re.M)
    assert credential and credential[1] == str(installed["etc"] / "turnserver.conf"), credential
    credentials = installed["etc"] / "credentials"
    credentials.mkdir(exist_ok=True)
    shutil.copyfile(credential[1], credentials / "turnserver.conf")
    argv = [arg.replace("%d", str(credentials)) for arg in argv]
    assert argv[0] == shutil.which("turnserver") and argv[2] == str(
        credentials / "turnserver.conf"
    ), argv
    process = ServerProcess("turnserver", argv, installed["etc"] / "turnserver.log")
    process.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            process.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, process.log_tail()
                await asyncio.sleep(0.1)

        username, password = turn_credentials(turn_secret(SECRETS), "alice", 600)
        relay, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, lifetime=60
        )
        try:
            relayed_ip, relayed_port = relay.get_extra_info("sockname")[:2]
        finally:
            relay.close()
        print(f"coturn relayed alice at {relayed_ip}:{relayed_port}")
        assert relayed_ip == "127.0.0.1"
        assert MEDIA_PORT_MIN <= relayed_port <= MEDIA_PORT_MAX

        forged = turn_credentials("not-the-shared-secret", "mallory", 600)
        with pytest.raises(TransactionFailed, match="401"):
            await create_turn_endpoint(
                asyncio.DatagramProtocol, ("127.0.0.1", port), *forged, lifetime=60
            )
    finally:
        process.stop(timeout=10)


def unit_command(unit: Path, environment: bool = True) -> tuple[list[str], Path | None]:
    text = unit.read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", text, re.M)
    env_file = re.search(r"^EnvironmentFile=(.+)$", text, re.M)
    assert exec_start and (env_file or not environment)
    return exec_start[1].split(), Path(env_file[1]) if env_file else None


def node_env_file(role: Role) -> str:
    """The node.env the launch template's user data writes, taken from that script itself."""
    script = base64.b64decode(
        user_data(
            role,
            ENV,
            REGION,
            f"/rtcfleet/{ENV}/{REGION}/{role.value}/settings",
            f"rtcfleet/{ENV}/{REGION}/{role.value}",
        )
    ).decode()
    return script.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0] + "\n"


async def test_installed_services_carry_a_bot_call(
    installed, redis_server: RedisServer, postgres: ReplicatedPostgres, tmp_path: Path
) -> None:
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    double = CloudDouble(moto_url).start()
    processes: list[ServerProcess] = []
    bots: list[Bot] = []
    try:
        client_port, admin_port = free_port(), free_port()
        pg = postgres.primary.dsn
        pg_port = int(re.search(r":(\d+)/", pg)[1])  # type: ignore[index]
        postgres_doc = {
            "readHost": "127.0.0.1",
            "writeHost": "127.0.0.1",
            "port": pg_port,
            "database": "postgres",
            "user": "postgres",
            "tls": False,
        }
        redis_doc = {"host": "127.0.0.1", "port": redis_server.port, "tls": False}
        documents = {
            Role.GATEWAY: {
                "env": ENV,
                "region": REGION,
                "redis": redis_doc,
                "postgres": postgres_doc,
                "signalingPort": client_port,
                "adminPort": admin_port,
            },
            Role.MEDIA_NODE: {
                "env": ENV,
                "region": REGION,
                "redis": redis_doc,
                "postgres": postgres_doc,
                "signalingUrl": f"http://127.0.0.1:{client_port}/internal/",
                "mediaPorts": [49152, 65535],
                "turnPort": 3478,
                "drainTimeoutSeconds": 30,
            },
        }
        ssm = boto3.client(
            "ssm",
            endpoint_url=moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        secrets = boto3.client(
            "secretsmanager",
            endpoint_url=moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for role, document in documents.items():
            ssm.put_parameter(
                Name=f"/rtcfleet/{ENV}/{REGION}/{role.value}/settings",
                Value=json.dumps(document),
                Type="String",
            )
            secrets.create_secret(
                Name=f"rtcfleet/{ENV}/{REGION}/{role.value}", SecretString=json.dumps(SECRETS)
            )

        prefix = installed["prefix"]
        services: dict[Role, tuple[list[str], dict[str, str]]] = {}
        for role, unit, instance in (
            (Role.GATEWAY, "rtcfleet-gateway.service", "i-0gateway000000001"),
            (Role.MEDIA_NODE, "rtcfleet-media.service", "i-0media00000000001"),
        ):
            etc = tmp_path / f"etc-{role.value}"
            etc.mkdir()
            (etc / "node.env").write_text(node_env_file(role))
            double.aws = AwsInstance(instance, REGION, "rtcfleet-media")
            run(
                [
                    str(prefix / "bin" / "rtcfleet-first-boot"),
                    "--etc-dir",
                    str(etc),
                    "--metadata-url",
                    double.url,
                    "--endpoint-url",
                    moto_url,
                ],
                env={"PATH": "/usr/bin:/bin", **AWS},
            )
            argv, env_file = unit_command(installed["units"] / unit)
            assert env_file is not None
            env = read_env_file(etc / env_file.name)
            assert (etc / env_file.name).stat().st_mode & 0o077 == 0, "settings readable by all"
            services[role] = (argv, env)

        gateway_argv, gateway_env = services[Role.GATEWAY]
        media_argv, media_env = services[Role.MEDIA_NODE]
        assert gateway_env["RTCFLEET_GATEWAY_GATEWAY_ID"] == "i-0gateway000000001"
        assert media_env["RTCFLEET_MEDIA_NODE_ID"] == "i-0media00000000001"
        assert media_env["RTCFLEET_MEDIA_CLOUD"] == "aws"
        assert json.loads(media_env["RTCFLEET_MEDIA_GATEWAY_URLS"]) == [
            f"http://127.0.0.1:{client_port}"
        ]
        turn_conf = (tmp_path / "etc-media" / "turnserver.conf").read_text()
        shared = turn_secret(SECRETS)
        assert f"static-auth-secret={shared}" in turn_conf and "use-auth-secret" in turn_conf
        assert gateway_env["RTCFLEET_GATEWAY_TURN_SECRET"] == shared
        assert "min-port=49152" in turn_conf and "max-port=65535" in turn_conf

        base = {"PATH": "/usr/bin:/bin", "RTCFLEET_LOG_LEVEL": "INFO", **AWS}
        for name, argv, env in (
            ("gateway", gateway_argv, gateway_env | {"RTCFLEET_GATEWAY_HOST": "127.0.0.1"}),
            (
                "media",
                media_argv,
                media_env
                | {
                    "RTCFLEET_MEDIA_WORKERS": "1",
                    "RTCFLEET_MEDIA_BIND_IP": "127.0.0.1",
                    "RTCFLEET_MEDIA_HEALTH_PORT": str(free_port()),
                    "RTCFLEET_ICE_ADDRESSES": "127.0.0.1",
                },
            ),
        ):
            assert argv[0].startswith(str(prefix)), argv
            process = ServerProcess(name, argv, tmp_path / f"{name}.log", env=base | env)
            process.start()
            processes.append(process)

        deadline, ready_url = time.monotonic() + 60, f"http://127.0.0.1:{client_port}/readyz"
        while True:
            for process in processes:
                process.check_alive()
            try:
                await asyncio.to_thread(urllib.request.urlopen, ready_url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        "installed gateway not ready:\n"
                        + "\n".join(p.log_tail() for p in processes)
                    ) from None
                await asyncio.sleep(0.3)

        url = f"ws://127.0.0.1:{client_port}/v1/signal"
        for name in ("alice", "bob"):
            token = mint_token(ENV, SECRETS["apiSecret"], room="smoke", identity=name)
            bots.append(Bot([url], token, name=name))
        for bot in bots:
            await bot.start()
        alice, bob = bots

        def decoded() -> tuple[int, int]:
            a, b = alice.peer.received("bob", "video"), bob.peer.received("alice", "video")
            return (a.frames_decoded if a else 0, b.frames_decoded if b else 0)

        started = time.monotonic()
        while min(decoded()) < 30:
            assert time.monotonic() - started < 30, f"frames decoded {decoded()}"
            await asyncio.sleep(0.1)
        assert alice.session.node_id == "i-0media00000000001"
        print(f"bots decoded {decoded()} frames through the installed services")
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
        for process in reversed(processes):
            process.stop(timeout=10)
        double.stop()
        moto.stop()
