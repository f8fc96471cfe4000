"""Per-session access tokens: HMAC-SHA256 signed, expiring, scoped to one session and role.

Format: ``base64url(payload_json) "." base64url(hmac_sha256(secret, payload_b64))`` with the
payload ``{"s": session_id, "r": role, "e": expiry_unix_seconds}``. Tokens travel in the
``token`` query parameter, because browsers cannot set headers on a WebSocket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Literal

from model.errors import AnchorError

Role = Literal["producer", "viewer"]
ROLES: tuple[Role, ...] = ("producer", "viewer")


class TokenError(AnchorError):
    """A token is missing, malformed, forged, expired or scoped to another session/role."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token grants."""

    session_id: str
    role: Role
    expires_at: float


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).digest()
    return _b64encode(digest)


def mint_token(
    secret: str, session_id: str, role: Role, ttl_s: float, now: float | None = None
) -> str:
    """A token granting ``role`` on ``session_id`` for ``ttl_s`` seconds from ``now``."""
    if not secret:
        raise TokenError("server.token_secret is empty: cannot mint tokens")
    if role not in ROLES:
        raise TokenError(f"role must be one of {ROLES}, got {role!r}")
    issued = time.time() if now is None else now
    body = json.dumps(
        {"s": session_id, "r": role, "e": round(issued + ttl_s, 3)}, separators=(",", ":")
    )
    payload = _b64encode(body.encode("utf-8"))
    return f"{payload}.{_signature(secret, payload)}"


def verify_token(
    secret: str, token: str | None, session_id: str, role: Role, now: float | None = None
) -> Claims:
    """Check ``token`` grants ``role`` on ``session_id`` now; raise TokenError otherwise."""
    if not token:
        raise TokenError("missing token")
    if not token.isascii():
        # A token is base64url text; anything else is malformed whatever its encoding.
        raise TokenError("malformed token: not ASCII")
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature:
        raise TokenError("malformed token")
    expected = _signature(secret, payload)
    if not hmac.compare_digest(expected, signature):
        raise TokenError("bad token signature")
    try:
        claims = json.loads(_b64decode(payload))
        token_session, token_role, expiry = str(claims["s"]), claims["r"], float(claims["e"])
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise TokenError("malformed token payload") from err
    if token_session != session_id:
        raise TokenError("token is for another session")
    if token_role != role:
        raise TokenError(f"token role is {token_role!r}, this endpoint needs {role!r}")
    if (time.time() if now is None else now) >= expiry:
        raise TokenError("token expired")
    return Claims(session_id=token_session, role=role, expires_at=expiry)
