// Unit tests of static/cascade.js under Node (node --test), with the fake WebSocket,
// RTCPeerConnection and MediaStream of fakes.mjs. Run by TestClientLibraryUnderNode (web_test.go)
// when node is installed; the resume's tests are resume.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CascadeClient, CascadeError, FakeDataChannel, connected, joinData, reset, sleep, sockets, stream, tick, track } from "./fakes.mjs";

// ---- tests ---------------------------------------------------------------------------------

test("connect joins with the token and fills the room state", async () => {
  const { c, states, data, join } = await connected();
  assert.deepEqual(join.data, { token: "TOKEN", autoSubscribe: true });
  assert.equal(typeof join.id, "number");
  assert.equal(data.room, "r");
  assert.deepEqual(states, ["connecting", "connected"]);
  assert.equal(c.participant.id, "PA1");
  assert.deepEqual([...c.participants.keys()], ["PB1"], "self is not among the others");
  assert.ok(c.producers.has("PRb"));
  await c.close();
});

test("connect turns http URLs into ws URLs and passes autoSubscribe", async () => {
  reset();
  const c = new CascadeClient();
  const p = c.connect("https://example.test/ws", "T", { autoSubscribe: false });
  await tick();
  assert.equal(sockets[0].url, "wss://example.test/ws");
  sockets[0].accept();
  const join = await sockets[0].next("join");
  assert.equal(join.data.autoSubscribe, false);
  sockets[0].fail(join, "unauthorized", "bad signature");
  await assert.rejects(p, (err) => err instanceof CascadeError && err.code === "unauthorized");
  assert.equal(c.state, "closed");
});

test("a placement redirect is followed once, with noRedirect and the region", async () => {
  reset();
  const c = new CascadeClient();
  const p = c.connect("ws://eu.example.test/ws", "T", { region: "us" });
  await tick();
  sockets[0].accept();
  const first = await sockets[0].next("join");
  assert.equal(first.data.region, "us");
  sockets[0].reply(first, { room: "r", redirect: { node: "n1", url: "ws://us.example.test/ws" } });
  await tick();
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1].url, "ws://us.example.test/ws");
  assert.ok(sockets[0].readyState === 3, "the first socket is closed");
  sockets[1].accept();
  const second = await sockets[1].next("join");
  assert.equal(second.data.noRedirect, true);
  sockets[1].reply(second, { participant: { id: "PA1", identity: "me" }, room: "r", participants: [], producers: [] });
  const data = await p;
  assert.equal(data.participant.id, "PA1");
  assert.equal(c.state, "connected");
  await c.close();
});

test("responses are matched by id, in any order; errors carry the code", async () => {
  const { c, ws } = await connected();
  const a = c.request("subscribe", { producer: "x" });
  const b = c.request("unsubscribe", { producer: "y" });
  const ra = await ws.next("subscribe");
  const rb = await ws.next("unsubscribe");
  assert.notEqual(ra.id, rb.id);
  ws.fail(rb, "not_found", "no such producer");
  ws.reply(ra, { fine: 1 });
  assert.deepEqual(await a, { fine: 1 });
  await assert.rejects(b, (err) => err.code === "not_found" && /no such producer/.test(err.message));
  await c.close();
});

test("a request without an answer times out", async () => {
  const { c } = await connected({ requestTimeout: 30 });
  await assert.rejects(c.request("subscribe", { producer: "x" }), (err) => err.code === "timeout");
  await c.close();
});

test("a frame over 64 KiB is refused locally", async () => {
  const { c, ws } = await connected();
  await assert.rejects(c.sendMessage("x".repeat(70000)), (err) => err.code === "too_big");
  assert.equal(ws.readyState, 1);
  await c.close();
});

test("notifications become events", async () => {
  const { c, ws } = await connected();
  const seen = [];
  for (const type of ["participantJoined", "participantLeft", "producerAdded", "producerRemoved", "producerMuted", "message"]) {
    c.on(type, (d) => seen.push([type, d]));
  }
  ws.push({ method: "participantJoined", data: { id: "PC1", identity: "carol" } });
  ws.push({ method: "producerAdded", data: { id: "PRc", participant: "PC1", kind: "audio", muted: false } });
  ws.push({ method: "producerMuted", data: { id: "PRc", muted: true } });
  ws.push({ method: "message", data: { from: "PC1", identity: "carol", data: { text: "hi" } } });
  ws.push({ method: "producerRemoved", data: { id: "PRc", participant: "PC1" } });
  ws.push({ method: "participantLeft", data: { id: "PC1" } });
  assert.deepEqual(seen.map((s) => s[0]), ["participantJoined", "producerAdded", "producerMuted", "message", "producerRemoved", "participantLeft"]);
  assert.equal(seen[3][1].data.text, "hi");
  assert.ok(!c.participants.has("PC1"));
  assert.ok(!c.producers.has("PRc"));
  await c.close();
});

test("publish offers sendonly tracks and a data channel, then trickles", async () => {
  const { c, ws } = await connected();
  const audio = track("audio");
  const video = track("video");
  const p = c.publish(stream(audio, video));
  const pub = await ws.next("publish");
  const pc = c.sendPC;
  assert.equal(pub.data.sdp, "offer-1");
  assert.deepEqual(pc.transceivers.map((t) => t.direction), ["sendonly", "sendonly"]);
  assert.deepEqual(pc.channels.map((d) => d.label), ["data"]);
  await sleep(10);
  assert.equal(ws.sent.filter((m) => m.method === "trickle").length, 0, "no trickle before the transport exists");
  ws.reply(pub, { sdp: "answer-1", producers: [{ id: "PRv", participant: "PA1", kind: "video" }, { id: "PRa", participant: "PA1", kind: "audio" }] });
  const producers = await p;
  assert.equal(producers.length, 2);
  assert.deepEqual(pc.log, ["local:offer", "remote:answer:answer-1"]);
  const t1 = await ws.next("trickle");
  const t2 = await ws.next("trickle");
  assert.equal(t1.data.transport, "send");
  assert.match(t1.data.candidate.candidate, /^candidate:/);
  assert.equal(t2.data.candidate.candidate, "", "end of candidates");
  assert.equal(c.localProducers.get("PRa").track, audio);
  assert.equal(c.localProducers.get("PRv").track, video);

  // mute toggles the track and tells the server
  const m = c.mute("PRa", true);
  const req = await ws.next("mute");
  assert.deepEqual(req.data, { producer: "PRa", muted: true });
  assert.equal(audio.enabled, false);
  ws.reply(req);
  await m;

  // a remote candidate for the send transport goes to the send PC
  ws.push({ method: "trickle", data: { transport: "send", candidate: { candidate: "candidate:9 1 udp 1 127.0.0.1 6000 typ host", sdpMid: "0", sdpMLineIndex: 0 } } });
  assert.equal(pc.candidates.length, 1);
  await c.close();
});

test("publish failure rolls the offer back", async () => {
  const { c, ws } = await connected();
  const p = c.publish(stream(track("video")));
  ws.fail(await ws.next("publish"), "bad_sdp", "no codec");
  await assert.rejects(p, (err) => err.code === "bad_sdp");
  assert.deepEqual(c.sendPC.log, ["local:offer", "local:rollback"]);
  await c.close();
});

test("offers are answered one at a time, remote candidates wait for the offer", async () => {
  const { c, ws } = await connected();
  const tracks = [];
  c.on("track", (d) => tracks.push(d));
  ws.push({ method: "trickle", data: { transport: "recv", candidate: { candidate: "candidate:7 1 udp 1 127.0.0.1 7000 typ host", sdpMid: "0", sdpMLineIndex: 0 } } });
  ws.push({ method: "offer", data: { sdp: "o1" } });
  ws.push({ method: "offer", data: { sdp: "o2" } });
  const a1 = await ws.next("answer");
  assert.equal(a1.data.sdp, "answer-to-o1");
  const pc = c.recvPC;
  assert.equal(pc.candidates.length, 1, "queued candidate added after the offer");
  await sleep(10);
  assert.deepEqual(pc.log, ["remote:offer:o1", "local:answer"], "o2 waits for the answer to o1");
  assert.equal(ws.sent.filter((m) => m.method === "trickle").length, 0, "recv candidates wait for the answer's response");
  ws.reply(a1);
  const a2 = await ws.next("answer");
  assert.equal(a2.data.sdp, "answer-to-o2");
  ws.reply(a2);
  const t = await ws.next("trickle");
  assert.equal(t.data.transport, "recv");

  // ontrack: stream id = participant, track id = producer
  const remote = new EventTarget();
  remote.id = "PRb";
  remote.kind = "video";
  const ms = new EventTarget();
  ms.id = "PB1";
  pc.ontrack({ track: remote, streams: [ms] });
  assert.deepEqual(tracks.map((d) => [d.participantId, d.producerId, d.kind]), [["PB1", "PRb", "video"]]);
  const ended = [];
  c.on("trackEnded", (d) => ended.push(d.producerId));
  ws.push({ method: "producerRemoved", data: { id: "PRb", participant: "PB1" } });
  remote.dispatchEvent(new Event("ended"));
  assert.deepEqual(ended, ["PRb"], "trackEnded once");

  // the server's data channel
  const data = [];
  c.on("data", (d) => data.push([d.label, d.data]));
  const ch = new FakeDataChannel("cascade");
  pc.ondatachannel({ channel: ch });
  ch.onmessage({ data: "hello" });
  assert.deepEqual(data, [["cascade", "hello"]]);
  await c.close();
});

test("sendData negotiates a data-only send transport when nothing was published", async () => {
  const { c, ws } = await connected();
  const sent = c.sendData("ping");
  const pub = await ws.next("publish");
  assert.equal(c.sendPC.transceivers.length, 0);
  ws.reply(pub, { sdp: "a", producers: [] });
  await tick();
  c.dataChannel.open();
  await sent;
  assert.deepEqual(c.dataChannel.sent, ["ping"]);
  await c.sendData("again");
  assert.deepEqual(c.dataChannel.sent, ["ping", "again"]);
  await c.close();
});

test("an unexpected close reconnects with backoff, rejoins and republishes", async () => {
  const { c, ws, states } = await connected();
  const audio = track("audio");
  const p = c.publish(stream(audio));
  ws.reply(await ws.next("publish"), { sdp: "a", producers: [{ id: "PRa", participant: "PA1", kind: "audio" }] });
  await p;
  const oldSend = c.sendPC;
  ws.push({ method: "offer", data: { sdp: "o1" } });
  ws.reply(await ws.next("answer"));
  const oldRecv = c.recvPC;
  audio.enabled = false; // muted before the drop

  const started = Date.now();
  ws.drop(1006);
  assert.equal(c.state, "reconnecting");
  assert.ok(!oldSend.closed && !oldRecv.closed, "the old peer connections stay until the resumed session's media flows");
  assert.equal(c.sendPC, null);

  // The first attempt goes at once (PROTOCOL.md, "Resume") and fails to open: the socket
  // closes before it opens. Then jittered backoff: 500 ms +-50%, then 1 s +-50%.
  while (sockets.length < 2) await sleep(5);
  const first = Date.now() - started;
  assert.ok(first < 200, `first retry after ${first} ms`);
  sockets[1].drop(1006);
  while (sockets.length < 3) await sleep(20);
  const second = Date.now() - started - first;
  assert.ok(second >= 230 && second < 1000, `second retry after ${second} ms`);
  sockets[2].drop(1006);
  while (sockets.length < 4) await sleep(20);
  const third = Date.now() - started - first - second;
  assert.ok(third >= 480 && third < 1700, `third retry after ${third} ms`);

  const ws3 = sockets[3];
  ws3.accept();
  const join = await ws3.next("join");
  assert.equal(join.data.token, "TOKEN");
  const joinedEvents = [];
  c.on("joined", (d) => joinedEvents.push(d));
  ws3.reply(join, { ...joinData, participant: { id: "PA2", identity: "alice" }, participants: [{ id: "PA2", identity: "alice" }] });
  const pub = await ws3.next("publish");
  assert.notEqual(c.sendPC, oldSend, "a new send transport");
  assert.deepEqual(c.sendPC.transceivers.map((t) => t.sender.track), [audio], "the same track again");
  ws3.reply(pub, { sdp: "a2", producers: [{ id: "PRa2", participant: "PA2", kind: "audio" }] });
  const mute = await ws3.next("mute");
  assert.deepEqual(mute.data, { producer: "PRa2", muted: true }, "mute state restored");
  ws3.reply(mute);
  assert.equal(c.state, "connected");
  assert.equal(joinedEvents.length, 1);
  assert.equal(joinedEvents[0].reconnected, true);
  assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connected"]);
  c.sendPC.connectionState = "connected"; // the new send transport is up: the old ones go
  for (let i = 0; i < 50 && !(oldSend.closed && oldRecv.closed); i++) await sleep(20);
  assert.ok(oldSend.closed && oldRecv.closed, "the old peer connections close once the new ones run");
  await c.close();
});

test("a token function is called for every join", async () => {
  reset();
  let calls = 0;
  const c = new CascadeClient();
  const p = c.connect("ws://test/ws", async () => `T${++calls}`);
  await tick();
  sockets[0].accept();
  const j1 = await sockets[0].next("join");
  assert.equal(j1.data.token, "T1");
  sockets[0].reply(j1, joinData);
  await p;
  sockets[0].drop();
  while (sockets.length < 2) await sleep(20);
  sockets[1].accept();
  const j2 = await sockets[1].next("join");
  assert.equal(j2.data.token, "T2");
  sockets[1].reply(j2, joinData);
  while (c.state !== "connected") await sleep(10);
  await c.close();
});

test("a fatal join error while reconnecting closes the client", async () => {
  const { c, ws } = await connected();
  ws.drop(1006);
  while (sockets.length < 2) await sleep(20);
  sockets[1].accept();
  sockets[1].fail(await sockets[1].next("join"), "token_expired", "exp passed");
  while (c.state !== "closed") await sleep(10);
  await sleep(700);
  assert.equal(sockets.length, 2, "no further attempt");
});

test("close sends leave and does not reconnect", async () => {
  const { c, ws, states } = await connected();
  const closing = c.close();
  const leave = await ws.next("leave");
  ws.reply(leave);
  await closing;
  assert.equal(ws.readyState, 3);
  assert.equal(c.state, "closed");
  await sleep(700);
  assert.equal(sockets.length, 1);
  assert.deepEqual(states, ["connecting", "connected", "closed"]);
  await assert.rejects(c.sendMessage("x"), (err) => err.code === "disconnected");
});

test("window.Cascade is the client class", async () => {
  globalThis.window = globalThis;
  const mod = await import("../static/cascade.js?again");
  assert.equal(globalThis.Cascade, mod.CascadeClient);
  assert.equal(globalThis.Cascade.CascadeClient, mod.CascadeClient);
  delete globalThis.window;
});
