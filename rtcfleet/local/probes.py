"""The local fleet's HTTP probes of its gateways: readiness, and the media nodes they see.

Synchronous (``urllib``): the fleet waits on them from plain code, outside any event loop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 2


def healthy_nodes(stats_url: str) -> int:
    """The healthy media nodes a gateway's ``/stats`` counts; 0 when it does not answer."""
    try:
        with urllib.request.urlopen(stats_url, timeout=PROBE_TIMEOUT_S) as response:
            return int(json.loads(response.read())["media_nodes"]["healthy"])
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return 0


def probe(url: str) -> tuple[bool, str]:
    """Whether ``url`` answers 200, and else why not (a health answer's reasons)."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return response.status == 200, ""
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
            return False, "; ".join(body.get("reasons", [])) or str(exc)
        except ValueError:
            return False, str(exc)
    except (urllib.error.URLError, OSError) as exc:
        return False, str(exc)
