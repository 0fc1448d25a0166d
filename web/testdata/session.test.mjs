// Unit tests of static/cascade.js under Node (node --test): the room API's notifications
// (metadata, server mute, unmute requests) and the end of a session by the server (close codes).
// Run by TestClientSessionUnderNode (node_test.go), with the fakes of fakes.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";

import { sockets, CascadeClient, CascadeError, sleep, connected as connectAs } from "./fakes.mjs";

const joinData = {
  participant: { id: "PA1", identity: "alice", joinedAt: 1, metadata: "{\"role\":\"host\"}" },
  room: "r",
  roomMetadata: "weekly sync",
  participants: [
    { id: "PA1", identity: "alice", joinedAt: 1, metadata: "{\"role\":\"host\"}" },
    { id: "PB1", identity: "bob", joinedAt: 2, metadata: "guest" },
  ],
  producers: [{ id: "PRb", participant: "PB1", kind: "video", muted: false }],
};

// Connects with this file's join answer, recording the client's events.
async function connected(opts = {}) {
  const events = [];
  const before = (c) => {
    for (const type of ["state", "closed", "error", "participantUpdated", "roomUpdated", "producerMuted", "unmuteRequested", "message"]) {
      c.on(type, (d) => events.push([type, d]));
    }
  };
  const { c, ws } = await connectAs(opts, { answer: joinData, before });
  return { c, ws, events, of: (type) => events.filter((e) => e[0] === type).map((e) => e[1]) };
}

// A client that published one audio track as producer PRa.
async function publishing() {
  const env = await connected();
  const audio = { id: "audio-track", kind: "audio", enabled: true, readyState: "live" };
  const p = env.c.publish({ id: "s", getTracks: () => [audio] });
  env.ws.reply(await env.ws.next("publish"), { sdp: "answer", producers: [{ id: "PRa", participant: "PA1", kind: "audio", mid: "0" }] });
  await p;
  return { ...env, audio };
}

test("the join response's metadata fills the room state", async () => {
  const { c } = await connected();
  assert.equal(c.roomMetadata, "weekly sync");
  assert.equal(c.participant.metadata, "{\"role\":\"host\"}");
  assert.equal(c.participants.get("PB1").metadata, "guest");
  await c.close();
  assert.equal(c.roomMetadata, "");
});

test("participantUpdated and roomUpdated update the state and become events", async () => {
  const { c, ws, of } = await connected();
  ws.push({ method: "participantUpdated", data: { id: "PB1", identity: "bob", joinedAt: 2, metadata: "speaker" } });
  ws.push({ method: "participantUpdated", data: { id: "PA1", identity: "alice", joinedAt: 1, metadata: "moderator" } });
  ws.push({ method: "roomUpdated", data: { metadata: "now live" } });
  assert.equal(c.participants.get("PB1").metadata, "speaker");
  assert.equal(c.participant.metadata, "moderator", "this client's own metadata");
  assert.ok(!c.participants.has("PA1"), "self is not among the others");
  assert.equal(c.roomMetadata, "now live");
  assert.deepEqual(of("participantUpdated").map((p) => [p.id, p.metadata]), [["PB1", "speaker"], ["PA1", "moderator"]]);
  assert.deepEqual(of("roomUpdated"), [{ metadata: "now live" }]);
  ws.push({ method: "roomUpdated", data: {} });
  assert.equal(c.roomMetadata, "", "metadata cleared");
  await c.close();
});

test("a server message (from the room API) is a message with an empty sender", async () => {
  const { c, ws, of } = await connected();
  ws.push({ method: "message", data: { from: "", identity: "", data: { notice: "closing in 5 min" } } });
  assert.deepEqual(of("message"), [{ from: "", identity: "", data: { notice: "closing in 5 min" } }]);
  await c.close();
});

test("a moderator's mute locks the local track until an unmute request", async () => {
  const { c, ws, audio, of } = await publishing();
  ws.push({ method: "producerMuted", data: { id: "PRa", muted: true, byServer: true } });
  assert.deepEqual(of("producerMuted"), [{ id: "PRa", muted: true, byServer: true }]);
  assert.equal(audio.enabled, false, "the track is disabled");
  assert.equal(c.localProducers.get("PRa").mutedByServer, true);
  assert.equal(c.localProducers.get("PRa").muted, true);

  // The client's own unmute is refused while locked; the track stays disabled.
  const refused = c.mute("PRa", false);
  const req = await ws.next("mute");
  assert.deepEqual(req.data, { producer: "PRa", muted: false });
  assert.equal(audio.enabled, false, "not enabled before the server agrees");
  ws.fail(req, "forbidden", "muted by a moderator");
  await assert.rejects(refused, (err) => err instanceof CascadeError && err.code === "forbidden");
  assert.equal(audio.enabled, false);
  assert.equal(c.localProducers.get("PRa").mutedByServer, true);

  // The moderator asks for an unmute: an event; the app accepts with mute(id, false).
  ws.push({ method: "unmuteRequested", data: { producer: "PRa" } });
  assert.deepEqual(of("unmuteRequested"), [{ producer: "PRa" }]);
  assert.equal(c.localProducers.get("PRa").mutedByServer, false);
  assert.equal(audio.enabled, false, "an unmute request does not unmute by itself");
  const accepted = c.mute("PRa", false);
  ws.reply(await ws.next("mute"));
  await accepted;
  assert.equal(audio.enabled, true);
  assert.equal(c.localProducers.get("PRa").muted, false);

  // A producerMuted without byServer (another client's own mute) reports byServer false.
  ws.push({ method: "producerMuted", data: { id: "PRb", muted: true } });
  assert.deepEqual(of("producerMuted")[1], { id: "PRb", muted: true, byServer: false });
  assert.equal(c.producers.get("PRb").muted, true);
  await c.close();
});

test("a refused mute restores the track", async () => {
  const { c, ws, audio } = await publishing();
  const m = c.mute("PRa", true);
  assert.equal(audio.enabled, false, "a mute disables the track at once");
  ws.fail(await ws.next("mute"), "internal", "boom");
  await assert.rejects(m, (err) => err.code === "internal");
  assert.equal(audio.enabled, true);
  assert.equal(c.localProducers.get("PRa").muted, false);
  await c.close();
});

for (const [name, code, reason, notified] of [
  ["removed by the room API", 4003, "removed", "removed"],
  ["the room deleted", 4004, "room_deleted", "room_deleted"],
  ["replaced by a newer session", 4001, "replaced", "replaced"],
  ["replaced, the notification in prose", 4001, "replaced", "replaced by a newer session of the same identity"],
  ["the room deleted, the notification lost", 4004, "room_deleted", null],
  ["removed, the notification lost", 4003, "removed", null],
  ["a closed notification, then a plain close", 1000, "maintenance", "maintenance"],
]) {
  test(`${name}: a closed event with the reason, and no reconnection`, async () => {
    const { c, ws, events, of } = await publishing();
    if (notified) ws.push({ method: "closed", data: { reason: notified } });
    ws.drop(code, reason);
    assert.deepEqual(of("closed"), [{ reason, code }]);
    assert.equal(c.state, "closed");
    assert.equal(c.closeReason, reason);
    assert.equal(c.sendPC, null, "the transports are torn down");
    assert.equal(c.participants.size, 0);
    const closedAt = events.findIndex((e) => e[0] === "closed");
    const stateAt = events.findIndex((e) => e[0] === "state" && e[1].state === "closed");
    assert.ok(closedAt >= 0 && closedAt < stateAt, "closed comes before the state change");
    assert.equal(of("error").length, 0, "not an error");
    await sleep(800);
    assert.equal(sockets.length, 1, "no reconnection");
    await assert.rejects(c.sendMessage("x"), (err) => err.code === "disconnected");
  });
}

for (const [code, errCode] of [[4029, "flood"], [4002, "slow_client"], [4008, "join_deadline"]]) {
  test(`close ${code} is an error ${errCode}, then the client reconnects`, async () => {
    const { c, ws, of } = await connected();
    ws.drop(code, "the server's words");
    const errs = of("error");
    assert.equal(errs.length, 1);
    assert.equal(errs[0].context, "connection");
    assert.equal(errs[0].error.code, errCode);
    assert.match(errs[0].error.message, /the server's words/);
    assert.equal(of("closed").length, 0);
    assert.equal(c.state, "reconnecting");
    while (sockets.length < 2) await sleep(20);
    sockets[1].accept();
    sockets[1].reply(await sockets[1].next("join"), joinData);
    while (c.state !== "connected") await sleep(10);
    await c.close();
  });
}

test("a join that misses the deadline fails with join_deadline", async () => {
  sockets.length = 0;
  const c = new CascadeClient();
  const p = c.connect("ws://test/ws", "TOKEN");
  await sleep(5);
  sockets[0].accept();
  await sockets[0].next("join");
  sockets[0].drop(4008, "join deadline: no join within 10s");
  await assert.rejects(p, (err) => err.code === "join_deadline" && /no join within/.test(err.message));
  assert.equal(c.state, "closed");
});

test("without reconnect, a drop ends the session with reason disconnected", async () => {
  const { c, ws, of } = await connected({ reconnect: false });
  ws.drop(1006);
  assert.deepEqual(of("closed"), [{ reason: "disconnected", code: 1006 }]);
  assert.equal(c.state, "closed");
});

test("a fatal join error while reconnecting ends the session with that code", async () => {
  const { c, ws, of } = await connected();
  ws.drop(1006);
  while (sockets.length < 2) await sleep(20);
  sockets[1].accept();
  sockets[1].fail(await sockets[1].next("join"), "token_expired", "exp passed");
  while (c.state !== "closed") await sleep(10);
  assert.deepEqual(of("closed"), [{ reason: "token_expired", code: 0 }]);
  assert.equal(c.closeReason, "token_expired");
});

test("connect after a server close starts afresh", async () => {
  const { c, ws } = await connected();
  ws.push({ method: "closed", data: { reason: "removed" } });
  ws.drop(4003);
  assert.equal(c.closeReason, "removed");
  const p = c.connect("ws://test/ws", "TOKEN");
  await sleep(5);
  sockets[1].accept();
  sockets[1].reply(await sockets[1].next("join"), joinData);
  await p;
  assert.equal(c.closeReason, null);
  assert.equal(c.state, "connected");
  sockets[1].drop(1006);
  assert.equal(c.state, "reconnecting", "a later drop reconnects again");
  await c.close();
});
