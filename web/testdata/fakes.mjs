// Fakes and helpers of the cascade.js unit tests under Node: WebSocket, RTCPeerConnection and
// MediaStream, installed as globals before cascade.js loads (cascade.test.mjs, resume.test.mjs).
// ---- fakes ---------------------------------------------------------------------------------

export const sockets = [];

export class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.waiters = [];
    sockets.push(this);
  }
  send(frame) {
    const msg = JSON.parse(frame);
    this.sent.push(msg);
    if (msg.method === "leave") queueMicrotask(() => this.reply(msg)); // as the server does
    const w = this.waiters.filter((x) => x.method === msg.method);
    for (const x of w) {
      this.waiters.splice(this.waiters.indexOf(x), 1);
      x.resolve(msg);
    }
  }
  close(code = 1000) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.closedWith = code;
    queueMicrotask(() => this.onclose && this.onclose({ code }));
  }
  // server side
  accept() {
    this.readyState = 1;
    this.onopen && this.onopen({});
  }
  push(obj) {
    this.onmessage && this.onmessage({ data: JSON.stringify(obj) });
  }
  reply(req, data = {}) {
    this.push({ id: req.id, ok: true, data });
  }
  fail(req, code, message) {
    this.push({ id: req.id, ok: false, error: { code, message } });
  }
  // the server closes the connection with a status code and reason
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason });
  }
  // the next request with this method (already sent or to come)
  next(method) {
    const i = this.sent.findIndex((m) => m.method === method && !m.taken);
    if (i >= 0) {
      this.sent[i].taken = true;
      return Promise.resolve(this.sent[i]);
    }
    return new Promise((resolve) => this.waiters.push({ method, resolve: (m) => ((m.taken = true), resolve(m)) }));
  }
}

export let pcs = [];
let midSeq = 0;

export class FakeDataChannel extends EventTarget {
  constructor(label) {
    super();
    this.label = label;
    this.readyState = "connecting";
    this.sent = [];
  }
  open() {
    this.readyState = "open";
    this.dispatchEvent(new Event("open"));
  }
  send(d) {
    if (this.readyState !== "open") throw new Error("not open");
    this.sent.push(d);
  }
}

// An RTCRtpSender's parameters, as Chromium handles them: getParameters returns a copy with a
// transaction id, and setParameters takes only the copy of the latest getParameters.
export class FakeSender {
  constructor(track, encodings) {
    this.track = track;
    this.encodings = (encodings || [{}]).map((e) => ({ active: true, ...e }));
    this.calls = [];
    this._tx = 0;
  }
  getParameters() {
    this._tx++;
    return { transactionId: String(this._tx), encodings: this.encodings.map((e) => ({ ...e })) };
  }
  async setParameters(p) {
    if (p.transactionId !== String(this._tx)) throw new Error("InvalidModificationError: stale transaction");
    this._tx++; // a parameters object is good for one setParameters
    await new Promise((r) => setTimeout(r, 1));
    this.encodings = p.encodings.map((e) => ({ ...e }));
    this.calls.push(this.encodings.map((e) => ({ rid: e.rid, active: e.active })));
  }
}

export class FakePC {
  constructor(config) {
    this.config = config;
    this.transceivers = [];
    this.channels = [];
    this.log = [];
    this.candidates = [];
    this.localDescription = null;
    this.remoteDescription = null;
    this.signalingState = "stable";
    this.closed = false;
    this.offers = 0;
    pcs.push(this);
  }
  addTransceiver(track, init) {
    const t = { mid: null, direction: init.direction, init, sender: new FakeSender(track, init.sendEncodings), receiver: { track: { kind: track.kind } }, currentDirection: null, codecs: null, stop() { this.currentDirection = "stopped"; }, setCodecPreferences(c) { this.codecs = c; } };
    this.transceivers.push(t);
    return t;
  }
  getTransceivers() {
    return this.transceivers;
  }
  createDataChannel(label) {
    const dc = new FakeDataChannel(label);
    this.channels.push(dc);
    return dc;
  }
  async createOffer() {
    return { type: "offer", sdp: `offer-${++this.offers}` };
  }
  async createAnswer() {
    return { type: "answer", sdp: `answer-to-${this.remoteDescription.sdp}` };
  }
  async setLocalDescription(d) {
    this.log.push(`local:${d.type}`);
    if (d.type === "rollback") {
      this.signalingState = "stable";
      this.localDescription = null;
      return;
    }
    this.localDescription = d;
    for (const t of this.transceivers) if (t.mid === null) t.mid = String(midSeq++);
    this.signalingState = d.type === "offer" ? "have-local-offer" : "stable";
    // gather one host candidate, then end of candidates
    setTimeout(() => {
      if (this.closed) return;
      this.onicecandidate && this.onicecandidate({ candidate: { toJSON: () => ({ candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdpMid: "0", sdpMLineIndex: 0 }) } });
      this.onicecandidate && this.onicecandidate({ candidate: null });
    }, 0);
  }
  async setRemoteDescription(d) {
    this.log.push(`remote:${d.type}:${d.sdp}`);
    this.remoteDescription = d;
    this.signalingState = d.type === "offer" ? "have-remote-offer" : "stable";
  }
  async addIceCandidate(c) {
    this.candidates.push(c);
  }
  close() {
    this.closed = true;
  }
}

// The client's own stable streams (tracks.js): tracks are added and removed, as in a browser.
export class FakeMediaStream {
  constructor(tracks = []) {
    this.tracks = [...tracks];
  }
  addTrack(t) {
    if (!this.tracks.includes(t)) this.tracks.push(t);
  }
  removeTrack(t) {
    this.tracks = this.tracks.filter((x) => x !== t);
  }
  getTracks() {
    return [...this.tracks];
  }
  getVideoTracks() {
    return this.tracks.filter((t) => t.kind === "video");
  }
}

globalThis.WebSocket = FakeWebSocket;
globalThis.RTCPeerConnection = FakePC;
globalThis.MediaStream = FakeMediaStream;

export const { CascadeClient, CascadeError } = await import("../static/cascade.js");

export function track(kind) {
  return { id: `${kind}-track`, kind, enabled: true, readyState: "live" };
}

export function stream(...tracks) {
  return { id: "local-stream", getTracks: () => tracks };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const tick = () => sleep(5);

export function reset() {
  sockets.length = 0;
  pcs = [];
}

export const joinData = {
  participant: { id: "PA1", identity: "alice" },
  room: "r",
  participants: [{ id: "PA1", identity: "alice" }, { id: "PB1", identity: "bob" }],
  producers: [{ id: "PRb", participant: "PB1", kind: "video", muted: false }],
};

// Connects a client to url and answers its join with answer; before sees the client before it
// connects (to listen to its events).
export async function connected(opts = {}, { answer = joinData, url = "ws://test/ws", before = () => {} } = {}) {
  reset();
  const c = new CascadeClient(opts);
  const states = [];
  c.on("state", (d) => states.push(d.state));
  before(c);
  const p = c.connect(url, "TOKEN");
  await tick();
  const ws = sockets[0];
  ws.accept();
  const join = await ws.next("join");
  ws.reply(join, answer);
  const data = await p;
  return { c, ws, states, data, join };
}

