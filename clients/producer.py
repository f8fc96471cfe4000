"""The producer link of ``anchor send`` and ``anchor bot`` to ``WS /sessions/{id}/motion``.

The protocol client itself (answers, credits, acks, ``start`` retries, audio) is
``clients.producer_client.ProducerClient``; its docstring states the server semantics a
sender builds on (an ``ack`` means accepted, so a reconnect resumes at the first
unacknowledged seq). A link adds the policy of a production sender: any server error ends
its work, since this client never sends what the server should refuse.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from clients.producer_client import ConnectionLost, ProducerClient, ProducerError

__all__ = ["ConnectionLost", "ProducerLink", "ServerRefused", "with_token"]

# What a refusal is called on the clients' side (a handshake refused, a start refused, or an
# error answer): nothing to retry.
ServerRefused = ProducerError


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``token=...`` in its query (replacing any token already there)."""
    if not token:
        return url
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


class ProducerLink(ProducerClient):
    """One producer connection; ``async with ProducerLink(url, on_ack=...) as link``.

    Every wait (``start``, ``wait_credit``, ``clear``, ``end``) raises ServerRefused once the
    server answered with an error, and ConnectionLost when the connection ends first.
    """

    def _fatal(self) -> dict[str, Any] | None:
        return self.errors[0] if self.errors else None
