"""The demo page and its script are served from the package, with a policy that lets the page
run only its own script."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway_node import demo


async def test_demo_page_and_script_are_served() -> None:
    app = web.Application()
    demo.add_routes(app)
    async with TestClient(TestServer(app)) as client:
        page = await client.get("/demo?token=abc&room=r1")
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        assert '<script src="/demo/demo.js"></script>' in html
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        script = await client.get("/demo/demo.js")
        assert script.status == 200 and script.content_type == "text/javascript"
        js = await script.text()
        for message in ("join", "publish_offer", "subscriber_answer", "rejoin", "leave"):
            assert f'type: "{message}"' in js, message
        assert "/v1/signal" in js and "getStats" in js
