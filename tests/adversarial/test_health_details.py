"""What a gateway's public port (8080) says about its backends: verdicts, never hosts or errors.

Readiness and region health once answered the public port with their reasons ("redis
unreachable: Error 111 connecting to 10.0.3.7:6379"), and ``/stats`` with the settings
database's last error: anyone could map the private network and watch its faults. The public
port now answers verdicts only; the admin port (behind its allow-list, ``/stats`` behind the
admin token too) keeps the reasons for operators.

The fleet's gateway is asked while ready; two gateway processes of the fleet's region are asked
while their backends fail: one whose Redis is down, one whose settings database is (its Redis is
a database of the fleet's server no one else uses, so the fleet notices neither).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway_node.settings import GatewaySettings
from infra.spec import (
    LIVENESS_PATH,
    READINESS_PATH,
    REGION_HEALTH_PATH,
    REGISTRATION_READINESS_PATH,
)
from rtcfleet.local import LocalFleet
from rtcfleet.servers import free_port
from rtcfleet.servers.process import ServerProcess

HEALTH_PATHS = (LIVENESS_PATH, READINESS_PATH, REGISTRATION_READINESS_PATH, REGION_HEALTH_PATH)
VERDICT_KEYS = {
    LIVENESS_PATH: {"alive", "gateway_id"},
    READINESS_PATH: {"ready"},
    REGISTRATION_READINESS_PATH: {"ready"},
    REGION_HEALTH_PATH: {"healthy"},
}
# a Redis database of the fleet's server that nothing of the fleet uses
SPARE_REDIS_DB = 15


@dataclass
class Answer:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


async def get(url: str, token: str | None = None) -> Answer:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url, headers=headers) as r:
        return Answer(r.status, await r.text())


@dataclass
class Gateway:
    http_url: str
    admin_url: str


@contextmanager
def cut_off_gateway(
    fleet: LocalFleet, name: str, redis: str, postgres_port: int
) -> Iterator[Gateway]:
    """A gateway process of the fleet's region with ``redis`` and a settings database on
    ``postgres_port``, where nothing listens."""
    client_port, admin_port = free_port(), free_port()
    env = GatewaySettings.environment(
        gateway_id=name,
        region=fleet.home,
        host="127.0.0.1",
        client_port=client_port,
        admin_port=admin_port,
        redis_url=redis,
        postgres_dsn=f"postgresql://rtcfleet@127.0.0.1:{postgres_port}/rtcfleet",
        api_keys={fleet.spec.api_key: fleet.spec.api_secret},
        cluster_secret=fleet.spec.cluster_secret,
        admin_token=fleet.spec.admin_token,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("RTCFLEET_")}
    process = ServerProcess(
        name,
        [sys.executable, "-m", "rtcfleet", "gateway"],
        fleet.workdir / "logs" / f"{name}.log",
        env=base | env,
    )
    process.start()
    try:
        yield Gateway(f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{admin_port}")
    finally:
        process.stop()


async def answered(url: str) -> None:
    for _ in range(100):
        try:
            await get(url)
            return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def settings_error(gateway: Gateway, admin_token: str) -> str:
    """The gateway's last settings read error, as its admin port shows it, once it has one
    (the gateway starts, then reads its settings once a second)."""
    for _ in range(100):
        try:
            stats = await get(gateway.admin_url + "/stats", admin_token)
        except aiohttp.ClientError:
            stats = Answer(0, "")
        if stats.status == 200 and (error := stats.json()["settings"]["last_error"]):
            return str(error)
        await asyncio.sleep(0.1)
    raise AssertionError("the gateway's settings read never failed")


def assert_verdict_only(path: str, answer: Answer, *secrets: str) -> None:
    assert set(answer.json()) == VERDICT_KEYS[path], f"{path}: {answer.text}"
    for secret in secrets:
        assert secret not in answer.text, f"{path} shows {secret!r}: {answer.text}"


async def test_the_public_port_shows_no_backend_host_or_error(fleet: LocalFleet) -> None:
    ready = fleet.regions[fleet.home].gateways[0]
    for path in HEALTH_PATHS:
        assert_verdict_only(path, await get(ready.http_url + path))
    detailed = (await get(ready.admin_url + READINESS_PATH)).json()
    assert detailed == {"ready": True, "reasons": []}

    dead_redis, dead_postgres = free_port(), free_port()
    primary = fleet.regions[fleet.home].redis.primary.url
    spare_redis = f"{primary.rsplit('/', 1)[0]}/{SPARE_REDIS_DB}"
    with (
        cut_off_gateway(
            fleet, "gateway-no-redis", f"redis://127.0.0.1:{dead_redis}", dead_postgres
        ) as no_redis,
        cut_off_gateway(fleet, "gateway-no-settings", spare_redis, dead_postgres) as no_settings,
    ):
        await answered(no_redis.http_url + LIVENESS_PATH)
        await settings_error(no_settings, fleet.spec.admin_token)
        secrets = (
            str(dead_redis),
            str(dead_postgres),
            "127.0.0.1",
            "unreachable",
            "refused",
            "Errno",
        )
        for path in HEALTH_PATHS:
            answer = await get(no_redis.http_url + path)
            assert answer.status == (200 if path == LIVENESS_PATH else 503), (path, answer)
            assert_verdict_only(path, answer, *secrets)
        for stats in (
            await get(no_redis.http_url + "/stats"),
            await get(no_settings.http_url + "/stats"),
        ):
            for secret in secrets:
                assert secret not in stats.text, f"public /stats shows {secret!r}: {stats.text}"

        # the admin port keeps what an operator needs
        reasons = (await get(no_redis.admin_url + READINESS_PATH)).json()["reasons"]
        assert "redis unreachable" in reasons[0] and str(dead_redis) in reasons[0], reasons
        assert (await get(no_settings.admin_url + "/stats")).status == 401
        last_error = await settings_error(no_settings, fleet.spec.admin_token)
        assert str(dead_postgres) in last_error, last_error
