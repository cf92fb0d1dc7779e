"""Access log lines without secrets: the demo page and old clients put tokens in URLs."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# query keys whose values are credentials; matched case-insensitively
SECRET_QUERY_KEYS = frozenset({"token", "access_token", "admin_token", "key"})
REDACTED = "REDACTED"


def redacted_path(request: BaseRequest) -> str:
    """The path and query string with every credential value replaced."""
    url = request.rel_url
    if not url.query:
        return url.path
    query = [
        (key, REDACTED if key.lower() in SECRET_QUERY_KEYS else value)
        for key, value in url.query.items()
    ]
    return str(url.with_query(query))


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request, like aiohttp's default format but with credentials redacted."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d "%s" %.6f',
            request.remote,
            request.method,
            redacted_path(request),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            request.headers.get("User-Agent", "-"),
            time,
        )
