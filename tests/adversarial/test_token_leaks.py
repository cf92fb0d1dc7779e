"""Secrets in URLs: the admin token is refused there, and no access log records a token."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from rtcfleet.local import LocalFleet
from tests.adversarial.conftest import logs, signal_url


def gateway_urls(fleet: LocalFleet) -> tuple[str, str]:
    gateway = fleet.regions[fleet.home].gateways[0]
    return gateway.http_url, gateway.admin_url


async def test_the_admin_token_is_refused_in_the_query_string(fleet: LocalFleet) -> None:
    _, admin_url = gateway_urls(fleet)
    token = fleet.spec.admin_token
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{admin_url}/api/settings?token={token}") as response:
            assert response.status == 401
        async with http.get(f"{admin_url}/?token={token}") as response:
            assert response.status == 401
            assert response.headers.get("WWW-Authenticate", "").startswith("Basic")
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{admin_url}/api/settings", headers=headers) as response:
            assert response.status == 200
        # a browser opens the console with Basic auth; the password is the admin token
        basic = {"Authorization": aiohttp.encode_basic_auth("admin", token)}
        async with http.get(f"{admin_url}/", headers=basic) as response:
            assert response.status == 200
            assert "rtcfleet" in await response.text()


async def test_access_logs_record_no_token(fleet: LocalFleet) -> None:
    http_url, admin_url = gateway_urls(fleet)
    join_token = fleet.token("leaky", "lena")
    admin_token = fleet.spec.admin_token
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{http_url}/demo?room=leaky&token={join_token}") as response:
            assert response.status == 200
        ws_url = f"{signal_url(fleet)}?access_token={join_token}"
        async with http.ws_connect(ws_url) as ws:
            await ws.send_json({"type": "join", "token": join_token})
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] == "joined", reply
        async with http.get(f"{admin_url}/api/rooms?token={admin_token}") as response:
            assert response.status in (200, 401)
    # the gateway writes an access log line once its response is sent: wait for both lines
    deadline = time.monotonic() + 10
    while not ("/demo?" in (text := logs(fleet)) and "/api/rooms" in text):
        assert time.monotonic() < deadline, "the access log is written"
        await asyncio.sleep(0.1)
    assert join_token not in text
    assert admin_token not in text
