"""Viewers the server gives up on are told why: a JSON error naming the reason, then a close
(1011) with the same reason. Real server, real producer, real aiortc viewers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aioice.ice
import pytest
from serverkit import SECRET, run_with_server, tiny_config

from clients.producer_client import MotionProducer
from clients.viewer import abnormal_end
from clients.viewer_client import ViewerProbe
from model.motion.demo_loop import demo_frames
from server.tasks import cancel_and_wait
from server.tokens import mint_token
from server.viewer import DROP_CODE, MEDIA_LOST, STALLED

VIEWERS = 6
# Of them, these stop reading their media socket once they have video.
OVERLOADED = 3
# RFC 7675 checks consent every 5 s and aioice gives a connection up after 6 unanswered
# checks (30 s); the test checks every 0.3 s, so the same 6 failures take about 2 s.
CONSENT_INTERVAL_S = 0.3


def ws_url(server: Any, kind: str) -> str:
    token = mint_token(SECRET, "s1", "producer" if kind == "motion" else "viewer", 300.0)
    return f"ws://127.0.0.1:{server.port}/sessions/s1/{kind}?token={token}"


def stop_reading_media(probe: ViewerProbe) -> None:
    """What the overloaded viewers of a 32-viewer soak did: their media socket is no longer
    read, so ICE consent checks (and the answers to their own) go unanswered."""
    assert probe.peer is not None
    for transceiver in probe.peer.getTransceivers():
        ice = transceiver.receiver.transport.transport
        for protocol in ice._connection._protocols:
            socket: Any = protocol.transport  # a selector datagram transport: it can pause
            socket.pause_reading()


async def closed(probe: ViewerProbe, limit_s: float) -> None:
    assert probe._socket is not None
    await asyncio.wait_for(probe._socket.wait_closed(), limit_s)


def last_seq(probe: ViewerProbe) -> int:
    return max((frame.seq for frame in probe.frames if frame.seq is not None), default=-1)


@pytest.mark.slow
def test_viewers_joining_at_once_get_video_or_are_told_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", CONSENT_INTERVAL_S)
    config = tiny_config(tmp_path, recordings_dir=None)
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        probes = [ViewerProbe(ws_url(server, "view")) for _ in range(VIEWERS)]
        await asyncio.gather(*(probe.connect() for probe in probes))  # all at once
        async with MotionProducer(ws_url(server, "motion")) as producer:
            await producer.start()
            sending = asyncio.create_task(producer.send_frames(demo_frames(0, 3000), fps=30.0))
            try:
                for probe in probes:
                    await probe.wait_seq(0, 120.0)
                for probe in probes[:OVERLOADED]:
                    stop_reading_media(probe)
                await asyncio.gather(*(closed(probe, 60.0) for probe in probes[:OVERLOADED]))
                # The others go on receiving the live stream.
                target = max(last_seq(probe) for probe in probes) + 15
                for probe in probes[OVERLOADED:]:
                    await probe.wait_seq(target, 120.0)
            finally:
                await cancel_and_wait([sending])
        outcome["ends"] = [abnormal_end(probe) for probe in probes]
        outcome["closes"] = [
            (probe.close_code, probe._socket.close_reason if probe._socket else None)
            for probe in probes
        ]
        outcome["last_messages"] = [
            probe.messages[-1] if probe.messages else {} for probe in probes
        ]
        for probe in probes:
            await probe.close()

    run_with_server(config, body)
    for index in range(OVERLOADED):
        notice = outcome["last_messages"][index]
        assert (notice.get("type"), notice.get("fatal")) == ("error", True), notice
        assert notice["reason"] == MEDIA_LOST and "ICE consent" in notice["message"]
        code, reason = outcome["closes"][index]
        assert code == DROP_CODE and reason.startswith(MEDIA_LOST)
        assert f"({MEDIA_LOST})" in outcome["ends"][index]
    # The viewers that kept reading were neither dropped nor stuck (they reached the target).
    assert outcome["ends"][OVERLOADED:] == [None] * (VIEWERS - OVERLOADED)


def test_a_stalled_viewer_is_told_why_before_the_keepalive_closes_it(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, keepalive_interval_s=0.5, keepalive_timeout_s=1.0)
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        probe = ViewerProbe(ws_url(server, "view"))
        await probe.connect()
        assert probe._socket is not None
        await asyncio.sleep(1.5)  # answering pings: still connected
        outcome["before"] = probe.close_code
        probe._socket.transport.pause_reading()  # stalled: reads nothing, answers no ping
        await asyncio.sleep(3.0)
        probe._socket.transport.resume_reading()
        await closed(probe, 30.0)
        outcome["close"] = (probe.close_code, probe._socket.close_reason)
        outcome["last_message"] = probe.messages[-1]
        outcome["end"] = abnormal_end(probe)
        await probe.close()

    run_with_server(config, body)
    assert outcome["before"] is None
    notice = outcome["last_message"]
    assert (notice["type"], notice["fatal"], notice["reason"]) == ("error", True, STALLED)
    assert "keepalive ping within 1 s" in notice["message"]
    code, reason = outcome["close"]
    assert code == DROP_CODE and reason.startswith(STALLED)
    assert outcome["end"] is not None and f"({STALLED})" in outcome["end"]
