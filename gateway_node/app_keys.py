"""The typed keys of the gateway's aiohttp applications, declared once.

Handler modules (``admin``, ``internal``, ``signal``) import them from here at top level;
``app`` builds the applications and sets them.
"""

from __future__ import annotations

from aiohttp import web

from gateway_node.gateway import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)

# Whether a health answer carries its reasons: the admin port does; the public port, which the
# internet reaches through the client load balancer, answers with the verdict only, so no
# backend host name or error text leaves the private network.
DETAILED: web.AppKey[bool] = web.AppKey("detailed", bool)
