"""A pipecat bot with the Anchor Live avatar: text -> TTS -> AnchorVideoService -> WebRTC.

Run ``python -m clients.examples.pipecat_avatar`` (the demo model, no config), then connect
any WebRTC peer to ws://127.0.0.1:8766/: it sends ``{"type": "offer", "sdp": ...}`` and
gets the answer. The TTS is a local espeak-ng stand-in for any pipecat TTS service (Cartesia,
ElevenLabs, Piper...); in a real bot an STT and an LLM sit before it.
"""

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from pipecat.frames.frames import Frame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner
from websockets.asyncio.server import ServerConnection, serve

from app.config import load_config
from clients.pipecat import AnchorVideoService


class EspeakTTSService(TTSService):
    """Stand-in TTS: espeak-ng's WAV (PCM16 mono after a 44-byte header, 22.05 kHz)."""

    def __init__(self) -> None:
        settings = TTSSettings(model=None, voice=None, language=None)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        espeak = await asyncio.create_subprocess_exec("espeak-ng", "--stdout", text, stdout=-1)
        wav = (await espeak.communicate())[0]

        async def pcm() -> AsyncIterator[bytes]:
            yield wav[44:]

        rate = int.from_bytes(wav[24:28], "little")
        frames = self._stream_audio_frames_from_iterator(pcm(), in_sample_rate=rate)
        async for frame in frames:
            yield frame


async def serve_peer(socket: ServerConnection) -> None:
    offer, connection = json.loads(await socket.recv()), SmallWebRTCConnection()
    await connection.initialize(sdp=offer["sdp"], type=offer["type"])
    await socket.send(json.dumps(connection.get_answer()))
    config = load_config().pipeline  # no config file: the committed demo model
    video: dict[str, Any] = {
        "video_out_width": config.render.width,
        "video_out_height": config.render.height,
    }
    transport = SmallWebRTCTransport(
        connection,
        TransportParams(
            audio_out_enabled=True, video_out_enabled=True, video_out_is_live=True, **video
        ),
    )
    avatar = AnchorVideoService.local(config)
    worker = PipelineWorker(Pipeline([EspeakTTSService(), avatar, transport.output()]))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: SmallWebRTCTransport, client: Any) -> None:
        await worker.cancel()

    await worker.queue_frame(TTSSpeakFrame("Hello! I am the anchor, speaking from pipecat."))
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


async def main() -> None:
    async with serve(serve_peer, "127.0.0.1", 8766):
        await asyncio.Future()  # until Ctrl-C


if __name__ == "__main__":
    asyncio.run(main())
