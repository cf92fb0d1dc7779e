"""The media node's liveness endpoint, on the machine only (``127.0.0.1`` by default).

It answers from the supervisor's event loop and reads nothing else: a node group's health check
or automatic repair (the scale set's health extension, the AWS liveness watcher) replaces a node
whose supervisor is gone or stuck, never one whose gateway, Redis or settings replica is away.
It starts before the node registers, so a node waiting for its region is alive, not broken.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from infra.spec import LIVENESS_PATH


class LiveNode(Protocol):
    node_id: str

    @property
    def draining(self) -> bool: ...


NODE = web.AppKey("node", LiveNode)


async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.json_response({"alive": True, "node_id": node.node_id, "draining": node.draining})


async def serve(node: LiveNode, host: str, port: int) -> web.AppRunner:
    """Start the endpoint; the caller cleans the returned runner up."""
    app = web.Application()
    app[NODE] = node
    app.router.add_get(LIVENESS_PATH, healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
