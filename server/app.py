"""The Anchor Live server: one asyncio process, one port, served by ``websockets``.

Routes (HTTP ones answered in ``process_request``, before any WebSocket work):
- ``WS /sessions/{id}/motion?token=...``  producer (motion, audio, control; acks/errors)
- ``WS /sessions/{id}/view?token=...``    viewer signaling (SDP offer/answer, ICE candidates)
- ``GET /``, ``GET /sessions/{id}``       the viewer page; ``GET /viewer.js`` its script
- ``GET /healthz``, ``GET /metrics``      liveness and Prometheus text

Tokens, Origin and the session limit are checked in ``process_request``: a rejected
connection never reaches a handler.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from model.errors import AnchorError
from server.door import first_message
from server.metrics import ServerMetrics
from server.producer import run_producer
from server.session import Session
from server.shutdown import ExitOnSignals
from server.tokens import Claims, Role, TokenError, verify_token
from server.viewer import run_viewer

if TYPE_CHECKING:
    from server.config import ServerSettings
    from streaming.pipeline import PipelineFactory

log = logging.getLogger("anchor.server")

SESSION_ID = r"[A-Za-z0-9_-]{1,64}"
_WS_ROUTE = re.compile(rf"^/sessions/(?P<session>{SESSION_ID})/(?P<kind>motion|view)$")
_PAGE_ROUTE = re.compile(rf"^/sessions/(?P<session>{SESSION_ID})$")
# Hard limit for websockets itself (connection closed with 1009): twice the configured
# message limit, so a message between the two gets a JSON error and the session goes on.
HARD_SIZE_FACTOR = 2
REMEMBERED_SESSIONS = 4096
# Shutdown budget (SHUTDOWN_S in all, the product's bound on SIGTERM to exit): flushing runs,
# sending the `ended` messages, closing connections (close handshakes included), cancelling
# what is left. The serving loop exits hard at SHUTDOWN_S whatever is still running.
SHUTDOWN_S = 10.0
SHUTDOWN_BEFORE_S = 1.0
SHUTDOWN_FLUSH_S = 3.0
# Kept back from the flush for finishing runs, sending, closing and cancelling.
SHUTDOWN_RESERVE_S = 5.5
SHUTDOWN_SEND_S = 0.5
SHUTDOWN_CLOSE_S = 1.5
SHUTDOWN_CANCEL_S = 1.0
# Close handshake wait per connection (websockets' default is 10 s).
CLOSE_TIMEOUT_S = 1.0


def _web_file(name: str) -> bytes:
    return resources.files("clients").joinpath("web", name).read_bytes()


class AnchorServer:
    """Owns the listening socket, the sessions and the pipeline factory.

    ``start`` binds (port 0 picks a free one, see ``port``); ``stop`` shuts down in a fixed
    order: stop accepting, end every session (flush pipelines, finalize recordings, notify),
    close viewer peers and connections, stop the model worker.
    """

    def __init__(
        self, config: ServerSettings, load_pipelines: Callable[[], PipelineFactory]
    ) -> None:
        """config: the server's sections; load_pipelines: builds the pipeline factory (the
        model worker) when the server starts, off the event loop; the server closes it."""
        if not config.server.token_secret:
            raise AnchorError("server.token_secret is empty: set it to serve (any long secret)")
        if (config.server.tls_cert is None) != (config.server.tls_key is None):
            raise AnchorError("server.tls_cert and server.tls_key must be set together")
        self.config = config
        self.metrics = ServerMetrics()
        self._load_pipelines = load_pipelines
        self._factory: PipelineFactory | None = None
        self.sessions: dict[str, Session] = {}
        # Last accepted seq of sessions that were removed, so a producer that reconnects
        # after its session went away still learns where to resume; least recently
        # removed forgotten first beyond REMEMBERED_SESSIONS.
        self._last_seqs: OrderedDict[str, int] = OrderedDict()
        self._server: Server | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self.port = config.server.port

    @property
    def factory(self) -> PipelineFactory:
        if self._factory is None:
            self._factory = self._load_pipelines()
        return self._factory

    @property
    def scheme(self) -> str:
        return "https" if self.config.server.tls_cert is not None else "http"

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.config.server.host}:{self.port}{path}"

    def _ssl_context(self) -> ssl.SSLContext | None:
        server = self.config.server
        if server.tls_cert is None or server.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server.tls_cert, server.tls_key)
        return context

    async def start(self) -> None:
        """Load the pipeline factory (model worker) and start listening."""
        await asyncio.to_thread(lambda: self.factory)
        for session_id in self.config.server.sessions:
            self._get_session(session_id, persistent=True)
        settings = self.config.server
        self._server = await serve(
            self._handle,
            settings.host,
            settings.port,
            process_request=self._process_request,
            compression=None,  # deflate costs CPU on binary frames and gains nothing
            max_size=settings.max_message_bytes * HARD_SIZE_FACTOR,
            ssl=self._ssl_context(),
            close_timeout=CLOSE_TIMEOUT_S,
            ping_interval=settings.keepalive_interval_s,
            ping_timeout=settings.keepalive_timeout_s,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("serving on %s", self.url())

    async def serve_until_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self, deadline: float | None = None) -> None:
        """Graceful shutdown in a fixed order, within ``SHUTDOWN_S`` whatever the clients do;
        safe to call more than once. deadline: loop time by which to be done (the flush gets
        what the later steps do not need); None: ``SHUTDOWN_FLUSH_S`` of flushing.

        Stop accepting; end every session's run (flush up to ``SHUTDOWN_FLUSH_S``, finalize
        its recording, send ``ended`` with reason shutdown); close every connection with
        1001; cancel handlers still running after ``SHUTDOWN_CLOSE_S``; stop the worker.
        """
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("shutting down: stop accepting")
        if self._server is not None:
            self._server.server.close()  # the listening socket only; connections stay
        log.info("shutting down: ending %d sessions", len(self.sessions))
        sessions = list(self.sessions.values())
        # What the steps after the flush may take is kept back from the flush.
        flush_s = SHUTDOWN_FLUSH_S
        if deadline is not None:
            flush_s = max(1.0, deadline - asyncio.get_running_loop().time() - SHUTDOWN_RESERVE_S)
        await asyncio.gather(*(session.close(flush_s) for session in sessions))
        outboxes = [box for s in sessions for box in (s.producer, *s.viewers) if box]
        # The `ended` messages reach the clients before their connections close.
        await asyncio.gather(*(box.drained(SHUTDOWN_SEND_S) for box in outboxes))
        log.info("shutting down: closing connections and peers")
        if self._server is not None:
            await self._close_connections(self._server)
        if self._factory is not None:
            await asyncio.to_thread(self._factory.close)
        self._stopped.set()
        log.info("shutdown complete")

    async def _close_connections(self, server: Server) -> None:
        server.close(close_connections=True)  # 1001 going away
        try:
            await asyncio.wait_for(asyncio.shield(server.wait_closed()), SHUTDOWN_CLOSE_S)
        except TimeoutError:
            handlers = list(server.handler_tasks)
            log.warning("shutting down: cancelling %d connection handlers", len(handlers))
            for task in handlers:
                task.cancel()
            if handlers:
                await asyncio.wait(handlers, timeout=SHUTDOWN_CANCEL_S)
            for connection in server.connections:
                connection.transport.abort()

    # sessions ---------------------------------------------------------------------------

    def _get_session(self, session_id: str, persistent: bool = False) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            if len(self.sessions) >= self.config.server.max_sessions:
                raise AnchorError(
                    f"server.max_sessions ({self.config.server.max_sessions}) reached"
                )
            session = Session(
                session_id,
                self.config,
                self.factory,
                self.metrics,
                persistent,
                last_seq=self._last_seqs.pop(session_id, None),
            )
            self.sessions[session_id] = session
            self.metrics.sessions.set(len(self.sessions))
        return session

    async def _maybe_remove(self, session: Session) -> None:
        if session.persistent or session.run is not None or session.viewers or session.producer:
            return
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            if session.last_accepted_seq is not None:
                self._last_seqs[session.id] = session.last_accepted_seq
                while len(self._last_seqs) > REMEMBERED_SESSIONS:
                    self._last_seqs.popitem(last=False)
            self.metrics.sessions.set(len(self.sessions))
            await session.close()

    # HTTP and handshake -----------------------------------------------------------------

    def _respond(
        self, status: http.HTTPStatus, body: bytes, content_type: str = "text/plain"
    ) -> Response:
        headers = Headers(
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(status.value, status.phrase, headers, body)

    def _reject(self, status: http.HTTPStatus, reason: str, metric: str) -> Response:
        self.metrics.rejected_messages.labels(metric).inc()
        log.info("rejected connection: %s", reason)
        return self._respond(status, (reason + "\n").encode())

    def _origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser: tokens alone authorize
        allowed = set(self.config.server.allowed_origins)
        host = request.headers.get("Host")
        if host:
            allowed.add(f"{self.scheme}://{host}")
        return origin in allowed

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path
        if self._stopping:
            return self._respond(http.HTTPStatus.SERVICE_UNAVAILABLE, b"shutting down\n")
        route = _WS_ROUTE.match(path)
        if route is None:
            return self._http_get(path)
        session_id, kind = route["session"], route["kind"]
        role: Role = "producer" if kind == "motion" else "viewer"
        if not self._origin_allowed(request):
            return self._reject(http.HTTPStatus.FORBIDDEN, "origin not allowed", "origin")
        token = parse_qs(url.query).get("token", [None])[0]
        try:
            verify_token(self.config.server.token_secret, token, session_id, role)
        except TokenError as err:
            return self._reject(http.HTTPStatus.UNAUTHORIZED, str(err), "token")
        # The session is created by the handler, after a successful upgrade and a valid
        # first message (server.door): a plain GET, a silent or a garbling client must
        # leave nothing behind.
        session = self.sessions.get(session_id)
        if session is None and len(self.sessions) >= self.config.server.max_sessions:
            message = f"server.max_sessions ({self.config.server.max_sessions}) reached"
            return self._reject(http.HTTPStatus.SERVICE_UNAVAILABLE, message, "capacity")
        if role == "producer" and session is not None and session.producer is not None:
            return self._reject(
                http.HTTPStatus.CONFLICT, "session already has a producer", "producer_busy"
            )
        return None

    def _http_get(self, path: str) -> Response:
        if path == "/healthz":
            body = json.dumps({"status": "ok", "sessions": len(self.sessions)}).encode()
            return self._respond(http.HTTPStatus.OK, body, "application/json")
        if path == "/metrics":
            for session in self.sessions.values():
                session.update_queue_metrics()
            return self._respond(
                http.HTTPStatus.OK, self.metrics.render(), "text/plain; version=0.0.4"
            )
        if path == "/" or _PAGE_ROUTE.match(path):
            return self._respond(http.HTTPStatus.OK, _web_file("index.html"), "text/html")
        if path == "/viewer.js":
            return self._respond(
                http.HTTPStatus.OK, _web_file("viewer.js"), "application/javascript"
            )
        return self._respond(http.HTTPStatus.NOT_FOUND, b"not found\n")

    def _claims(self, connection: ServerConnection, session_id: str, role: Role) -> Claims:
        path = connection.request.path if connection.request else ""
        token = parse_qs(urlsplit(path).query).get("token", [None])[0]
        return verify_token(self.config.server.token_secret, token, session_id, role)

    async def _handle(self, connection: ServerConnection) -> None:
        route = _WS_ROUTE.match(
            urlsplit(connection.request.path if connection.request else "").path
        )
        if route is None:  # process_request answered every other path
            return
        if self._stopping:
            await connection.close(1001, "shutting down")
            return
        role: Role = "producer" if route["kind"] == "motion" else "viewer"
        try:
            claims = self._claims(connection, route["session"], role)
        except TokenError as err:  # expired since the handshake
            await connection.close(1008, str(err))
            return
        # The session comes into being only with a valid first message (server.door); the
        # token's expiry is checked again by ``start``.
        first = await first_message(connection, role, self.metrics)
        if first is None:
            return
        try:
            session = self._get_session(route["session"])
        except AnchorError as err:  # capacity taken meanwhile
            await connection.close(1013, str(err))
            return
        if session.closed:
            await connection.close(1011, "session is gone")
            return
        try:
            if route["kind"] == "motion":
                await run_producer(
                    connection, session, self.config, self.metrics, claims.expires_at, first
                )
            else:
                assert isinstance(first, str)  # door.check_first: a viewer's offer is text
                await run_viewer(connection, session, self.config, self.metrics, first)
        except ConnectionClosed:
            pass
        finally:
            await self._maybe_remove(session)


async def serve_until_signal(
    config: ServerSettings,
    load_pipelines: Callable[[], PipelineFactory],
    announce: Callable[[AnchorServer], None] | None = None,
    before_stop: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run a server until SIGINT/SIGTERM, then shut down gracefully; returns the exit code.

    The shutdown is bounded: the process exits within ``SHUTDOWN_S`` of the signal whatever
    the clients do, and at once on a second signal (``server.shutdown``). announce: called
    once the server listens; before_stop: awaited first on shutdown (an in-process producer
    stops before the sessions end).
    """
    server = AnchorServer(config, load_pipelines)
    stop_requested = asyncio.Event()
    # Handlers first: a signal while the model loads still ends in a graceful exit 0.
    signals = ExitOnSignals(stop_requested.set, SHUTDOWN_S)
    try:
        await server.start()
        if stop_requested.is_set():
            return 0
        if announce is not None:
            announce(server)
        await stop_requested.wait()
    finally:
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_S
        try:
            if before_stop is not None:
                # asyncio.wait, not wait_for: a task that swallows its cancellation must
                # not hold the shutdown (the exit deadline ends it with the process).
                stopping = asyncio.ensure_future(before_stop())
                done, _ = await asyncio.wait({stopping}, timeout=SHUTDOWN_BEFORE_S)
                if not done:
                    log.error("shutting down: the in-process producer did not stop in time")
        finally:
            await server.stop(deadline)
            signals.remove()
    return 0
