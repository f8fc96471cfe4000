// Anchor Live viewer: WebRTC signaling over the session's /view WebSocket.
// The page URL is /sessions/{id}?token=... (or /?session=id&token=...).
"use strict";

const params = new URLSearchParams(location.search);
const pathMatch = location.pathname.match(/^\/sessions\/([A-Za-z0-9_-]+)$/);
const sessionId = pathMatch ? pathMatch[1] : params.get("session");
const token = params.get("token") || "";
const show = (id, text) => { document.getElementById(id).textContent = text; };

// ICE servers for the browser side; none by default (loopback and LAN need none).
const iceServers = JSON.parse(params.get("ice") || "[]");

async function waitForGathering(peer, timeoutMs) {
  if (peer.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

async function start() {
  if (!sessionId) { show("state", "no session in the URL"); return; }
  show("session", sessionId);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/sessions/${sessionId}/view?token=${encodeURIComponent(token)}`;
  const socket = new WebSocket(url);
  const peer = new RTCPeerConnection({ iceServers });
  const video = document.getElementById("video");
  peer.addTransceiver("video", { direction: "recvonly" });
  peer.addTransceiver("audio", { direction: "recvonly" });
  peer.addEventListener("track", (event) => {
    if (!video.srcObject) video.srcObject = new MediaStream();
    video.srcObject.addTrack(event.track);
    video.play().catch(() => {});
  });
  peer.addEventListener("connectionstatechange", () => show("state", peer.connectionState));
  socket.addEventListener("message", async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "answer") {
      await peer.setRemoteDescription({ type: "answer", sdp: message.sdp });
    } else if (message.type === "status") {
      show("committed-fps", message.committed_fps.toFixed(1));
      show("latency", `${message.latency_ms.toFixed(0)} ms`);
      show("seq", message.seq === null ? "-" : String(message.seq));
    } else if (message.type === "ended") {
      show("state", `run ended (${message.reason})`);
    } else if (message.type === "error") {
      show("state", `error: ${message.message}`);
    }
  });
  socket.addEventListener("close", (event) => show("state", `signaling closed (${event.code} ${event.reason})`));
  await new Promise((resolve, reject) => {
    socket.addEventListener("open", resolve, { once: true });
    socket.addEventListener("error", reject, { once: true });
  });
  show("state", "negotiating");
  await peer.setLocalDescription(await peer.createOffer());
  // aiortc does not trickle: send the offer once host candidates are in it.
  await waitForGathering(peer, 3000);
  socket.send(JSON.stringify({ type: "offer", sdp: peer.localDescription.sdp }));
  document.getElementById("unmute").addEventListener("click", () => { video.muted = false; });

  let lastFrames = 0;
  let lastTime = performance.now();
  setInterval(() => {
    const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const frames = quality ? quality.totalVideoFrames : 0;
    const now = performance.now();
    show("frames", String(frames));
    show("fps", ((frames - lastFrames) * 1000 / (now - lastTime)).toFixed(1));
    lastFrames = frames;
    lastTime = now;
  }, 500);
}

start().catch((error) => show("state", `failed: ${error}`));
