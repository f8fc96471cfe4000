"""``AnchorVideoService`` in real pipecat pipelines (PipelineWorker + WorkerRunner, pipecat's
successors of PipelineTask/PipelineRunner) with espeak-ng speech at 22.05 kHz and the tiny
real model at 64 px, 5 frames/s (a rate two shared CPU cores sustain).

Rates and offsets are read from the frames' pts and arrival order, with the tolerances
the product promises (±10 % rate, ±45 ms A/V); the interruption is checked by ordering.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from a2m_helpers import synthesize
from pipecat.frames.frames import EndFrame, InterruptionFrame, TTSAudioRawFrame
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor

from bench.pipecat import AvatarProbe, av_offsets_ms, start_pipeline, wait_until
from clients.pipecat import AnchorVideoService
from clients.pipecat_sessions import RemoteAvatarSession
from model.audio2motion import BuiltinAudioToMotion
from model.config import FaceConfig, ModelConfig, RenderConfig, SamplerConfig
from model.errors import AnchorError
from streaming.config import PipelineConfig
from streaming.pipeline import PipelineFactory

FPS = 5.0
# Peak (PCM16) above which decoded audio is speech, not silence plus codec noise.
AUDIBLE_PEAK = 1000
CONFIG = PipelineConfig(
    model=ModelConfig(preset="tiny", device="cpu"),
    sampler=SamplerConfig(steps=2, window_size=4, overlap=1, mode="low"),
    face=FaceConfig(enabled=False),
    render=RenderConfig(width=64, height=64, fps=FPS),
)


@pytest.fixture(scope="module")
def factory() -> Iterator[PipelineFactory]:
    from streaming.factory import load_pipeline_factory

    shared = load_pipeline_factory(CONFIG)
    yield shared
    shared.close()


def espeak_tts(tmp_path: Path, text: str) -> list[TTSAudioRawFrame]:
    """espeak-ng's own output (22.05 kHz PCM16) as 20 ms TTS frames."""
    synthesize(tmp_path / "speech.wav", text)
    with wave.open(str(tmp_path / "speech.espeak.wav"), "rb") as raw:
        rate = raw.getframerate()
        pcm = raw.readframes(raw.getnframes())
    assert rate != 16000  # the service resamples whatever rate the TTS speaks
    step = 2 * rate // 50
    return [TTSAudioRawFrame(pcm[i : i + step], rate, 1) for i in range(0, len(pcm), step)]


async def run_pipeline_async(
    processors: list[FrameProcessor], script: Any, limit_s: float = 120.0
) -> None:
    """Run ``Pipeline(processors)`` while ``script(worker)`` drives it; the script ends it."""
    worker, running = await start_pipeline(processors)
    try:
        await asyncio.wait_for(script(worker), limit_s)
        await asyncio.wait_for(running, limit_s)
    finally:
        if not running.done():
            await worker.cancel()
            await running


def run_pipeline(processors: list[FrameProcessor], script: Any, limit_s: float = 120.0) -> None:
    asyncio.run(run_pipeline_async(processors, script, limit_s))


def test_speech_drives_lip_synced_video_at_the_session_rate(
    factory: PipelineFactory, tmp_path: Path
) -> None:
    tts = espeak_tts(tmp_path, "Hello, I am the anchor.")
    service = AnchorVideoService.local(CONFIG, factory)
    probe = AvatarProbe()
    idle_frames = 6

    async def script(worker: PipelineWorker) -> None:
        await probe.wait(lambda: len(probe.shown) >= idle_frames, 90.0)
        await worker.queue_frames(tts)
        await probe.wait(lambda: bool(probe.heard) and not service.speaking, 60.0)
        await worker.queue_frame(EndFrame())

    run_pipeline([service, probe], script)

    assert probe.errors == []
    shown = probe.shown
    assert [frame.seq for frame in shown] == sorted({frame.seq for frame in shown})
    assert all(frame.size == (64, 64) and len(frame.image) == 64 * 64 * 3 for frame in shown)
    # Each frame at its own slot of the session clock: frames the model could not render in
    # time (live rate control; the shared CPU decides how many) leave whole slots empty.
    slots = [(b.pts - a.pts) / 1e9 * FPS / (b.seq - a.seq) for a, b in itertools.pairwise(shown)]
    assert abs(statistics.median(slots) - 1.0) <= 0.1
    # Idle: breathing, sway, blinks and gaze keep every frame moving.
    first_speech = service.stats.first_speech_seq
    assert first_speech is not None
    idle = [frame.image for frame in shown if frame.seq < first_speech]
    assert len(idle) >= idle_frames - 1
    assert all(a != b for a, b in itertools.pairwise(idle))
    # All the speech came out, at its rate, each chunk at its frame's slot.
    rate = tts[0].sample_rate
    total = sum(frame.num_frames for frame in tts)
    heard = sum(chunk.samples for chunk in probe.heard)
    assert {chunk.sample_rate for chunk in probe.heard} == {rate}
    assert total <= heard <= total + rate / FPS
    offsets = av_offsets_ms(probe, FPS)
    assert len(offsets) == len(probe.heard)
    assert abs(statistics.median(offsets)) <= 45.0
    assert sorted(abs(value) for value in offsets)[int(0.9 * (len(offsets) - 1))] <= 45.0


def test_interruption_drops_queued_speech_and_keeps_the_avatar_alive(
    factory: PipelineFactory, tmp_path: Path
) -> None:
    tts = espeak_tts(tmp_path, "This sentence is long enough to be cut off by the user.")
    service = AnchorVideoService.local(CONFIG, factory)
    probe = AvatarProbe()
    marks: dict[str, int] = {}

    async def script(worker: PipelineWorker) -> None:
        await probe.wait(lambda: len(probe.shown) >= 2, 90.0)
        await worker.queue_frames(tts)
        await probe.wait(lambda: len(probe.heard) >= 3, 60.0)
        await worker.queue_frame(InterruptionFrame())
        await probe.wait(lambda: bool(probe.interruptions), 10.0)
        marks["heard"], marks["shown"] = len(probe.heard), len(probe.shown)
        await probe.wait(lambda: len(probe.shown) >= marks["shown"] + 4, 60.0)
        await worker.queue_frame(EndFrame())

    run_pipeline([service, probe], script)

    assert probe.errors == []
    # No speech after the interruption passed the service: queued audio was dropped
    # with the motion and the frames not yet shown.
    assert len(probe.heard) == marks["heard"]
    assert service.stats.last_speech_after_interruption is None
    assert sum(chunk.samples for chunk in probe.heard) < sum(f.num_frames for f in tts) / 2
    assert not service.speaking
    # The session went on: new (idle) frames, later than anything in flight at the clear.
    cleared_from = max(chunk.seq for chunk in probe.heard)
    after = probe.shown[marks["shown"] :]
    assert len(after) >= 4 and all(frame.seq > cleared_from for frame in after)


def test_session_start_failure_is_an_error_frame_upstream() -> None:
    session = RemoteAvatarSession("ws://127.0.0.1:9/sessions/x/motion", token=None, fps=FPS)
    probe = AvatarProbe()
    service = AnchorVideoService(session)

    async def script(worker: PipelineWorker) -> None:
        await probe.wait(lambda: bool(probe.errors), 30.0)
        await worker.queue_frame(EndFrame())

    run_pipeline([probe, service], script)

    assert len(probe.errors) == 1
    assert "cannot start the avatar session" in probe.errors[0].error


def test_generator_rate_must_match_the_session() -> None:
    session = RemoteAvatarSession("ws://127.0.0.1:9/x", token=None, fps=25.0)
    with pytest.raises(AnchorError, match=r"generator: must .* 25\.0 fps"):
        AnchorVideoService(session, generator=BuiltinAudioToMotion(fps=30.0))


class ReceivingPeer:
    """A real aiortc peer that offers to receive audio and video and counts what arrives:
    video frames (and their sizes) and audible audio frames."""

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        from server.webrtc import enable_loopback_candidates

        enable_loopback_candidates()
        self.received = {"video": 0, "audible": 0}
        self.sizes: set[tuple[int, int]] = set()
        self.peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peer.addTransceiver("audio", direction="recvonly")
        self.peer.addTransceiver("video", direction="recvonly")
        self._readers: list[asyncio.Task[None]] = []
        self.peer.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        self._readers.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.received["video"] += 1
                    self.sizes.add((frame.width, frame.height))
                elif np.abs(frame.to_ndarray()).max() > AUDIBLE_PEAK:
                    self.received["audible"] += 1

    async def close(self) -> None:
        await self.peer.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


def test_avatar_reaches_a_webrtc_peer_through_the_small_webrtc_transport(
    factory: PipelineFactory, tmp_path: Path
) -> None:
    """pipecat's SmallWebRTCTransport (aiortc) sends the avatar to a real aiortc peer in this
    process: the peer decodes the 64x64 video and hears the speech."""
    from aiortc import RTCSessionDescription
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    tts = espeak_tts(tmp_path, "Hello from the anchor.")
    received: dict[str, int] = {}
    sizes: set[tuple[int, int]] = set()

    async def main() -> None:
        receiver = ReceivingPeer()
        peer = receiver.peer
        await peer.setLocalDescription(await peer.createOffer())
        connection = SmallWebRTCConnection()
        await connection.initialize(sdp=peer.localDescription.sdp, type="offer")
        answer = connection.get_answer()
        assert answer is not None
        await peer.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        transport = SmallWebRTCTransport(
            connection,
            TransportParams(
                audio_out_enabled=True,
                video_out_enabled=True,
                video_out_is_live=True,
                video_out_width=64,
                video_out_height=64,
                video_out_framerate=int(FPS),
            ),
        )
        service = AnchorVideoService.local(CONFIG, factory)

        async def script(worker: PipelineWorker) -> None:
            await wait_until(lambda: receiver.received["video"] >= 3, 90.0)
            await worker.queue_frames(tts)
            await wait_until(lambda: receiver.received["audible"] >= 10, 60.0)
            await worker.queue_frame(EndFrame())

        try:
            await run_pipeline_async([service, transport.output()], script)
        finally:
            await receiver.close()
            received.update(receiver.received)
            sizes.update(receiver.sizes)

    asyncio.run(main())
    assert sizes == {(64, 64)}
    assert received["video"] >= 3 and received["audible"] >= 10


@pytest.mark.slow
def test_the_example_bot_speaks_to_a_webrtc_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    """clients/examples/pipecat_avatar.py as shipped (its espeak-ng TTS, its signaling), on
    the tiny model through the ANCHOR_ environment: a peer offers, sees and hears the bot."""
    from aiortc import RTCSessionDescription
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from clients.examples.pipecat_avatar import serve_peer

    tiny = {"MODEL__PRESET": "tiny", "MODEL__DEVICE": "cpu", "SAMPLER__STEPS": "2"}
    tiny |= {"SAMPLER__WINDOW_SIZE": "4", "SAMPLER__OVERLAP": "1", "FACE__ENABLED": "false"}
    tiny |= {"RENDER__WIDTH": "64", "RENDER__HEIGHT": "64", "RENDER__FPS": str(FPS)}
    for key, value in tiny.items():
        monkeypatch.setenv(f"ANCHOR_{key}", value)
    received: dict[str, int] = {}

    async def main() -> None:
        receiver = ReceivingPeer()
        peer = receiver.peer
        async with serve(serve_peer, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/") as socket:
                await peer.setLocalDescription(await peer.createOffer())
                offer = {"type": "offer", "sdp": peer.localDescription.sdp}
                await socket.send(json.dumps(offer))
                answer = json.loads(await socket.recv())
                await peer.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
                counts = receiver.received
                await wait_until(lambda: min(counts["video"] // 3, counts["audible"] // 10), 120.0)
                await receiver.close()  # the bot's pipeline ends with the peer
        received.update(receiver.received)

    asyncio.run(main())
    assert received["video"] >= 3 and received["audible"] >= 10


@pytest.mark.slow
def test_remote_session_speaks_through_a_real_server(tmp_path: Path) -> None:
    """``AnchorVideoService.remote``: motion and speech go to a tiny in-process server over
    the producer protocol; its recording holds the avatar's video and the speech."""
    from clientkit import producer_url, stream_durations
    from serverkit import run_with_server, tiny_config

    tts = espeak_tts(tmp_path, "Hello, I am on the server.")
    spoken_s = sum(frame.num_frames for frame in tts) / tts[0].sample_rate
    config = tiny_config(tmp_path)
    sessions: list[RemoteAvatarSession] = []

    async def body(server: Any) -> None:
        url, token = producer_url(server.port)
        service = AnchorVideoService.remote(url, token, fps=config.render.fps)
        assert isinstance(service.session, RemoteAvatarSession)
        sessions.append(service.session)

        async def script(worker: PipelineWorker) -> None:
            await worker.queue_frames(tts)
            await wait_until(lambda: service.stats.first_speech_seq is not None, 30.0)
            await wait_until(lambda: not service.speaking, 60.0)
            await worker.queue_frame(EndFrame())

        await run_pipeline_async([service, AvatarProbe()], script)

    run_with_server(config, body)
    ended = sessions[0].ended
    # Every tick of the speech went out: accepted, or skipped while the server had no credit.
    assert ended is not None
    assert ended["accepted"] + sessions[0].skipped >= spoken_s * config.render.fps
    assert ended["committed"] > 0
    durations = stream_durations(Path(ended["recording"]))
    assert durations["audio"] >= spoken_s - 0.1 and durations["video"] > 0


@pytest.mark.slow
def test_bench_scenario_reports_its_figures(factory: PipelineFactory) -> None:
    """``anchor bench pipecat``'s measurement on the tiny model: every figure is filled in,
    and the interruption left no speech behind it."""
    from bench.pipecat import measure

    service = AnchorVideoService.local(CONFIG, factory)
    figures = asyncio.run(measure(service, idle_s=0.5))

    assert figures["errors"] == []
    assert figures["target_fps"] == FPS and 0 < figures["fps"] <= FPS * 1.1
    assert figures["speech_to_first_frame_ms"] > 0
    assert abs(figures["av_offset_ms"]["median"]) <= 45.0
    assert figures["interruption_to_silence_ms"] >= 0
    assert service.stats.interruptions == 1
    assert service.stats.last_speech_after_interruption is None
