// Cascade browser client: the signaling protocol of PROTOCOL.md on standard browser APIs only
// (WebSocket, RTCPeerConnection, EventTarget). No dependencies and no build step.
//
//   import { CascadeClient } from "/cascade.js";
//   const client = new CascadeClient();
//   client.addEventListener("track", (e) => attach(e.detail.track, e.detail.participantId));
//   await client.connect("/ws", token);
//   await client.publish(await navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
//
// A page that does not use modules can read window.Cascade once a module loaded this file:
// `new Cascade()` and `new Cascade.CascadeClient()` are the same.
//
// Events (CustomEvent, payload in event.detail):
//   state               {state, previous}: "connecting" | "connected" | "reconnecting" | "closed"
//   joined              join response data, plus {reconnected: bool}
//   participantJoined   Participant {id, identity}
//   participantLeft     {id}
//   producerAdded       Producer
//   producerRemoved     {id, participant}
//   producerMuted       {id, muted}
//   message             {from, identity, data}
//   track               {track, streams, participantId, producerId, kind}
//   trackEnded          {track, participantId, producerId, kind}
//   data                {data, label}: a message on the receive transport's data channel
//   transportState      {transport: "send"|"recv", state}: RTCPeerConnection.connectionState
//   notification        {method, data}: a notification this library does not know
//   error               {error, context}: an asynchronous failure (nothing threw to the caller)

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;
const MAX_FRAME_BYTES = 64 * 1024;
// Join errors that another attempt cannot fix: reconnection stops on them.
const FATAL_JOIN_CODES = new Set(["unauthorized", "token_expired", "forbidden", "bad_request", "already_joined"]);

/** An error answered by the server ({code, message}) or raised by the client. */
export class CascadeError extends Error {
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.name = "CascadeError";
    this.code = code;
    this.serverMessage = message || "";
  }
}

function sdpOf(value) {
  if (typeof value === "string") return value;
  if (value && typeof value.sdp === "string") return value.sdp;
  throw new CascadeError("bad_sdp", "the message carries no SDP");
}

function webSocketURL(url) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const u = new URL(url || "/ws", base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  return u.href;
}

function frameTooBig(frame) {
  // A UTF-8 byte is at least one and at most three per UTF-16 unit: encode only when unsure.
  if (frame.length * 3 <= MAX_FRAME_BYTES) return false;
  if (frame.length > MAX_FRAME_BYTES) return true;
  return new TextEncoder().encode(frame).length > MAX_FRAME_BYTES;
}

function transceiverKind(t) {
  return (t.receiver && t.receiver.track && t.receiver.track.kind) || (t.sender.track && t.sender.track.kind) || "";
}

export class CascadeClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {RTCIceServer[]} [options.iceServers] STUN/TURN servers for both peer connections, besides
   *   the node's own TURN servers, which the join response hands out with fresh credentials
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy] "all" (default: direct paths
   *   first, TURN when they fail) or "relay" (TURN only)
   * @param {number} [options.requestTimeout] ms before a request fails with code "timeout" (10000)
   * @param {boolean} [options.reconnect] reconnect when the WebSocket drops (true)
   */
  constructor(options = {}) {
    super();
    this.options = { iceServers: [], iceTransportPolicy: "all", requestTimeout: 10000, reconnect: true, ...options };
    /** The node's TURN servers from the last join response (PROTOCOL.md, iceServers). */
    this._nodeIceServers = [];
    /** "closed" | "connecting" | "connected" | "reconnecting" */
    this.state = "closed";
    /** This client's Participant once joined. */
    this.participant = null;
    this.room = null;
    /** The other participants of the room, by id. */
    this.participants = new Map();
    /** The room's producers (this client's included), by id. */
    this.producers = new Map();
    /** This client's producers: id -> {id, kind, track, transceiver, muted, producer}. */
    this.localProducers = new Map();
    /** Received tracks: producer id -> {track, streams, participantId, producerId, kind}. */
    this.remoteTracks = new Map();
    this.sendPC = null;
    this.recvPC = null;
    /** The send transport's data channel ("data"). */
    this.dataChannel = null;

    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._url = null;
    this._token = null;
    this._autoSubscribe = true;
    this._closed = true;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._published = []; // [{track, stream}]: what to publish again after a reconnection
    this._wantData = false;
    this._gen = 0; // bumped whenever the peer connections are torn down
    this._resetTransportState();
  }

  /** Registers fn(detail) for an event; returns a function that removes it. */
  on(type, fn) {
    const listener = (e) => fn(e.detail, e);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /**
   * Opens the WebSocket (ws:, wss:, http:, https: or a path such as "/ws") and joins with the
   * token. Resolves with the join response data. Later drops reconnect automatically, joining
   * with the same token; `token` may also be a function returning a token (or a promise of
   * one), called for every join, so that a long-lived page can refresh an expired token.
   */
  async connect(url, token, { autoSubscribe = true, region = "" } = {}) {
    if (this.state !== "closed") throw new CascadeError("bad_state", `connect while ${this.state}`);
    this._url = webSocketURL(url);
    this._token = token;
    this._autoSubscribe = autoSubscribe !== false;
    this._region = region;
    this._redirected = false;
    this._closed = false;
    this._attempt = 0;
    this._setState("connecting");
    try {
      return await this._open(false);
    } catch (err) {
      this._closed = true;
      this._dropSocket();
      this._teardownPeers();
      this._setState("closed");
      throw err;
    }
  }

  /**
   * Publishes the stream's tracks on the send transport (one sendonly transceiver each, plus the
   * data channel "data"). Calling it again with new tracks renegotiates. Resolves with the
   * producers of the send transport.
   */
  async publish(stream) {
    this._requireConnected();
    const pc = this._ensureSendPC();
    for (const track of stream.getTracks()) {
      if (this._published.some((p) => p.track === track)) continue;
      this._published.push({ track, stream });
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    return this._negotiateSend();
  }

  /** Stops one of this client's producers and renegotiates the send transport without it. */
  async unpublish(producerId) {
    this._requireConnected();
    const local = this.localProducers.get(producerId);
    await this.request("unpublish", { producer: producerId });
    this.localProducers.delete(producerId);
    this.producers.delete(producerId);
    if (!local) return;
    this._published = this._published.filter((p) => p.track !== local.track);
    try {
      local.transceiver.stop();
    } catch (_) {
      // already stopped
    }
    await this._negotiateSend();
  }

  /** Mutes or unmutes one of this client's producers; toggles the local track's enabled too. */
  async mute(producerId, muted) {
    this._requireConnected();
    muted = !!muted;
    const local = this.localProducers.get(producerId);
    if (local) {
      local.muted = muted;
      if (local.track) local.track.enabled = !muted;
    }
    await this.request("mute", { producer: producerId, muted });
  }

  /** Subscribes to a producer (for clients that joined with autoSubscribe: false). */
  subscribe(producerId) {
    return this.request("subscribe", { producer: producerId });
  }

  unsubscribe(producerId) {
    return this.request("unsubscribe", { producer: producerId });
  }

  /** Sends an application message (any JSON value) to the whole room over signaling. */
  sendMessage(data) {
    return this.request("message", { data });
  }

  /**
   * Sends a string on the send transport's data channel: every other participant gets it as a
   * `data` event. Without a send transport yet, one with only the data channel is negotiated.
   */
  async sendData(data) {
    this._wantData = true;
    let dc = this.dataChannel;
    if (!dc || dc.readyState === "closing" || dc.readyState === "closed") {
      this._requireConnected();
      if (!this.sendPC) {
        this._ensureSendPC();
        await this._negotiateSend();
      }
      dc = this.dataChannel;
    }
    if (dc.readyState !== "open") await this._waitOpen(dc);
    dc.send(data);
  }

  /** Sends `leave`, closes everything and stops reconnecting. Local tracks are left running. */
  async close() {
    if (this._closed && this.state === "closed") return;
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this.state === "connected" && this._ws && this._ws.readyState === 1) {
      try {
        await this.request("leave", {}, 2000);
      } catch (_) {
        // closing anyway
      }
    }
    this._dropSocket(1000, "leave");
    this._teardownPeers();
    this._published = [];
    this._wantData = false;
    this.participants.clear();
    this.producers.clear();
    this.participant = null;
    this._setState("closed");
  }

  /** Sends one request; resolves with the response's data or rejects with a CascadeError. */
  request(method, data = {}, timeout = this.options.requestTimeout) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) {
      return Promise.reject(new CascadeError("disconnected", `${method}: not connected`));
    }
    const id = this._nextId++;
    const frame = JSON.stringify({ id, method, data });
    if (frameTooBig(frame)) {
      return Promise.reject(new CascadeError("too_big", `${method}: request over 64 KiB`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new CascadeError("timeout", `${method}: no response in ${timeout} ms`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, method });
      try {
        ws.send(frame);
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(err);
      }
    });
  }

  // ---- connection ------------------------------------------------------------------------------

  async _open(reconnected) {
    const token = typeof this._token === "function" ? await this._token() : this._token;
    await this._openSocket();
    let data = await this.request("join", this._joinData(token));
    if (data.redirect && data.redirect.url && !this._redirected) {
      // The node placed this client on a better node (region, load, draining): follow once,
      // and stay there across reconnections.
      this._dropSocket(1000, "redirected");
      this._url = data.redirect.url;
      this._redirected = true;
      await this._openSocket();
      data = await this.request("join", this._joinData(token));
    }
    this._applyJoin(data, reconnected);
    this._attempt = 0;
    this._setState("connected");
    this._emit("joined", { ...data, reconnected });
    return data;
  }

  _joinData(token) {
    const d = { token, autoSubscribe: this._autoSubscribe };
    if (this._region) d.region = this._region;
    if (this._redirected) d.noRedirect = true;
    return d;
  }

  _openSocket() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this._url);
      } catch (err) {
        reject(err);
        return;
      }
      this._ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        resolve(ws);
      };
      ws.onmessage = (ev) => this._onFrame(ws, ev.data);
      ws.onerror = () => {}; // a close event follows
      ws.onclose = (ev) => {
        if (!opened) reject(new CascadeError("connect_failed", `WebSocket ${this._url} closed before it opened (code ${ev.code})`));
        this._onSocketClose(ws, ev);
      };
    });
  }

  _dropSocket(code = 1000, reason = "") {
    const ws = this._ws;
    this._ws = null;
    this._rejectPending(new CascadeError("disconnected", "the connection closed"));
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code, reason);
      } catch (_) {
        // already closed
      }
    }
  }

  _rejectPending(err) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  _onSocketClose(ws, ev) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._rejectPending(new CascadeError("disconnected", `the connection closed (code ${ev.code})`));
    if (!this._closed && this.state === "connected") this._beginReconnect();
    else if (this._closed && this.state === "connected") {
      // Closed by the server for good (a "closed" notification): tear down, no reconnect.
      this._teardownPeers();
      this._setState("closed");
    }
    // While connecting or reconnecting, the attempt in progress sees the rejection.
  }

  _beginReconnect() {
    if (!this.options.reconnect) {
      this.close();
      return;
    }
    this._setState("reconnecting");
    this._teardownPeers();
    this._attempt = 0;
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._closed) return;
    clearTimeout(this._reconnectTimer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this._attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5)); // +-25% jitter
    this._attempt++;
    this._reconnectTimer = setTimeout(() => this._reconnectOnce(), delay);
  }

  async _reconnectOnce() {
    this._reconnectTimer = null;
    if (this._closed || this.state !== "reconnecting") return;
    try {
      await this._open(true);
    } catch (err) {
      if (this._closed || this.state !== "reconnecting") return;
      this._dropSocket();
      if (err instanceof CascadeError && FATAL_JOIN_CODES.has(err.code)) {
        this._emitError(err, "reconnect");
        this.close();
        return;
      }
      this._scheduleReconnect();
      return;
    }
    try {
      await this._restoreMedia();
    } catch (err) {
      // A drop during the restore starts another reconnection by itself.
      if (this.state === "connected") this._emitError(err, "republish");
    }
  }

  async _restoreMedia() {
    const live = this._published.filter((p) => p.track.readyState === "live");
    this._published = [];
    if (live.length === 0 && !this._wantData) return;
    const pc = this._ensureSendPC();
    for (const { track, stream } of live) {
      this._published.push({ track, stream });
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    await this._negotiateSend();
    for (const local of this.localProducers.values()) {
      if (local.track && !local.track.enabled) await this.mute(local.id, true);
    }
  }

  _applyJoin(data, reconnected) {
    // Peer connections made from now on use this node's TURN servers and credentials.
    this._nodeIceServers = Array.isArray(data.iceServers) ? data.iceServers : [];
    const before = this.participants;
    const producersBefore = this.producers;
    this.participant = data.participant || null;
    this.room = data.room || null;
    const selfId = this.participant && this.participant.id;
    this.participants = new Map();
    for (const p of data.participants || []) if (p.id !== selfId) this.participants.set(p.id, p);
    this.producers = new Map();
    for (const p of data.producers || []) this.producers.set(p.id, p);
    if (!reconnected) return;
    // Tell listeners what changed while the connection was down.
    for (const [id, p] of producersBefore) if (!this.producers.has(id)) this._emit("producerRemoved", { id, participant: p.participant });
    for (const id of before.keys()) if (!this.participants.has(id)) this._emit("participantLeft", { id });
    for (const [id, p] of this.participants) if (!before.has(id)) this._emit("participantJoined", p);
    for (const [id, p] of this.producers) if (!producersBefore.has(id)) this._emit("producerAdded", p);
  }

  _requireConnected() {
    if (this.state !== "connected") throw new CascadeError("disconnected", `not connected (${this.state})`);
  }

  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _emitError(error, context) {
    this._emit("error", { error, context });
  }

  // ---- incoming frames -------------------------------------------------------------------------

  _onFrame(ws, raw) {
    if (ws !== this._ws) return;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (err) {
      this._emitError(new CascadeError("bad_frame", `not JSON: ${err.message}`), "frame");
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.method === "string" && (msg.id === undefined || msg.id === null)) {
      try {
        this._onNotification(msg.method, msg.data || {});
      } catch (err) {
        this._emitError(err, msg.method);
      }
      return;
    }
    const pending = this._pending.get(msg.id);
    if (!pending) return;
    this._pending.delete(msg.id);
    clearTimeout(pending.timer);
    if (msg.ok) {
      pending.resolve(msg.data || {});
    } else {
      const e = msg.error || {};
      pending.reject(new CascadeError(e.code || "internal", e.message || `${pending.method} failed`));
    }
  }

  _onNotification(method, data) {
    const selfId = this.participant && this.participant.id;
    switch (method) {
      case "closed":
        // A newer session of the same identity replaced this one: do not fight it by
        // reconnecting.
        this._closed = true;
        clearTimeout(this._reconnectTimer);
        this._emit("error", new CascadeError("closed", data.reason || "session closed by the server"));
        break;
      case "offer":
        this._onOffer(data);
        return;
      case "trickle":
        this._onRemoteCandidate(data.transport, data.candidate);
        return;
      case "participantJoined":
        if (data.id === selfId) return;
        this.participants.set(data.id, data);
        break;
      case "participantLeft":
        if (data.id === selfId) return;
        this.participants.delete(data.id);
        break;
      case "producerAdded":
        this.producers.set(data.id, data);
        break;
      case "producerRemoved": {
        this.producers.delete(data.id);
        const remote = this.remoteTracks.get(data.id);
        if (remote) remote.end();
        break;
      }
      case "producerMuted": {
        const p = this.producers.get(data.id);
        if (p) p.muted = !!data.muted;
        break;
      }
      case "message":
        break;
      default:
        this._emit("notification", { method, data });
        return;
    }
    this._emit(method, data);
  }

  // ---- transports ------------------------------------------------------------------------------

  _resetTransportState() {
    this._ready = { send: false, recv: false }; // the server knows the transport: trickle may flow
    this._localCandidates = { send: [], recv: [] };
    this._remoteCandidates = { send: [], recv: [] };
    this._sendChain = Promise.resolve();
    this._recvChain = Promise.resolve();
  }

  _newPC(transport) {
    // The browser prefers host and server-reflexive paths and relays only when they fail.
    const pc = new RTCPeerConnection({
      iceServers: [...this.options.iceServers, ...this._nodeIceServers],
      iceTransportPolicy: this.options.iceTransportPolicy,
      bundlePolicy: "max-bundle",
    });
    const gen = this._gen;
    pc.onicecandidate = (e) => this._onLocalCandidate(transport, e.candidate, gen);
    pc.onconnectionstatechange = () => {
      if (gen === this._gen) this._emit("transportState", { transport, state: pc.connectionState });
    };
    return pc;
  }

  _ensureSendPC() {
    if (this.sendPC) return this.sendPC;
    const pc = this._newPC("send");
    this.sendPC = pc;
    this.dataChannel = pc.createDataChannel("data");
    return pc;
  }

  _ensureRecvPC() {
    if (this.recvPC) return this.recvPC;
    const pc = this._newPC("recv");
    const gen = this._gen;
    pc.ontrack = (e) => {
      if (gen === this._gen) this._onTrack(e);
    };
    pc.ondatachannel = (e) => {
      const ch = e.channel;
      ch.onmessage = (m) => {
        if (gen === this._gen) this._emit("data", { data: m.data, label: ch.label });
      };
    };
    this.recvPC = pc;
    return pc;
  }

  _onTrack(e) {
    const track = e.track;
    const streams = [...e.streams];
    const participantId = streams.length ? streams[0].id : null;
    const producerId = track.id;
    const previous = this.remoteTracks.get(producerId);
    if (previous && previous.track !== track) previous.end();
    let ended = false;
    const info = { track, streams, participantId, producerId, kind: track.kind };
    const end = () => {
      if (ended) return;
      ended = true;
      track.removeEventListener("ended", end);
      for (const s of streams) s.removeEventListener("removetrack", onRemove);
      if (this.remoteTracks.get(producerId) === entry) this.remoteTracks.delete(producerId);
      this._emit("trackEnded", { track, participantId, producerId, kind: track.kind });
    };
    const onRemove = (ev) => {
      if (ev.track === track) end();
    };
    const entry = { ...info, end };
    this.remoteTracks.set(producerId, entry);
    track.addEventListener("ended", end);
    for (const s of streams) s.addEventListener("removetrack", onRemove);
    this._emit("track", info);
  }

  _teardownPeers() {
    this._gen++;
    for (const remote of [...this.remoteTracks.values()]) remote.end();
    this.remoteTracks.clear();
    for (const pc of [this.sendPC, this.recvPC]) {
      if (!pc) continue;
      pc.onicecandidate = pc.ontrack = pc.ondatachannel = pc.onconnectionstatechange = null;
      try {
        pc.close();
      } catch (_) {
        // already closed
      }
    }
    this.sendPC = null;
    this.recvPC = null;
    this.dataChannel = null;
    this.localProducers.clear();
    this._resetTransportState();
  }

  // Offers the send transport's current state through `publish`, serialized with earlier calls.
  _negotiateSend() {
    const gen = this._gen;
    const run = async () => {
      const pc = this.sendPC;
      if (gen !== this._gen || !pc) throw new CascadeError("disconnected", "the connection was reset");
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      let res;
      try {
        res = await this.request("publish", { sdp: pc.localDescription.sdp });
      } catch (err) {
        if (gen === this._gen && pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
        }
        throw err;
      }
      if (gen !== this._gen) throw new CascadeError("disconnected", "the connection was reset");
      await pc.setRemoteDescription({ type: "answer", sdp: sdpOf(res.sdp) });
      this._flushRemoteCandidates("send");
      this._markReady("send");
      const producers = res.producers || [];
      this._mapProducers(pc, producers);
      return producers;
    };
    const p = this._sendChain.then(run, run);
    this._sendChain = p.catch(() => {});
    return p;
  }

  // Links the send transport's producers to the local tracks: by mid or track id when the server
  // says, else by kind in transceiver order.
  _mapProducers(pc, producers) {
    const transceivers = pc.getTransceivers().filter((t) => !t.stopped && t.currentDirection !== "stopped" && t.sender.track);
    const previous = this.localProducers;
    const used = new Set();
    const next = new Map();
    const pick = (p) => {
      const old = previous.get(p.id);
      if (old && transceivers.includes(old.transceiver) && !used.has(old.transceiver)) return old.transceiver;
      const free = transceivers.filter((t) => !used.has(t));
      const wanted = [p.trackId, p.track, p.id].filter((v) => typeof v === "string");
      return (
        (p.mid !== undefined && p.mid !== null && free.find((t) => t.mid === String(p.mid))) ||
        free.find((t) => wanted.includes(t.sender.track.id)) ||
        free.find((t) => transceiverKind(t) === p.kind)
      );
    };
    for (const p of producers) {
      this.producers.set(p.id, p);
      if (p.kind !== "audio" && p.kind !== "video") continue;
      const t = pick(p);
      if (!t) continue;
      used.add(t);
      const track = t.sender.track;
      next.set(p.id, { id: p.id, kind: p.kind, track, transceiver: t, muted: !!p.muted, producer: p });
    }
    for (const id of previous.keys()) if (!next.has(id)) this.producers.delete(id);
    this.localProducers = next;
  }

  _onOffer(data) {
    const gen = this._gen;
    const run = async () => {
      if (gen !== this._gen) return;
      const pc = this._ensureRecvPC();
      await pc.setRemoteDescription({ type: "offer", sdp: sdpOf(data.sdp) });
      this._flushRemoteCandidates("recv");
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (gen !== this._gen) return;
      await this.request("answer", { sdp: pc.localDescription.sdp });
      this._markReady("recv");
    };
    this._recvChain = this._recvChain.then(run).catch((err) => {
      if (gen === this._gen) this._emitError(err, "offer");
    });
  }

  _onLocalCandidate(transport, candidate, gen) {
    if (gen !== this._gen) return;
    // null: gathering is over; an empty candidate string tells the server so.
    const init = candidate ? candidate.toJSON() : { candidate: "" };
    if (!this._ready[transport]) {
      this._localCandidates[transport].push(init);
      return;
    }
    this._sendCandidate(transport, init);
  }

  _sendCandidate(transport, candidate) {
    const gen = this._gen;
    this.request("trickle", { transport, candidate }).catch((err) => {
      if (gen === this._gen && this.state === "connected") this._emitError(err, "trickle");
    });
  }

  _markReady(transport) {
    if (this._ready[transport]) return;
    this._ready[transport] = true;
    const queued = this._localCandidates[transport];
    this._localCandidates[transport] = [];
    for (const c of queued) this._sendCandidate(transport, c);
  }

  _onRemoteCandidate(transport, candidate) {
    if (transport !== "send" && transport !== "recv") return;
    if (!candidate || !candidate.candidate) return; // end of candidates: nothing to do
    const pc = transport === "send" ? this.sendPC : this.recvPC;
    if (pc && pc.remoteDescription) {
      pc.addIceCandidate(candidate).catch((err) => this._emitError(err, "addIceCandidate"));
    } else {
      this._remoteCandidates[transport].push(candidate);
    }
  }

  _flushRemoteCandidates(transport) {
    const pc = transport === "send" ? this.sendPC : this.recvPC;
    const queued = this._remoteCandidates[transport];
    this._remoteCandidates[transport] = [];
    for (const c of queued) pc.addIceCandidate(c).catch((err) => this._emitError(err, "addIceCandidate"));
  }

  _waitOpen(dc, timeout = this.options.requestTimeout) {
    return new Promise((resolve, reject) => {
      const done = (err) => {
        clearTimeout(timer);
        dc.removeEventListener("open", onOpen);
        dc.removeEventListener("close", onClose);
        if (err) reject(err);
        else resolve();
      };
      const onOpen = () => done();
      const onClose = () => done(new CascadeError("disconnected", "the data channel closed"));
      const timer = setTimeout(() => done(new CascadeError("timeout", "the data channel did not open")), timeout);
      dc.addEventListener("open", onOpen);
      dc.addEventListener("close", onClose);
    });
  }
}

CascadeClient.CascadeClient = CascadeClient;
CascadeClient.CascadeError = CascadeError;

if (typeof window !== "undefined") window.Cascade = CascadeClient;

export default CascadeClient;
