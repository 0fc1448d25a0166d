// The Cascade demo page: join a room with camera and microphone, see and hear the others, chat.
// It shows the room API's doings too: participant and room metadata, a moderator's mute and its
// request to unmute, and the end of the session when the participant is removed or the room
// deleted. And media that adapts: simulcast, a small and a large view per remote video (the
// small one asks the node for a layer no larger than itself), the loudest speaker highlighted.
// Query parameters: ?room=R&identity=I&autojoin=1; &token=T for a node without /token (run
// without --dev): the token's room and identity are the ones joined; &simulcast=2|3 publishes
// the camera in that many layers, &codec=h264 in H264; &view=small shows remote videos small at
// first; &publish=0 joins without camera and microphone (to watch).
import { CascadeClient } from "./cascade.js";
import { pageStats } from "./stats.js";

const $ = (id) => document.getElementById(id);

let client = null;
let localStream = null;
let joining = false;
let lastError = "";
let notice = "";
let unmuteRequest = null; // the producer a moderator asks us to unmute
const messages = []; // {from, identity, text}
const tiles = new Map(); // participant id -> {el, media: Map(producer id -> element)}
const views = new Map(); // producer id -> "small" | "large": each remote video's view
const fits = new Map(); // producer id -> stop function of client.fitLayer (small views)
let speaking = ""; // the participant id highlighted as the active speaker

function randomIdentity() {
  return "guest-" + Math.random().toString(36).slice(2, 7);
}

function showError(text) {
  lastError = text || "";
  $("error").textContent = lastError;
  $("error").hidden = !lastError;
}

function showNotice(text) {
  notice = text || "";
  $("notice").textContent = notice;
  $("notice").hidden = !notice;
}

// Why the server ended the session, in words (the `closed` event's reason).
const ENDED = {
  removed: "You were removed from the room.",
  room_deleted: "The room was deleted.",
  replaced: "You joined this room from another page: this one left.",
  token_expired: "Your token expired.",
  resumed: "This session went on elsewhere (another page or node took it over).",
};

function setStatus(state, text) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text || state;
}

function identityOf(participantId) {
  if (client && client.participant && client.participant.id === participantId) return client.participant.identity;
  const p = client && client.participants.get(participantId);
  return p ? p.identity : participantId;
}

// showTokenField reveals the token field and the command that mints a token for room and identity.
function showTokenField(room, identity) {
  $("token-field").hidden = false;
  $("token-hint").hidden = false;
  $("dev-hint").hidden = true;
  $("token-cmd").textContent = `cascade token --room ${room} --identity ${identity} --publish --subscribe`;
}

async function fetchToken(room, identity) {
  const pasted = $("token").value.trim();
  if (pasted) return pasted;
  const q = new URLSearchParams({ room, identity });
  const res = await fetch(`/token?${q}`, { cache: "no-store" });
  const body = (await res.text()).trim();
  if (res.status === 404) {
    showTokenField(room, identity);
    throw new Error("this node does not mint tokens (it runs without --dev): paste a token minted with `cascade token`");
  }
  if (!res.ok) throw new Error(body || `token request failed: HTTP ${res.status}`);
  try {
    const v = JSON.parse(body);
    if (typeof v === "string") return v;
    if (v && typeof v.token === "string") return v.token;
  } catch (_) {
    // a plain-text token
  }
  return body;
}

function wsURL() {
  // ?ws=URL joins through another signaling URL (a load balancer, one node of a cluster).
  const given = new URLSearchParams(location.search).get("ws");
  if (given) return given;
  const u = new URL("/ws", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

// ---- tiles -----------------------------------------------------------------------------------

function tileFor(participantId) {
  let tile = tiles.get(participantId);
  if (tile) return tile;
  const el = document.createElement("div");
  el.className = "tile remote";
  el.dataset.participant = participantId;
  const placeholder = document.createElement("div");
  placeholder.className = "placeholder";
  const name = document.createElement("div");
  name.className = "name";
  el.append(placeholder, name);
  $("tiles").append(el);
  tile = { el, name, placeholder, media: new Map(), toggle: null, layer: null };
  tiles.set(participantId, tile);
  updateTileName(participantId);
  return tile;
}

function updateTileName(participantId) {
  const tile = tiles.get(participantId);
  if (!tile) return;
  const identity = identityOf(participantId);
  tile.name.textContent = identity;
  tile.placeholder.textContent = (identity || "?").slice(0, 1).toUpperCase();
}

function removeTile(participantId) {
  const tile = tiles.get(participantId);
  if (!tile) return;
  for (const id of tile.media.keys()) stopFit(id);
  for (const m of tile.media.values()) m.srcObject = null;
  tile.el.remove();
  tiles.delete(participantId);
}

function clearTiles() {
  for (const id of [...tiles.keys()]) removeTile(id);
}

function onTrack({ track, stream, participantId, producerId }) {
  const tile = tileFor(participantId || "unknown");
  const old = tile.media.get(producerId);
  if (old) old.remove();
  const media = document.createElement(track.kind === "video" ? "video" : "audio");
  media.autoplay = true;
  media.playsInline = true;
  if (track.kind === "video") {
    media.muted = true; // sound comes from the audio element; muted video may autoplay
    tile.el.prepend(media);
  } else {
    tile.el.append(media);
  }
  // The client keeps this stream across a resume on another node (it swaps the new track into
  // it): the element plays on by itself.
  media.srcObject = stream;
  media.play().catch(() => {}); // autoplay policy: playback starts on the next user gesture
  tile.media.set(producerId, media);
  if (track.kind === "video") addViewToggle(tile, producerId);
}

function onTrackEnded({ participantId, producerId }) {
  stopFit(producerId);
  const tile = tiles.get(participantId || "unknown");
  if (!tile) return;
  const media = tile.media.get(producerId);
  if (!media) return;
  media.srcObject = null;
  media.remove();
  tile.media.delete(producerId);
}

// ---- views and layers ------------------------------------------------------------------------

// addViewToggle gives a remote video's tile its small/large button and applies the video's view
// (the page's default for a new one: ?view=small, else large).
function addViewToggle(tile, producerId) {
  if (!tile.toggle) {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "view";
    tile.el.append(btn);
    tile.toggle = btn;
    const layer = document.createElement("div");
    layer.className = "layers";
    layer.hidden = true;
    tile.el.append(layer);
    tile.layer = layer;
  }
  tile.toggle.onclick = () => setView(producerId, views.get(producerId) === "small" ? "large" : "small").catch((err) => showError(`View change failed: ${err.message}`));
  const initial = views.get(producerId) || (new URLSearchParams(location.search).get("view") === "small" ? "small" : "large");
  setView(producerId, initial).catch((err) => showError(`View change failed: ${err.message}`));
}

function tileOfProducer(producerId) {
  for (const tile of tiles.values()) if (tile.media.has(producerId)) return tile;
  return null;
}

function stopFit(producerId) {
  (fits.get(producerId) || (() => {}))();
  fits.delete(producerId);
}

// setView shows a remote video small or large. Small: the node is asked for a layer no larger
// than the video element (client.fitLayer follows its size); large: no limit (the top layer
// the viewer's bandwidth allows).
async function setView(producerId, view) {
  if (view !== "small" && view !== "large") throw new Error(`view ${view}: small or large`);
  views.set(producerId, view);
  const tile = tileOfProducer(producerId);
  if (tile) {
    tile.el.classList.toggle("small", view === "small");
    if (tile.toggle) {
      tile.toggle.textContent = view === "small" ? "Large" : "Small";
      tile.toggle.title = view === "small" ? "Show this video large (top layer)" : "Show this video small (a small layer)";
    }
  }
  if (!client) return;
  stopFit(producerId);
  if (view === "small" && tile) {
    fits.set(producerId, client.fitLayer(producerId, tile.media.get(producerId)));
  } else {
    await client.setPreferredLayer(producerId);
  }
}

// The layer a remote video arrives in (layerChanged), shown on its tile.
function onLayerChanged({ producer, layer, rid }) {
  const tile = tileOfProducer(producer);
  if (!tile || !tile.layer) return;
  tile.layer.textContent = `layer ${rid || layer}`;
  tile.layer.hidden = false;
}

// The layers of our camera the node wants (dynacast), shown on our own tile.
function onLayersWanted({ layers }) {
  const el = $("local-layers");
  const rank = (r) => (["q", "h", "f"].indexOf(r) + 4) % 4; // lowest first, others last
  const rids = Object.keys(layers).sort((a, b) => rank(a) - rank(b));
  const [on, off] = [rids.filter((r) => layers[r]), rids.filter((r) => !layers[r])];
  el.textContent = `sending ${on.join(" ") || "nothing"}` + (off.length ? `, paused ${off.join(" ")}` : "");
  el.hidden = false;
}

// The loudest participant of the room gets the highlight (its tile, its name in the list).
function onActiveSpeakers({ speakers }) {
  speaking = speakers.length ? speakers[0].participant : "";
  showSpeaker();
}

function showSpeaker() {
  const self = client && client.participant ? client.participant.id : "";
  for (const [id, tile] of tiles) tile.el.classList.toggle("speaking", id === speaking);
  $("local-tile").classList.toggle("speaking", !!speaking && speaking === self);
  for (const li of $("participants").children) li.classList.toggle("speaking", li.dataset.participant === speaking);
}

// ---- participants and chat ------------------------------------------------------------------

function renderParticipants() {
  const list = $("participants");
  list.replaceChildren();
  if (!client) return;
  const all = [];
  if (client.participant) all.push({ ...client.participant, self: true });
  for (const p of client.participants.values()) all.push(p);
  for (const p of all) {
    const li = document.createElement("li");
    li.dataset.participant = p.id;
    const who = document.createElement("div");
    const name = document.createElement("span");
    name.textContent = p.identity + (p.self ? " (you)" : "");
    who.append(name);
    if (p.metadata) {
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = p.metadata;
      who.append(meta);
    }
    const flags = document.createElement("span");
    flags.className = "flags";
    const muted = [];
    for (const prod of client.producers.values()) {
      if (prod.participant === p.id && prod.muted) muted.push(prod.kind === "audio" ? "mic off" : "camera off");
    }
    flags.textContent = muted.join(", ");
    li.append(who, flags);
    list.append(li);
  }
  for (const id of tiles.keys()) updateTileName(id);
  showSpeaker();
}

function messageText(data) {
  if (typeof data === "string") return data;
  if (data && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

function onMessage({ from, identity, data }) {
  const text = messageText(data);
  messages.push({ from, identity, text });
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = identity || (from ? identityOf(from) : "moderator"); // from "": the room API
  li.append(who, document.createTextNode(text));
  const chat = $("chat");
  chat.append(li);
  chat.scrollTop = chat.scrollHeight;
}

// ---- join and leave -------------------------------------------------------------------------

function showCall(inCall) {
  $("join-view").hidden = inCall;
  $("call-view").hidden = !inCall;
  $("room-label").textContent = inCall && client ? `room ${client.room || ""}` : "";
  showRoomMetadata();
}

function showRoomMetadata() {
  const text = client && client.state !== "closed" ? client.roomMetadata : "";
  $("room-meta").textContent = text;
  $("room-meta").hidden = !text;
}

// ---- the room API: a moderator's mute and unmute request ---------------------------------------

function kindOf(producerId) {
  const local = client && client.localProducers.get(producerId);
  return local && local.kind === "video" ? "camera" : "microphone";
}

function onProducerMuted({ id, muted, byServer }) {
  renderParticipants();
  if (!byServer || !client || !client.localProducers.has(id)) return;
  updateMuteButtons();
  if (muted) showNotice(`A moderator muted your ${kindOf(id)}.`);
}

function onUnmuteRequested({ producer }) {
  unmuteRequest = producer;
  $("unmute-text").textContent = `A moderator asks you to unmute your ${kindOf(producer)}.`;
  $("unmute-request").hidden = false;
}

async function answerUnmute(accept) {
  const producer = unmuteRequest;
  unmuteRequest = null;
  $("unmute-request").hidden = true;
  if (!accept || !client || !producer) return;
  try {
    await client.mute(producer, false);
    showNotice("");
  } catch (err) {
    showError(`Unmute failed: ${err.message}`);
  }
  updateMuteButtons();
}

function wire(c) {
  c.addEventListener("state", (e) => {
    const { state } = e.detail;
    const text = { connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…", migrating: "moving to another node…", closed: "not connected" }[state];
    setStatus(state, text);
    if (state === "closed" && client === c && !joining) {
      // The client gave up (for example an expired token while reconnecting).
      leave();
    }
  });
  c.addEventListener("joined", () => {
    renderParticipants();
    showRoomMetadata();
  });
  c.addEventListener("participantJoined", () => renderParticipants());
  c.addEventListener("participantLeft", (e) => {
    removeTile(e.detail.id);
    renderParticipants();
  });
  c.addEventListener("producerAdded", () => renderParticipants());
  c.addEventListener("producerRemoved", () => renderParticipants());
  c.addEventListener("producerMuted", (e) => onProducerMuted(e.detail));
  c.addEventListener("participantUpdated", () => renderParticipants());
  c.addEventListener("roomUpdated", () => showRoomMetadata());
  c.addEventListener("unmuteRequested", (e) => onUnmuteRequested(e.detail));
  c.addEventListener("closed", (e) => {
    // The server ended the session (or reconnection gave up): say why; the state listener
    // then returns to the join form.
    const { reason } = e.detail;
    showNotice(ENDED[reason] || `The session ended (${reason}).`);
  });
  c.addEventListener("track", (e) => onTrack(e.detail));
  c.addEventListener("trackEnded", (e) => onTrackEnded(e.detail));
  // The node went and the session resumed on another one: the videos played on by themselves.
  c.addEventListener("resumed", () => setStatus("connected", "connected (resumed)"));
  c.addEventListener("message", (e) => onMessage(e.detail));
  c.addEventListener("layerChanged", (e) => onLayerChanged(e.detail));
  c.addEventListener("layersWanted", (e) => onLayersWanted(e.detail));
  c.addEventListener("activeSpeakers", (e) => onActiveSpeakers(e.detail));
  c.addEventListener("error", (e) => console.warn("cascade:", e.detail.context, e.detail.error));
}

async function getMedia() {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (err) {
    // Join anyway, to watch and listen.
    showError(`Camera and microphone unavailable (${err.name}: ${err.message}); joined without them.`);
    return null;
  }
}

async function join(room, identity) {
  if (client || joining) throw new Error("already joined");
  room = String(room || "").trim();
  identity = String(identity || "").trim();
  if (!room || !identity) throw new Error("room and identity are required");
  joining = true;
  $("join").disabled = true;
  showError("");
  showNotice("");
  setStatus("connecting", "getting a token…");
  // ?relay=1 sends all media through the node's TURN servers (iceTransportPolicy "relay").
  const relay = new URLSearchParams(location.search).get("relay") === "1";
  const c = new CascadeClient(relay ? { iceTransportPolicy: "relay" } : {});
  try {
    let token = await fetchToken(room, identity); // fails early, before the camera prompt
    const params = new URLSearchParams(location.search);
    localStream = params.get("publish") === "0" ? null : await getMedia();
    client = c;
    wire(c);
    // The first join uses the token above; a reconnection fetches a fresh one (dev tokens expire).
    // ?region=R is a placement hint: in a cluster the node may send the client to its region.
    const region = new URLSearchParams(location.search).get("region") || "";
    const joined = await c.connect(wsURL(), async () => {
      const t = token || (await fetchToken(room, identity));
      token = null;
      return t;
    }, { region });
    $("local-name").textContent = `${joined.participant ? joined.participant.identity : identity} (you)`;
    $("local-video").srcObject = localStream;
    showCall(true);
    renderParticipants();
    const layers = Number($("simulcast").value) || 0;
    // ?codec=h264 (or vp8) offers that video codec first.
    const codec = (params.get("codec") || "").toUpperCase();
    const videoCodec = codec ? `video/${codec}` : "";
    if (localStream) await c.publish(localStream, { simulcast: layers > 1 ? layers : false, videoCodec });
    updateMuteButtons();
    return { participant: joined.participant, room: joined.room };
  } catch (err) {
    const text = err && err.message ? err.message : String(err);
    joining = false;
    await leave();
    showError(`Could not join: ${text}`);
    throw err;
  } finally {
    joining = false;
    $("join").disabled = false;
  }
}

async function leave() {
  const c = client;
  client = null;
  if (c) await c.close();
  if (localStream) for (const t of localStream.getTracks()) t.stop();
  localStream = null;
  $("local-video").srcObject = null;
  $("local-layers").hidden = true;
  speaking = "";
  $("local-tile").classList.remove("speaking");
  for (const id of [...fits.keys()]) stopFit(id);
  views.clear();
  clearTiles();
  $("chat").replaceChildren();
  messages.length = 0;
  $("participants").replaceChildren();
  unmuteRequest = null;
  $("unmute-request").hidden = true;
  showCall(false);
  setStatus("closed", "not connected");
}

// ---- mute ------------------------------------------------------------------------------------

function localTrack(kind) {
  return localStream && localStream.getTracks().find((t) => t.kind === kind);
}

function updateMuteButtons() {
  for (const [id, kind, on, off] of [["mute-mic", "audio", "Mute mic", "Unmute mic"], ["mute-cam", "video", "Stop camera", "Start camera"]]) {
    const track = localTrack(kind);
    const btn = $(id);
    btn.disabled = !track;
    const muted = !!track && !track.enabled;
    btn.textContent = muted ? off : on;
    btn.setAttribute("aria-pressed", String(muted));
  }
}

async function toggle(kind) {
  const track = localTrack(kind);
  if (!track || !client) return;
  const muted = track.enabled; // enabled now: mute it
  const producer = [...client.localProducers.values()].find((p) => p.track === track);
  try {
    if (producer) await client.mute(producer.id, muted);
    else track.enabled = !muted;
  } catch (err) {
    if (err.code === "forbidden") showNotice(`A moderator muted your ${kind === "video" ? "camera" : "microphone"}: you can unmute when they ask.`);
    else showError(`Mute failed: ${err.message}`);
  }
  updateMuteButtons();
}

window.cascadeApp = {
  get client() {
    return client;
  },
  get lastError() {
    return lastError;
  },
  /** What the page tells the user besides errors (a moderator's mute, why the session ended). */
  get notice() {
    return notice;
  },
  /** The producer a moderator asks us to unmute (the prompt is shown), or null. */
  get unmuteRequest() {
    return unmuteRequest;
  },
  answerUnmute,
  get messages() {
    return messages.slice();
  },
  join,
  leave,
  /** What the tests check: decoded frames and sizes, selected candidate pairs, send encodings. */
  stats: () => pageStats(client),
  /** Shows a remote video "small" (a layer no larger than its element) or "large" (no limit). */
  setView,
  /** The view of each remote video, by producer id. */
  views() {
    return Object.fromEntries(views);
  },
  /** The participant highlighted as the active speaker ("" when nobody speaks). */
  get speaking() {
    return speaking;
  },
  /** Identities of the other participants. */
  participants() {
    return client ? [...client.participants.values()].map((p) => p.identity) : [];
  },
  /** The metadata of everyone in the room (this client included), by identity. */
  metadata() {
    if (!client) return {};
    const all = client.participant ? [client.participant, ...client.participants.values()] : [...client.participants.values()];
    return Object.fromEntries(all.map((p) => [p.identity, p.metadata || ""]));
  },
};

// ---- page wiring -----------------------------------------------------------------------------

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  join($("room").value, $("identity").value).catch(() => {});
});
$("leave").addEventListener("click", () => leave());
$("mute-mic").addEventListener("click", () => toggle("audio"));
$("mute-cam").addEventListener("click", () => toggle("video"));
$("unmute-accept").addEventListener("click", () => answerUnmute(true));
$("unmute-decline").addEventListener("click", () => answerUnmute(false));
$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !client) return;
  input.value = "";
  try {
    await client.sendMessage({ text });
  } catch (err) {
    showError(`Message not sent: ${err.message}`);
  }
});

const params = new URLSearchParams(location.search);
$("room").value = params.get("room") || $("room").value;
$("identity").value = params.get("identity") || randomIdentity();
if (["2", "3"].includes(params.get("simulcast"))) $("simulcast").value = params.get("simulcast");
if (params.get("token")) {
  $("token").value = params.get("token");
  $("token-field").hidden = false;
}
if (params.get("autojoin") === "1") join($("room").value, $("identity").value).catch(() => {});
