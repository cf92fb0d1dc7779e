"""Crafted links to the demo page, opened in headless Chromium.

A link is all an attacker controls here: its query string and fragment. None may make the page
open a socket anywhere but its own gateway, start the camera without the visitor pressing
Join, join a room other than the one it shows, or put the token in the gateway's access log;
and a page whose token expires stops there instead of resuming with it.
A listener of the test's own on 127.0.0.1 stands in for the attacker's server and records every
connection it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from rtcfleet.local import LocalFleet
from tests.adversarial.conftest import Attacker, HonestCall, assert_unharmed, logs, signal_url
from tests.adversarial.test_expired_token import expiring_token
from tests.browser.chromium import Browser, Page, require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

LOADED = "document.readyState === 'complete' && !!window.rtcfleetDemo"
JOIN_CLICK = "document.querySelector('#join button[type=submit]').click()"
# what the page did, recorded from before its own script runs
WATCH = """(() => {
  const seen = { sockets: [], cameras: 0 };
  window.attackSeen = seen;
  const Native = window.WebSocket;
  window.WebSocket = function (url, protocols) {
    seen.sockets.push(String(url));
    return new Native(url, protocols);
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  const media = navigator.mediaDevices;
  const getUserMedia = media.getUserMedia.bind(media);
  media.getUserMedia = (constraints) => { seen.cameras += 1; return getUserMedia(constraints); };
})();"""
SEEN = "window.attackSeen"
STATUS = "window.rtcfleetDemo.status"
# a page that refused acts on it within this; what it did not do by then it does not do
SETTLE_S = 2.0


class Listener:
    """The attacker's server: accepts on 127.0.0.1 and records every connection it gets."""

    def __init__(self) -> None:
        self.connections: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(2.0):
                self.connections.append(await reader.read(1024))
        writer.close()

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    browser = await Browser(require_chromium()).start()
    try:
        yield browser
    finally:
        await browser.close()


async def open_watched(browser: Browser, url: str) -> Page:
    """A tab that records its sockets and camera requests, then loads ``url``."""
    page = await browser.open("about:blank")
    await page.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH)
    await page.send("Page.navigate", url=url)
    await page.wait_for(LOADED, 15, f"the demo page at {url}")
    return page


async def test_a_crafted_link_sends_nothing_elsewhere_and_starts_no_camera(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    gateway = fleet.regions[fleet.home].gateways[0]
    page_url = f"{gateway.http_url}/demo"
    own_host = gateway.http_url.split("//", 1)[1]
    room = f"lure-{uuid.uuid4().hex[:8]}"
    token = fleet.token(room, "visitor")
    autostart = "autostart=1&autojoin=1&join=1&publish=1&auto=1"
    mark = honest.mark()
    async with Listener() as attacker, chromium() as browser:
        foreign = [
            f"ws://127.0.0.1:{attacker.port}/v1/signal",
            f"wss://127.0.0.1:{attacker.port}/v1/signal",
            f"//127.0.0.1:{attacker.port}/v1/signal",
            f"ws://{own_host}@127.0.0.1:{attacker.port}/v1/signal",
            f"http://127.0.0.1:{attacker.port}/v1/signal",
        ]
        links = [
            f"{page_url}?signal={quote(foreign[0], safe='')}&room={room}&token={token}&{autostart}",
            *(
                f"{page_url}?signal={quote(url, safe='')}&{autostart}#token={token}&{autostart}"
                for url in foreign[1:]
            ),
            # the page's own gateway, but a link that shows one room and carries a token for
            # another: the attacker's room, where the attacker watches
            f"{page_url}?room=family-call#token={token}",
        ]
        watcher = await Attacker.connect(signal_url(fleet))
        try:
            await watcher.join(fleet.token(room, "watcher"))
            pages = await asyncio.gather(*(open_watched(browser, link) for link in links))
            await asyncio.sleep(SETTLE_S)
            for link, page in zip(links, pages, strict=True):
                # nothing happens on load, and the token leaves the address bar and the history
                assert await page.evaluate(STATUS) == "idle", link
                assert await page.evaluate(SEEN) == {"sockets": [], "cameras": 0}, link
                assert token not in await page.evaluate("location.href"), link
            for page in pages:
                await page.evaluate(JOIN_CLICK)
            await asyncio.sleep(SETTLE_S)
            arrived = [m["type"] for m in await watcher.drain_messages(quiet=0.2)]
        finally:
            await watcher.close()
        for link, page in zip(links, pages, strict=True):
            # the visitor pressed Join: the page refuses and asks for nothing
            status = await page.evaluate(STATUS)
            seen = await page.evaluate(SEEN)
            assert status.startswith("refused"), (link, status, seen)
            assert seen == {"sockets": [], "cameras": 0}, (link, seen)
        assert room in status, status
        assert attacker.connections == [], attacker.connections
        assert "participant_joined" not in arrived, arrived

        # the honest links (the room their tokens name) join on Join, to their own gateway
        # only. One session ends with its token, the other is replaced by a newer join of its
        # identity: both pages stay out instead of resuming (with a token the gateway refuses,
        # or into a fresh join that would evict the newer session in turn)
        expiring, ends = expiring_token(fleet, room, "guest")
        expires = await open_watched(browser, f"{page_url}?room={room}#token={expiring}")
        replaced = await open_watched(browser, f"{page_url}?room={room}#token={token}")
        for page in (expires, replaced):
            assert await page.evaluate("document.forms.join.elements.room.value") == room
            await page.evaluate(JOIN_CLICK)
        for page in (expires, replaced):
            joined = await page.wait_for("window.rtcfleetDemo.joined", 20, "the honest join")
            assert joined["room"] == room
        assert time.time() < ends, "the page joined before its token lapsed"
        newer = await Attacker.connect(signal_url(fleet))
        try:
            await newer.join(token)
            await expires.wait_for(
                f"{STATUS} === 'left'", ends - time.time() + 10, "the session ending with its token"
            )
            # longer than the pages' silence timeout (2.5 s): no resume follows
            await asyncio.sleep(SETTLE_S + 1.5)
            try:
                newer_got = [m["type"] for m in await newer.drain_messages(quiet=0.2)]
            except ConnectionError as closed:
                newer_got = [str(closed)]
        finally:
            await newer.close()
        # the replaced page did not come back and evict the newer session in turn
        assert not any("replaced" in got or "4001" in got for got in newer_got), newer_got
        camera = "document.getElementById('local-video').srcObject"
        for page, why in ((expires, "token expired"), (replaced, "joined the room elsewhere")):
            shown = await page.evaluate("document.getElementById('status').textContent")
            assert why in shown, shown
            seen = await page.evaluate(SEEN)
            assert seen == {"sockets": [f"ws://{own_host}/v1/signal"], "cameras": 1}, (why, seen)
            assert await page.evaluate(f"{camera} === null || !{camera}.active"), why

    # the gateway's access log holds the query-string link, without its token
    deadline = time.monotonic() + 10
    while "signal=" not in (text := logs(fleet)):
        assert time.monotonic() < deadline, "the gateway logged the crafted link"
        await asyncio.sleep(0.1)
    assert token not in text
    async with aiohttp.ClientSession() as http, http.get(page_url) as response:
        # nor does the token leave in a Referer header, to the gateway or anyone
        assert response.headers.get("Referrer-Policy") == "no-referrer"
    await assert_unharmed(fleet, honest, mark)
