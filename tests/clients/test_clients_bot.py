"""``anchor bot`` against a real tiny server: speech in sync with the avatar, barge-in, WebRTC."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from a2m_helpers import synthesize
from clientkit import producer_url, stream_durations, viewer_url
from serverkit import run_with_server, tiny_config
from websockets.asyncio.client import connect

from clients.bot import AnchorBot
from clients.bot_sources import WavSource, WebRtcSource, WebSocketPcmSource
from clients.producer import with_token
from clients.viewer import RecordingViewer
from model.audio2motion import BuiltinAudioToMotion, to_pcm16, write_wav
from model.motion.readers import open_motion

SHORT = "Hello, I am the anchor."


def subframe_lag(jaw: np.ndarray, levels: np.ndarray, span: int = 5) -> tuple[float, float]:
    """Lag in frames (positive: motion early) maximizing the jaw/loudness correlation,
    refined between frames by a parabola through the best three; and that correlation."""
    lags = list(range(-span, span + 1))
    scores = [np.corrcoef(np.roll(jaw, lag)[span:-span], levels[span:-span])[0, 1] for lag in lags]
    best = int(np.argmax(scores))
    best = min(max(best, 1), len(lags) - 2)
    left, middle, right = scores[best - 1], scores[best], scores[best + 1]
    curvature = left - 2 * middle + right
    shift = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return lags[best] + shift, float(middle)


def make_bot(server: Any) -> AnchorBot:
    url, token = producer_url(server.port)
    return AnchorBot(with_token(url, token), BuiltinAudioToMotion(seed=0), tail_seconds=0.3)


def set_when_talking(event: asyncio.Event) -> Any:
    """A bot ``on_frame`` callback that sets ``event`` once the jaw opens."""

    def check(sent: Any) -> None:
        if sent.jaw > 0.05:
            event.set()

    return check


def audio_levels(path: Path, frames: int) -> np.ndarray:
    """(frames,) RMS of the recorded audio over [k / 30, (k + 1) / 30) on the file's timeline."""
    samples: list[np.ndarray] = []
    start: float | None = None
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            if start is None and frame.pts is not None and frame.time_base is not None:
                start = float(frame.pts * frame.time_base)
            samples.append(frame.to_ndarray().reshape(-1))
    audio = np.concatenate(samples).astype(np.float64)
    rate = 16000
    offset = round((start or 0.0) * rate)
    audio = np.concatenate([np.zeros(max(0, offset)), audio])
    levels = []
    for index in range(frames):
        chunk = audio[index * rate // 30 : (index + 1) * rate // 30]
        levels.append(np.sqrt(np.mean(chunk**2)) if len(chunk) else 0.0)
    return np.array(levels)


@pytest.mark.slow
def test_bot_speaks_a_wav_in_sync(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    speech = synthesize(tmp_path / "speech.wav", SHORT, lead_s=0.3, tail_s=0.3)
    wav = tmp_path / "bot.wav"
    write_wav(wav, speech)
    results: dict[str, Any] = {}

    async def body(server: Any) -> None:
        url, token = viewer_url(server.port)
        viewer = RecordingViewer(with_token(url, token), tmp_path / "viewer.mp4")
        await viewer.connect()
        bot = make_bot(server)
        results["stats"] = await bot.run(WavSource(wav))
        await asyncio.sleep(0.3)
        await viewer.close()
        results["viewer"] = viewer

    run_with_server(config, body)
    stats = results["stats"]
    recording = Path(stats.ended["recording"])
    durations = stream_durations(recording)
    # Audio and video of the same duration: within one frame plus one AAC frame of padding.
    assert abs(durations["audio"] - durations["video"]) <= 1 / 30 + 1024 / 16000
    motion = open_motion(recording.with_suffix(".motion.npz"))
    jaw = np.array([frame.jaw_pose[0] for frame in motion])
    assert jaw.max() > 0.1
    levels = audio_levels(recording, len(jaw))
    lag, correlation = subframe_lag(jaw, levels)
    assert abs(lag) < 1.0  # A/V offset within one frame
    assert correlation > 0.5
    viewer = results["viewer"]
    assert len(viewer.frames) > 0 and viewer.audio_received_samples > 0
    viewed = stream_durations(tmp_path / "viewer.mp4")
    assert viewed["video"] > 0 and viewed["audio"] > 0


@pytest.mark.slow
def test_clear_returns_to_idle_within_one_window(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    window = config.sampler.window_size
    speech = synthesize(tmp_path / "speech.wav", "Hello there, this is a long sentence to cut.")
    results: dict[str, Any] = {}

    async def body(server: Any) -> None:
        bot = make_bot(server)
        source = WebSocketPcmSource("127.0.0.1", 0)
        talking = asyncio.Event()
        bot.on_frame = set_when_talking(talking)
        task = asyncio.create_task(bot.run(source))
        await asyncio.wait_for(source.listening.wait(), 30)
        async with connect(f"ws://127.0.0.1:{source.port}/", compression=None) as agent:
            await agent.send(to_pcm16(speech).tobytes())  # a TTS pushes ahead of real time
            await asyncio.wait_for(talking.wait(), 60)
            await agent.send(json.dumps({"type": "clear"}))
            enough = asyncio.Event()

            def count_after_clear(sent: Any) -> None:
                if sum(frame.after_clear for frame in bot.stats.frames) >= 2 * window:
                    enough.set()

            bot.on_frame = count_after_clear
            await asyncio.wait_for(enough.wait(), 60)
            await agent.send(json.dumps({"type": "end"}))
        results["stats"] = await asyncio.wait_for(task, 120)

    run_with_server(config, body)
    stats = results["stats"]
    assert stats.clears == 1 and stats.dropped_samples > 16000  # queued speech was dropped
    after = [frame for frame in stats.frames if frame.after_clear]
    assert not any(frame.speech for frame in after)
    assert all(frame.jaw == 0.0 for frame in after[window - 1 :])  # idle within one window
    first_idle_seq = after[window - 1].seq
    recording = Path(stats.ended["recording"])
    motion = open_motion(recording.with_suffix(".motion.npz"))
    recorded = [frame for frame in motion if frame.seq >= first_idle_seq]
    assert recorded and all(frame.jaw_pose[0] == 0.0 for frame in recorded)


class SpeechTrack:
    """An aiortc audio track playing (N,) int16 16 kHz speech in real time, then silence."""

    kind = "audio"

    def __new__(cls, speech: np.ndarray) -> Any:
        from aiortc.mediastreams import MediaStreamTrack

        class _Track(MediaStreamTrack):
            kind = "audio"

            def __init__(self) -> None:
                super().__init__()
                self.speech = speech
                self.position = 0
                self.started: float | None = None

            async def recv(self) -> av.AudioFrame:
                count = 320  # 20 ms
                if self.started is None:
                    self.started = time.monotonic()
                wait = self.started + self.position / 16000 - time.monotonic()
                await asyncio.sleep(max(0.0, wait))
                chunk = np.zeros(count, dtype=np.int16)
                piece = self.speech[self.position : self.position + count]
                chunk[: len(piece)] = piece
                frame = av.AudioFrame.from_ndarray(
                    chunk.reshape(1, -1), format="s16", layout="mono"
                )
                frame.sample_rate = 16000
                frame.pts = self.position
                frame.time_base = fractions.Fraction(1, 16000)
                self.position += count
                return frame

        return _Track()


@pytest.mark.slow
def test_bot_answers_a_webrtc_peer_and_speaks_its_audio(tmp_path: Path) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from server.webrtc import enable_loopback_candidates

    config = tiny_config(tmp_path)
    speech = to_pcm16(synthesize(tmp_path / "speech.wav", SHORT, lead_s=0.2, tail_s=0.2))
    results: dict[str, Any] = {}

    async def body(server: Any) -> None:
        bot = make_bot(server)
        source = WebRtcSource("127.0.0.1", 0)
        talking = asyncio.Event()
        bot.on_frame = set_when_talking(talking)
        task = asyncio.create_task(bot.run(source))
        await asyncio.wait_for(source.listening.wait(), 30)
        enable_loopback_candidates()
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer.addTrack(SpeechTrack(speech))
        async with connect(f"ws://127.0.0.1:{source.port}/", compression=None) as signaling:
            await peer.setLocalDescription(await peer.createOffer())
            offer = {"type": "offer", "sdp": peer.localDescription.sdp}
            await signaling.send(json.dumps(offer))
            answer = json.loads(await asyncio.wait_for(signaling.recv(), 30))
            await peer.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await asyncio.wait_for(talking.wait(), 60)
            await signaling.send(json.dumps({"type": "end"}))
            results["stats"] = await asyncio.wait_for(task, 120)
        await peer.close()
        results["received"] = bot.buffer.received

    run_with_server(config, body)
    assert results["received"] > 320  # more than one 20 ms packet of the peer reached the bot
    stats = results["stats"]
    assert any(frame.speech for frame in stats.frames)
    assert max(frame.jaw for frame in stats.frames) > 0.05
