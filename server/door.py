"""The first message of a connection: a session exists only after a successful upgrade AND
a valid first message, so a client that upgrades and then says nothing, or garbage, never
creates a session or holds one of ``server.max_sessions``.

Valid first messages: a producer's is a JSON text message of a known type (normally
``start``); a viewer's is its SDP ``offer``. Anything else is answered with an ``error``
naming the field, and the connection is closed with 1008; silence for ``FIRST_MESSAGE_S``
is closed with 1008 too.
"""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server.metrics import ServerMetrics
from server.protocol import ProtocolError, loads_bounded, parse_text
from server.tokens import Role

FIRST_MESSAGE_S = 10.0


def check_first(role: Role, message: str | bytes) -> None:
    """ProtocolError (naming the field) unless ``message`` may open a ``role`` connection."""
    if isinstance(message, bytes):
        raise ProtocolError("the first message must be a JSON text message", field="message")
    if role == "producer":
        parse_text(message)
        return
    parsed = loads_bounded(message)
    if not isinstance(parsed, dict) or parsed.get("type") != "offer":
        raise ProtocolError("a viewer's first message must be its offer", field="type")


async def first_message(
    connection: ServerConnection, role: Role, metrics: ServerMetrics
) -> str | bytes | None:
    """The connection's valid first message, or None once the connection was refused
    (answered and closed) or closed by the client."""
    try:
        message = await asyncio.wait_for(connection.recv(), FIRST_MESSAGE_S)
    except TimeoutError:
        metrics.rejected_messages.labels("first").inc()
        await connection.close(1008, f"no first message within {FIRST_MESSAGE_S:g} s")
        return None
    except ConnectionClosed:
        return None
    try:
        check_first(role, message)
    except ProtocolError as err:
        metrics.rejected_messages.labels("first").inc()
        try:
            await connection.send(json.dumps(err.to_message()))
        except ConnectionClosed:
            return None
        await connection.close(1008, "invalid first message")
        return None
    return message
