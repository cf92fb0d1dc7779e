// rtcfleet demo client: the signaling protocol of docs/signaling.md in a browser.
// Two peer connections: the publisher connection offers (camera + microphone up), the
// subscriber connection answers the media node's offers (everyone else down). Live figures
// are kept in window.rtcfleetDemo so a test can read what the page shows.
"use strict";

const params = new URLSearchParams(location.search);
const form = document.getElementById("join");
const leaveButton = document.getElementById("leave");
const statusLine = document.getElementById("status");
const tiles = document.getElementById("tiles");

const demo = {
  status: "idle",
  joined: null,
  errors: [],
  messages: 0,
  recording: null,
  local: {},
  remotes: {},
  // the last 100 signaling events, [time, what]: what a test or a curious user reads back
  events: [],
};
window.rtcfleetDemo = demo;

function note(what) {
  demo.events.push([Date.now(), what]);
  if (demo.events.length > 100) demo.events.shift();
}

let ws = null;
let token = "";
let iceServers = [];
let localStream = null;
let pubPc = null;
let subPc = null;
let queue = Promise.resolve();
let statsTimer = null;
// A dropped path closes nothing: ping every second, give the socket up after 2.5 s of silence
// (looked at every 100 ms, so the silence costs 2.5 s, not up to a ping interval more), then
// resume at the next URL (this one, then the fallback URLs of the join answer).
const PING_INTERVAL_MS = 1000;
const SIGNALING_DEAD_AFTER_MS = 2500;
const SILENCE_CHECK_MS = 100;
let urls = [];
let urlIndex = 0;
let sessionId = null;
let cursor = null;
let lastHeard = 0;
let pingTimer = null;
// region -> when this page last failed to reach it; sent with joins for 30 s
const unreachable = new Map();
let redirect = null;  // {region, urls} of the last redirect

function unreachableRegions() {
  const now = Date.now();
  return [...unreachable].filter(([, at]) => now - at < 30000).map(([region]) => region);
}
const previous = new Map();  // stats id -> {bytes, timestamp}
const remoteTiles = new Map();  // identity -> {root, video, stats, stream}

function setStatus(text) {
  demo.status = text;
  statusLine.textContent = text;
}

// A link may name the signaling URL, but only on this page's own origin: a crafted link must
// not send the token, camera and microphone to someone else's server.
function signalUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const own = `${scheme}//${location.host}/v1/signal`;
  if (!params.get("signal")) return own;
  let given;
  try {
    given = new URL(params.get("signal"), location.href);
  } catch (e) {
    return null;
  }
  if (!["ws:", "wss:"].includes(given.protocol) || given.host !== location.host) return null;
  return given.href;
}

function videoSize() {
  const [w, h] = (params.get("video") || "1280x720").split("x").map(Number);
  return { width: w || 1280, height: h || 720 };
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function gathered(pc, timeoutMs = 3000) {
  // server SDPs carry their candidates; the page sends its own inside its SDP too
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function connect(url) {
  setStatus(`connecting to ${url}`);
  note(`connect ${url}`);
  if (!urls.includes(url)) urls.unshift(url);
  urlIndex = urls.indexOf(url);
  const socket = new WebSocket(url);
  ws = socket;
  lastHeard = Date.now();
  socket.onopen = () => {
    lastHeard = Date.now();
    note("open");
    if (redirect && !redirect.urls.includes(url)) unreachable.set(redirect.region, Date.now());
    redirect = null;
    const join = { type: "join", token, unreachable_regions: unreachableRegions() };
    if (sessionId) Object.assign(join, { session_id: sessionId, cursor });
    send(join);
  };
  clearInterval(pingTimer);
  let pingedAt = 0;
  pingTimer = setInterval(() => {
    if (ws !== socket) return;
    const now = Date.now();
    if (now - lastHeard > SIGNALING_DEAD_AFTER_MS) {
      demo.signalingTimeouts = (demo.signalingTimeouts || 0) + 1;
      note("silent");
      if (demo.joined) unreachable.set(demo.joined.region, now);
      resumeElsewhere(socket);
    } else if (socket.readyState === WebSocket.OPEN && now - pingedAt >= PING_INTERVAL_MS) {
      pingedAt = now;
      send({ type: "ping" });
    }
  }, SILENCE_CHECK_MS);
  socket.onmessage = (event) => {
    lastHeard = Date.now();
    const message = JSON.parse(event.data);
    if (message.type === "pong") return;
    if (message.cursor) cursor = message.cursor;
    demo.messages += 1;
    note(message.type === "error" ? `error ${message.code}` : message.type);
    // the end of a session is acted on at once, not behind a negotiation in the queue: the
    // server's close follows the message, and a close taken for a dropped socket resumes
    const over = sessionOver(message);
    if (over) {
      demo.errors.push(`${message.code || message.type}: ${message.message || over}`);
      stop(over);
      return;
    }
    queue = queue.then(() => (stopped() ? null : onMessage(message))).catch((err) => {
      if (stopped()) return;
      demo.errors.push(String(err));
      setStatus(`error: ${err}`);
    });
  };
  socket.onclose = () => {
    if (demo.status === "left" || ws !== socket) return;
    setStatus("signaling closed; resuming");
    resumeElsewhere(socket);
  };
}

function resumeElsewhere(socket) {
  clearInterval(pingTimer);  // one resume per dead socket; connect() starts the next timer
  socket.onclose = null;
  socket.close();
  const next = urls[(urlIndex + 1) % urls.length];
  setTimeout(() => connect(next), 100);
}

async function onMessage(message) {
  switch (message.type) {
    case "joined":
      if (demo.joined && demo.joined.node_id !== message.node_id) closeMedia();
      demo.joined = message;
      sessionId = message.session_id;
      unreachable.delete(message.region);
      for (const url of message.fallback_urls || []) if (!urls.includes(url)) urls.push(url);
      if (message.resumed) demo.resumes = (demo.resumes || 0) + 1;
      iceServers = (message.ice_servers || []).map((s) => ({
        urls: s.urls, username: s.username || undefined, credential: s.credential || undefined,
      }));
      setStatus(`joined ${message.room} as ${message.identity} on ${message.node_id}`);
      if (message.can_publish && !pubPc) await publish();
      break;
    case "publish_answer":
      await pubPc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      break;
    case "subscriber_offer":
      await answerSubscriberOffer(message.sdp);
      break;
    case "participant_joined":
      remoteTile(message.identity);
      break;
    case "participant_left":
      removeTile(message.identity);
      break;
    case "recording_started":
    case "recording_stopped":
      demo.recording = message.type === "recording_started" ? message.recording_id : null;
      document.body.classList.toggle("recording", demo.recording !== null);
      break;
    case "redirect":
      redirect = { region: message.region, urls: message.urls };
      for (const url of message.urls) if (!urls.includes(url)) urls.push(url);
      ws.onclose = null;
      ws.close();
      connect(message.urls[0]);
      break;
    case "reconnect":
      closeMedia();
      send({ type: "rejoin" });
      break;
    case "error":
      if (message.code === "session_not_found") {
        // resumed in a region that never knew the session: start over there
        sessionId = cursor = null;
        closeMedia();
        send({ type: "join", token, unreachable_regions: unreachableRegions() });
        break;
      }
      demo.errors.push(`${message.code}: ${message.message}`);
      setStatus(`error ${message.code}: ${message.message}`);
      break;
    default:
      break;
  }
}

async function publish() {
  const size = videoSize();
  localStream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { ideal: size.width }, height: { ideal: size.height }, frameRate: { ideal: 30 } },
  });
  if (stopped()) {
    // the session ended while the camera was being opened
    localStream.getTracks().forEach((t) => t.stop());
    localStream = null;
    return;
  }
  document.getElementById("local-video").srcObject = localStream;
  pubPc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
  for (const kind of ["audio", "video"]) {
    for (const track of localStream.getTracks().filter((t) => t.kind === kind)) {
      const transceiver = pubPc.addTransceiver(track, { direction: "sendonly", streams: [localStream] });
      if (kind === "video") {
        const parameters = transceiver.sender.getParameters();
        if (!parameters.encodings || !parameters.encodings.length) parameters.encodings = [{}];
        parameters.encodings[0].maxBitrate = Number(params.get("max_bitrate") || 2500000);
        await transceiver.sender.setParameters(parameters).catch(() => {});
      }
    }
  }
  await pubPc.setLocalDescription(await pubPc.createOffer());
  await gathered(pubPc);
  send({ type: "publish_offer", sdp: pubPc.localDescription.sdp });
  startStats();
}

async function answerSubscriberOffer(sdp) {
  if (!subPc) {
    subPc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    subPc.ontrack = onRemoteTrack;
  }
  await subPc.setRemoteDescription({ type: "offer", sdp });
  await subPc.setLocalDescription(await subPc.createAnswer());
  await gathered(subPc);
  send({ type: "subscriber_answer", sdp: subPc.localDescription.sdp });
  startStats();
}

function onRemoteTrack(event) {
  // a=msid:<publisher identity> <track id>: the stream id names the publisher
  const identity = event.streams.length ? event.streams[0].id : `mid-${event.transceiver.mid}`;
  const tile = remoteTile(identity);
  for (const old of tile.stream.getTracks().filter((t) => t.kind === event.track.kind)) {
    tile.stream.removeTrack(old);
  }
  tile.stream.addTrack(event.track);
  tile.video.srcObject = tile.stream;
  tile.video.play().catch(() => {});
}

function remoteTile(identity) {
  let tile = remoteTiles.get(identity);
  if (tile) return tile;
  const root = document.createElement("div");
  root.className = "tile remote";
  root.dataset.identity = identity;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;  // autoplay policy; unmuted by a click
  video.addEventListener("click", () => { video.muted = !video.muted; });
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = identity;
  const stats = document.createElement("div");
  stats.className = "stats";
  root.append(video, name, stats);
  tiles.append(root);
  tile = { root, video, stats, stream: new MediaStream() };
  remoteTiles.set(identity, tile);
  return tile;
}

function removeTile(identity) {
  const tile = remoteTiles.get(identity);
  if (!tile) return;
  tile.root.remove();
  remoteTiles.delete(identity);
  delete demo.remotes[identity];
}

function rate(id, bytes, timestamp) {
  const last = previous.get(id);
  previous.set(id, { bytes, timestamp });
  if (!last || timestamp <= last.timestamp) return null;
  return (8 * (bytes - last.bytes) * 1000) / (timestamp - last.timestamp);
}

function selectedRtt(report) {
  for (const stat of report.values()) {
    if (stat.type === "transport" && stat.selectedCandidatePairId) {
      const pair = report.get(stat.selectedCandidatePairId);
      if (pair && pair.currentRoundTripTime !== undefined) return pair;
    }
  }
  for (const stat of report.values()) {
    if (stat.type === "candidate-pair" && stat.nominated && stat.state === "succeeded") return stat;
  }
  return null;
}

function fmt(bps, fps, rttS, extra = "") {
  const mbps = bps == null ? "-" : (bps / 1e6).toFixed(2);
  const rtt = rttS == null ? "-" : (rttS * 1000).toFixed(1);
  return `${mbps} Mbit/s · ${fps == null ? "-" : Math.round(fps)} fps · rtt ${rtt} ms${extra}`;
}

async function collectStats() {
  if (pubPc) {
    const report = await pubPc.getStats();
    const pair = selectedRtt(report);
    for (const stat of report.values()) {
      if (stat.type !== "outbound-rtp" || stat.kind !== "video") continue;
      const bps = rate(stat.id, stat.bytesSent, stat.timestamp);
      demo.local = {
        bitrate_bps: bps,
        bytes_sent: stat.bytesSent,
        frames_per_second: stat.framesPerSecond ?? null,
        frames_encoded: stat.framesEncoded,
        width: stat.frameWidth ?? null,
        height: stat.frameHeight ?? null,
        quality_limitation: stat.qualityLimitationReason ?? null,
        target_bitrate_bps: stat.targetBitrate ?? null,
        available_outgoing_bps: pair ? pair.availableOutgoingBitrate ?? null : null,
        rtt_s: pair ? pair.currentRoundTripTime ?? null : null,
        codec: report.get(stat.codecId)?.mimeType ?? null,
      };
      document.getElementById("local-stats").textContent = fmt(
        bps, stat.framesPerSecond, demo.local.rtt_s,
        ` · ${stat.frameWidth || "?"}x${stat.frameHeight || "?"}`,
      );
    }
  }
  if (subPc) {
    const report = await subPc.getStats();
    const pair = selectedRtt(report);
    const rtt = pair ? pair.currentRoundTripTime ?? null : null;
    for (const [identity, tile] of remoteTiles) {
      const ids = new Set(tile.stream.getTracks().map((t) => t.id));
      const entry = { rtt_s: rtt };
      for (const stat of report.values()) {
        if (stat.type !== "inbound-rtp" || !ids.has(stat.trackIdentifier)) continue;
        const bps = rate(stat.id, stat.bytesReceived, stat.timestamp);
        if (stat.kind === "video") {
          Object.assign(entry, {
            bitrate_bps: bps,
            frames_per_second: stat.framesPerSecond ?? null,
            frames_decoded: stat.framesDecoded ?? 0,
          });
        } else {
          entry.audio_bitrate_bps = bps;
        }
      }
      const quality = tile.video.getVideoPlaybackQuality ? tile.video.getVideoPlaybackQuality() : null;
      entry.video_width = tile.video.videoWidth;
      entry.video_height = tile.video.videoHeight;
      entry.frames_shown = quality ? quality.totalVideoFrames : null;
      demo.remotes[identity] = entry;
      tile.stats.textContent = fmt(
        entry.bitrate_bps, entry.frames_per_second, rtt,
        ` · ${entry.video_width}x${entry.video_height}`,
      );
    }
  }
}

function startStats() {
  if (statsTimer === null) {
    statsTimer = setInterval(() => collectStats().catch((err) => demo.errors.push(String(err))), 1000);
  }
}

function closeMedia() {
  for (const pc of [pubPc, subPc]) if (pc) pc.close();
  pubPc = subPc = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  for (const identity of [...remoteTiles.keys()]) removeTile(identity);
}

// Why a server message ends the session for good, or null. After session_replaced a resume
// or a fresh join would evict the newer session in turn; after a token_expired of a joined
// session, resuming with the same token is refused.
function sessionOver(message) {
  if (message.type === "session_replaced") return "this identity joined the room elsewhere";
  if (message.type === "error" && message.code === "token_expired" && demo.joined) {
    return "the token expired; join with a fresh one";
  }
  return null;
}

function stopped() {
  return demo.status === "left";
}

// The session is over: no resume, no reconnect on silence, no camera.
function stop(why) {
  clearInterval(pingTimer);
  if (ws) {
    ws.onclose = null;
    ws.close();
  }
  sessionId = cursor = null;
  closeMedia();
  setStatus("left");
  statusLine.textContent = `left: ${why}`;
  leaveButton.disabled = true;
}

// The room and identity a token joins as, read (not verified: the gateway does that) from its
// claims, so the page shows where Join sends the camera; null for what is not a JWT.
function tokenClaims(value) {
  try {
    const part = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    return typeof claims.room === "string" ? { room: claims.room, identity: claims.identity } : null;
  } catch (e) {
    return null;
  }
}

function showRoom() {
  const claims = tokenClaims(form.elements.token.value.trim());
  form.elements.room.value = claims ? claims.room : "";
}

function join(givenToken) {
  const url = signalUrl();
  if (!url) {
    setStatus(`refused: the signaling URL ${params.get("signal")} is not on ${location.host}`);
    return;
  }
  // a link may say one room and carry a token for another: the camera would go to the other
  const claims = tokenClaims(givenToken);
  const named = params.get("room");
  if (claims && named && named !== claims.room) {
    setStatus(`refused: this link names room ${named}, but its token joins room ${claims.room}`);
    return;
  }
  token = givenToken;
  leaveButton.disabled = false;
  connect(url);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  join(String(new FormData(form).get("token")).trim());
});

leaveButton.addEventListener("click", () => {
  send({ type: "leave" });
  clearInterval(pingTimer);
  sessionId = cursor = null;
  closeMedia();
  setStatus("left");
  leaveButton.disabled = true;
});

// Joining publishes camera and microphone: only the Join button starts it, never a link. A
// token may come in the fragment (#token=..., never sent to a server) and leaves the history.
const fragment = new URLSearchParams(location.hash.slice(1));
form.elements.token.value = fragment.get("token") || params.get("token") || "";
form.elements.token.addEventListener("input", showRoom);
showRoom();
if (fragment.has("token") || params.has("token")) {
  const url = new URL(location.href);
  url.searchParams.delete("token");
  url.hash = "";
  history.replaceState(null, "", url);
}
