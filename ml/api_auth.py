"""Bearer-token authentication of the prediction API (TWEETOPS_API_TOKEN).

With a token configured, every request except the probes and the documentation must send
`Authorization: Bearer <token>`; anything else gets 401. Without one (the local default) the API
is open, which is why `tweetops stack up` binds it to 127.0.0.1 and docker-compose requires a token.
"""
from __future__ import annotations

import hmac
import json
import logging

log = logging.getLogger(__name__)

# Open to anyone: the liveness probe, and the API's own description (it holds no data).
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


def token_matches(header: bytes | None, token: str) -> bool:
    """True if an Authorization header carries this bearer token (compared in constant time)."""
    scheme, _, sent = (header or b"").decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode())


class BearerTokenAuth:
    """ASGI middleware: 401 for a missing or wrong bearer token on every path outside OPEN_PATHS."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization")
        if token_matches(header, self.token):
            return await self.app(scope, receive, send)
        log.warning("refused %s %s from %s: %s bearer token", scope.get("method"), scope["path"],
                    (scope.get("client") or ("?",))[0], "wrong" if header else "no")
        body = json.dumps({"detail": "send the API token as `Authorization: Bearer <TWEETOPS_API_TOKEN>`"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def protect(app, token: str | None) -> None:
    """Require the bearer token on `app` when one is configured."""
    if token:
        app.add_middleware(BearerTokenAuth, token=token)
