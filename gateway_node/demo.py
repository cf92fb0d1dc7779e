"""The demo page (``/demo``): a browser joins a room with a token, publishes its camera and
microphone, and shows every other participant with live ``getStats`` figures.

It is the platform's own browser client: the local fleet prints its URL, and the Chromium test
drives it, so the page and ``docs/signaling.md`` cannot drift apart unnoticed. The files are
package data (``gateway_node/static``) so a wheel-installed gateway serves them too.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

STATIC = resources.files("gateway_node") / "static"
_FILES = {"demo.html": "text/html", "demo.js": "text/javascript"}
# the page runs only its own script; media and signaling go to this origin or the media node
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; media-src blob: mediastream:; img-src 'self' data:"
)


def _serve(name: str) -> web.Response:
    body = (STATIC / name).read_bytes()
    return web.Response(
        body=body,
        content_type=_FILES[name],
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": _CSP,
            # a link may still carry a token in its query string: no request repeats it
            "Referrer-Policy": "no-referrer",
        },
    )


async def page(request: web.Request) -> web.Response:
    """The page; it joins only on its Join button, with a token from its form or ``#token=``."""
    return _serve("demo.html")


async def script(request: web.Request) -> web.Response:
    return _serve("demo.js")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/demo", page)
    app.router.add_get("/demo/demo.js", script)
