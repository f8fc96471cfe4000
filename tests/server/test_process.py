"""``anchor serve`` as a real process: SIGTERM finalizes a playable recording; a headless
Chromium opens the viewer page and decodes video over WebRTC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import av
import pytest
from serverkit import SECRET, tiny_config
from websockets.asyncio.client import connect

from bench.e2e import ROOT, free_port, start_server
from clients.producer_client import MotionProducer
from clients.viewer_client import ViewerProbe
from model.motion.demo_loop import demo_frames
from server.media import read_seq
from server.tokens import mint_token

CHROMIUM = "/usr/bin/chromium"
# Demo frames a viewer must see (by seq barcode) before the demo is stopped.
DEMO_SEQS = 20


def _serve(tmp_path: Path) -> tuple[Any, Any]:
    config = tiny_config(tmp_path, port=free_port(), host="127.0.0.1")
    return config, start_server(config, tmp_path / "server.log")


@pytest.mark.slow
def test_sigterm_finalizes_a_playable_recording(tmp_path: Path) -> None:
    config, process = _serve(tmp_path)
    port = config.server.port
    url = f"ws://127.0.0.1:{port}/sessions/s1/motion?token="
    url += mint_token(SECRET, "s1", "producer", 120)
    sent = 10

    ended: list[dict[str, Any]] = []

    async def produce() -> None:
        token = mint_token(SECRET, "s1", "viewer", 120)
        viewer = ViewerProbe(f"ws://127.0.0.1:{port}/sessions/s1/view?token={token}")
        async with MotionProducer(url) as producer:
            await producer.start()
            await viewer.connect()
            await producer.send_frames(demo_frames(0, sent))
            await producer.wait_for(lambda: len(producer.acked) == sent, 60.0)
            await viewer.wait_seq(0, 120.0)  # the model is warm: the flush is quick
            # no `end`: the server is terminated with the run in progress
            process.send_signal(signal.SIGTERM)
            await producer.wait_for(lambda: producer.ended is not None, 120.0)
            ended.append(producer.ended or {})
        await viewer.close()

    try:
        asyncio.run(produce())
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    recordings = sorted((tmp_path / "recordings").glob("s1-*.mp4"))
    assert len(recordings) == 1
    with av.open(str(recordings[0])) as container:
        seqs = [read_seq(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    # Shutdown is bounded (10 s): what the flush did not commit in time is reported dropped.
    summary = ended[0]
    assert summary["reason"] == "shutdown" and summary["committed"] >= 1
    assert seqs == list(range(summary["committed"]))
    assert summary["dropped"] == list(range(summary["committed"], sent))


async def _page_frames(debug_port: int, deadline_s: float) -> tuple[int, str]:
    """Poll the page's decoded-frame counter over the DevTools protocol (real time)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    target = None
    while target is None and loop.time() < end:
        with contextlib.suppress(OSError, ValueError):
            listing = await asyncio.to_thread(
                lambda: urllib.request.urlopen(
                    f"http://127.0.0.1:{debug_port}/json/list", timeout=5
                ).read()
            )
            pages = [item for item in json.loads(listing) if item.get("type") == "page"]
            target = pages[0]["webSocketDebuggerUrl"] if pages else None
        await asyncio.sleep(0.5)
    assert target is not None, "Chromium exposed no page"
    expression = (
        "document.getElementById('frames').textContent + '|' + "
        "document.getElementById('state').textContent"
    )
    frames, state = 0, ""
    async with connect(target, max_size=1 << 24) as devtools:
        for request_id in range(1, 1000):
            await devtools.send(
                json.dumps(
                    {
                        "id": request_id,
                        "method": "Runtime.evaluate",
                        "params": {"expression": expression},
                    }
                )
            )
            while True:
                reply = json.loads(await devtools.recv())
                if reply.get("id") == request_id:
                    break
            value = reply["result"]["result"].get("value", "0|")
            count, state = value.split("|", 1)
            frames = int(count)
            if frames > 0 or loop.time() > end:
                break
            await asyncio.sleep(0.5)
    return frames, state


@pytest.mark.slow
def test_headless_chromium_decodes_video(tmp_path: Path) -> None:
    config, process = _serve(tmp_path)
    port = config.server.port
    producer_url = f"ws://127.0.0.1:{port}/sessions/web/motion?token="
    producer_url += mint_token(SECRET, "web", "producer", 300)
    page = f"http://127.0.0.1:{port}/sessions/web?token={mint_token(SECRET, 'web', 'viewer', 300)}"
    result: list[tuple[int, str]] = []

    async def main() -> None:
        debug_port = free_port()
        async with MotionProducer(producer_url) as producer:
            await producer.start()
            sender = asyncio.create_task(producer.send_frames(demo_frames(0, 3000), fps=30.0))
            # In tmp_path, not a TemporaryDirectory: Chromium's helper processes may still
            # write to the profile for a moment after the browser exits.
            profile = tmp_path / "chromium-profile"
            browser = await asyncio.create_subprocess_exec(
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                # host candidates on 127.0.0.1, as plain addresses (no mDNS names)
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={debug_port}",
                page,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                result.append(await _page_frames(debug_port, 90.0))
            finally:
                browser.terminate()
                await browser.wait()
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    try:
        asyncio.run(main())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    frames, state = result[0]
    assert frames > 0, f"page state: {state}"


async def _demo_streams_then_stops(signum: int) -> tuple[list[int], int]:
    """Run ``anchor demo --port 0``, view it, signal it; (seqs seen, exit code)."""
    command = [sys.executable, "-m", "app.cli", "--set", "server.stamp_seq=true"]
    process = await asyncio.create_subprocess_exec(
        *command, "demo", "--port", "0", cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        page = ""
        for _ in range(100):  # lines before the URL, if any
            line = (await asyncio.wait_for(process.stdout.readline(), 180.0)).decode()
            if line.startswith("viewer: ") or not line:
                page = line.removeprefix("viewer: ").strip()
                break
        parts = urllib.parse.urlsplit(page)
        assert parts.scheme == "http" and parts.port, f"no viewer URL printed: {page!r}"
        assert "token=" in parts.query
        viewer = ViewerProbe(f"ws://{parts.netloc}{parts.path}/view?{parts.query}")
        await viewer.connect()
        try:
            await viewer.wait_seq(DEMO_SEQS, 180.0)
        finally:
            await viewer.close()
        process.send_signal(signum)
        code = await asyncio.wait_for(process.wait(), 120.0)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return [frame.seq for frame in viewer.frames if frame.seq is not None], code


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_prints_a_viewer_url_streams_and_exits_zero(signum: int) -> None:
    seqs, code = asyncio.run(_demo_streams_then_stops(signum))
    assert code == 0
    # the looping demo producer's frames reach the viewer, in order
    assert len(set(seqs)) >= DEMO_SEQS // 2 and seqs == sorted(seqs)
