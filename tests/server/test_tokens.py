from __future__ import annotations

import pytest

from server.tokens import TokenError, mint_token, verify_token


def test_valid_token_grants_its_session_and_role() -> None:
    token = mint_token("secret", "s1", "producer", ttl_s=60, now=1000.0)
    claims = verify_token("secret", token, "s1", "producer", now=1030.0)
    assert (claims.session_id, claims.role, claims.expires_at) == ("s1", "producer", 1060.0)


@pytest.mark.parametrize(
    ("secret", "session", "role", "now", "message"),
    [
        ("other", "s1", "producer", 1001.0, "signature"),
        ("secret", "s2", "producer", 1001.0, "another session"),
        ("secret", "s1", "viewer", 1001.0, "role"),
        ("secret", "s1", "producer", 1060.0, "expired"),
    ],
)
def test_token_rejected_outside_its_scope(
    secret: str, session: str, role: str, now: float, message: str
) -> None:
    token = mint_token("secret", "s1", "producer", ttl_s=60, now=1000.0)
    with pytest.raises(TokenError, match=message):
        verify_token(secret, token, session, role, now=now)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", [None, "", "abc", "abc.", ".abc"])
def test_missing_or_malformed_token_rejected(token: str | None) -> None:
    with pytest.raises(TokenError):
        verify_token("secret", token, "s1", "viewer")


def test_tampered_payload_rejected() -> None:
    token = mint_token("secret", "s1", "viewer", ttl_s=60)
    payload, signature = token.split(".")
    forged = mint_token("secret", "s2", "viewer", ttl_s=60).split(".")[0]
    with pytest.raises(TokenError, match="signature"):
        verify_token("secret", f"{forged}.{signature}", "s2", "viewer")
    assert payload != forged
