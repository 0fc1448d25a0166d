// Unit tests of cascade.js's resume (PROTOCOL.md, "Resume") under Node (node --test), with the
// fakes of fakes.mjs. Run by TestClientResumeUnderNode.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CascadeClient, connected, joinData, reset, sleep, sockets, stream, tick, track } from "./fakes.mjs";

function remoteTrack(producer, participant, kind = "video") {
  const t = new EventTarget();
  t.id = producer;
  t.kind = kind;
  const s = new EventTarget();
  s.id = participant;
  return { track: t, streams: [s] };
}

// Connects with a join answer carrying a resume credential and nodes.
function connectedResumable(opts = {}, nodes = [{ id: "n2", url: "ws://n2/ws" }]) {
  return connected(opts, { answer: { ...joinData, resume: { token: "R1", expires: Date.now() + 300000 }, nodes }, url: "ws://lb/ws" });
}

test("a node that goes: resume on the join answer's nodes with the latest credential, same producer ids, same streams", async () => {
  const { c, ws, states } = await connectedResumable();
  ws.push({ method: "resumeToken", data: { token: "R2", expires: Date.now() + 300000 } });
  const audio = track("audio");
  const pub = c.publish(stream(audio));
  const mid = c.sendPC.transceivers[0].mid;
  ws.reply(await ws.next("publish"), { sdp: "a", producers: [{ id: "PRa", participant: "PA1", kind: "audio", mid }] });
  await pub;
  ws.push({ method: "offer", data: { sdp: "o1" } });
  ws.reply(await ws.next("answer"));
  const first = remoteTrack("PRb", "PB1");
  const got = [];
  c.on("track", (d) => got.push(d));
  c.recvPC.ontrack(first);
  assert.equal(got.length, 1);
  const { stream: videoStream, streams } = got[0];
  assert.deepEqual(videoStream.getTracks(), [first.track]);
  const ended = [];
  const replaced = [];
  const resumed = [];
  c.on("trackEnded", (d) => ended.push(d.producerId));
  c.on("trackReplaced", (d) => replaced.push(d));
  c.on("resumed", (d) => resumed.push(d));

  ws.drop(1006);
  assert.equal(c.state, "reconnecting");
  await tick();
  // at once, on the node the join answer named, with the latest credential
  assert.equal(sockets.length, 2);
  const ws2 = sockets[1];
  assert.equal(ws2.url, "ws://n2/ws");
  ws2.accept();
  const join = await ws2.next("join");
  assert.equal(join.data.resume, "R2");
  ws2.reply(join, { ...joinData, resumed: true, resume: { token: "R3", expires: Date.now() + 300000 } });
  const republish = await ws2.next("publish");
  const newMid = c.sendPC.transceivers[0].mid;
  assert.notEqual(newMid, mid, "a new send transport");
  assert.deepEqual(republish.data.producerIds, { [newMid]: "PRa" }, "the track keeps its producer id");
  ws2.reply(republish, { sdp: "a2", producers: [{ id: "PRa", participant: "PA1", kind: "audio", mid: newMid }] });
  await tick();
  assert.equal(resumed.length, 1);
  assert.equal(c.participant.id, "PA1");
  assert.equal(c.localProducers.get("PRa").track, audio);

  // the new receive transport's track goes into the same streams
  ws2.push({ method: "offer", data: { sdp: "o2" } });
  ws2.reply(await ws2.next("answer"));
  const second = remoteTrack("PRb", "PB1");
  c.recvPC.ontrack(second);
  assert.equal(got.length, 1, "no second track event");
  assert.equal(replaced.length, 1);
  assert.equal(replaced[0].stream, videoStream);
  assert.equal(replaced[0].previous, first.track);
  assert.deepEqual(videoStream.getTracks(), [second.track]);
  assert.deepEqual(streams[0].getTracks(), [second.track]);
  assert.deepEqual(ended, []);
  assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connected"]);
  // the old track ending now is not the producer's end
  first.track.dispatchEvent(new Event("ended"));
  assert.deepEqual(ended, []);
  await c.close();
});

test("a refused credential: a fresh join with the token on the same socket; tracks of gone producers end", async () => {
  const { c, ws } = await connectedResumable({}, []);
  ws.push({ method: "offer", data: { sdp: "o1" } });
  ws.reply(await ws.next("answer"));
  c.recvPC.ontrack(remoteTrack("PRb", "PB1"));
  const ended = [];
  c.on("trackEnded", (d) => ended.push(d.producerId));
  ws.drop(1006);
  await tick();
  // no nodes: back to the URL the application gave
  const ws2 = sockets[1];
  assert.equal(ws2.url, "ws://lb/ws");
  ws2.accept();
  const j1 = await ws2.next("join");
  assert.equal(j1.data.resume, "R1");
  ws2.fail(j1, "resume_refused", "used");
  const j2 = await ws2.next("join");
  assert.equal(j2.data.resume, undefined);
  assert.equal(j2.data.token, "TOKEN");
  ws2.reply(j2, { ...joinData, participant: { id: "PA2", identity: "alice" }, producers: [] });
  await tick();
  assert.equal(c.state, "connected");
  assert.equal(c.participant.id, "PA2");
  assert.deepEqual(ended, ["PRb"], "the producer is gone from the room: its track ends");
  await c.close();
});

test("a node that answers nothing for the ping deadline is gone", async () => {
  const { c, ws } = await connectedResumable({ pingInterval: 20, pingDeadline: 120 });
  await sleep(60);
  assert.ok(ws.sent.some((m) => m.method === "ping"), "pings are sent");
  assert.equal(c.state, "connected");
  await sleep(150);
  assert.equal(c.state, "reconnecting");
  assert.equal(ws.closedWith, undefined, "no close frame: the node would take it as a goodbye");
  assert.equal(sockets[1].url, "ws://n2/ws");
  await c.close();
});

test("a redirect to the node that went is not followed, and a redirect is not sticky", async () => {
  reset();
  const c = new CascadeClient();
  const p = c.connect("ws://lb/ws", "TOKEN");
  await tick();
  sockets[0].accept();
  sockets[0].reply(await sockets[0].next("join"), { room: "r", redirect: { node: "b", url: "ws://b/ws" } });
  await tick();
  sockets[1].accept();
  const j = await sockets[1].next("join");
  assert.equal(j.data.noRedirect, true);
  sockets[1].reply(j, joinData);
  await p;
  assert.equal(c.url, "ws://b/ws");
  sockets[1].drop(1006);
  await tick();
  assert.equal(sockets[2].url, "ws://lb/ws", "back to placement, not the dead node");
  sockets[2].accept();
  const j2 = await sockets[2].next("join");
  assert.equal(j2.data.noRedirect, undefined);
  sockets[2].reply(j2, { room: "r", redirect: { node: "b", url: "ws://b/ws" } });
  await tick();
  assert.equal(sockets[3].url, "ws://lb/ws", "placement still names the dead node: stay");
  sockets[3].accept();
  const j3 = await sockets[3].next("join");
  assert.equal(j3.data.noRedirect, true);
  sockets[3].reply(j3, joinData);
  await tick();
  assert.equal(c.state, "connected");
  assert.equal(c.url, "ws://lb/ws");
  assert.ok(!sockets.slice(2).some((s) => s.url === "ws://b/ws"));
  await c.close();
});

test("migrate: make-before-break, then leave on the old node", async () => {
  const { c, ws, states } = await connectedResumable();
  const resumed = [];
  c.on("resumed", (d) => resumed.push(d));
  ws.push({ method: "migrate", data: { node: "n3", url: "ws://n3/ws", reason: "drain", deadline: Date.now() + 30000 } });
  await tick();
  assert.equal(ws.readyState, 1, "the old session runs on");
  const ws2 = sockets[1];
  assert.equal(ws2.url, "ws://n3/ws");
  ws2.accept();
  const join = await ws2.next("join");
  assert.equal(join.data.resume, "R1");
  ws2.reply(join, { ...joinData, resumed: true, resume: { token: "R2", expires: Date.now() + 300000 } });
  await sleep(30);
  assert.equal(c.state, "connected");
  assert.deepEqual(resumed.map((r) => r.migrated), [true]);
  assert.ok(ws.sent.some((m) => m.method === "leave"), "leave on the old node");
  assert.equal(ws.closedWith, 1000);
  assert.deepEqual(states, ["connecting", "connected", "migrating", "connected"]);
  await c.close();
});
