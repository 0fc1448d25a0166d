// Unit tests of cascade.js's media adaptation (PROTOCOL.md, "Simulcast, bandwidth and
// speakers") under Node (node --test), with the fakes of fakes.mjs: simulcast sendEncodings,
// setPreferredLayer (and after a resume), fitLayer with a fake ResizeObserver, layersWanted
// turning encodings off and on through setParameters, layerChanged and activeSpeakers. Run by
// TestClientLayersUnderNode.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CascadeClient, CascadeError, connected, joinData, sleep, sockets, stream, tick, track } from "./fakes.mjs";

// Publishes audio and video (simulcast as given) and answers with producers PRa and PRv.
async function published(opts = {}, publishOpts) {
  const got = await connected(opts, { answer: { ...joinData, resume: { token: "R1", expires: Date.now() + 300000 }, nodes: [{ id: "n2", url: "ws://n2/ws" }] } });
  const { c, ws } = got;
  const audio = track("audio");
  const video = { ...track("video"), id: "video-track" };
  const p = c.publish(stream(audio, video), publishOpts);
  const pub = await ws.next("publish");
  const [ta, tv] = c.sendPC.transceivers;
  ws.reply(pub, { sdp: "a", producers: [{ id: "PRa", participant: "PA1", kind: "audio", mid: ta.mid }, { id: "PRv", participant: "PA1", kind: "video", mid: tv.mid }] });
  await p;
  return { ...got, audio, video, ta, tv };
}

const ridsOf = (t) => (t.init.sendEncodings || []).map((e) => [e.rid, e.scaleResolutionDownBy, e.maxBitrate, e.active]);

test("simulcast publishes video with layers lowest first; audio has none", async () => {
  const two = await published({}, { simulcast: 2 });
  assert.deepEqual(ridsOf(two.tv), [["q", 2, 500000, true], ["h", 1, 1500000, true]]);
  assert.equal(two.ta.init.sendEncodings, undefined, "audio is not simulcast");
  assert.deepEqual(two.ta.init.streams.length, 1);
  await two.c.close();

  const three = await published({ simulcast: true });
  assert.deepEqual(ridsOf(three.tv), [["q", 4, 150000, true], ["h", 2, 500000, true], ["f", 1, 1500000, true]], "the constructor's default");
  await three.c.close();

  const off = await published({ simulcast: true }, { simulcast: false });
  assert.equal(off.tv.init.sendEncodings, undefined, "publish's option over the constructor's");
  await off.c.close();

  const own = await published({}, { simulcast: [{ rid: "lo", scaleResolutionDownBy: 3 }, { rid: "hi" }] });
  assert.deepEqual(own.tv.init.sendEncodings, [{ rid: "lo", scaleResolutionDownBy: 3 }, { rid: "hi" }]);
  await own.c.close();
});

test("the layers asked for are capped by the camera's size, as Chromium caps them", async () => {
  const cases = [
    [1280, 720, 3, [["q", 4], ["h", 2], ["f", 1]]],
    [960, 540, 3, [["q", 4], ["h", 2], ["f", 1]]],
    [640, 480, 3, [["q", 2], ["h", 1]]],
    [640, 360, 2, [["q", 2], ["h", 1]]],
    [320, 180, 3, []],
  ];
  for (const [width, height, layers, want] of cases) {
    const { c, ws } = await connected();
    const video = { ...track("video"), getSettings: () => ({ width, height }) };
    const p = c.publish(stream(video), { simulcast: layers });
    const pub = await ws.next("publish");
    const t = c.sendPC.transceivers[0];
    assert.deepEqual((t.init.sendEncodings || []).map((e) => [e.rid, e.scaleResolutionDownBy]), want, `${width}x${height}, ${layers} layers`);
    ws.reply(pub, { sdp: "a", producers: [] });
    await p;
    await c.close();
  }
  // Encodings of one's own are sent as given.
  const { c, ws } = await connected();
  const video = { ...track("video"), getSettings: () => ({ width: 320, height: 180 }) };
  const p = c.publish(stream(video), { simulcast: [{ rid: "a", scaleResolutionDownBy: 2 }, { rid: "b" }] });
  ws.reply(await ws.next("publish"), { sdp: "a", producers: [] });
  await p;
  assert.equal(c.sendPC.transceivers[0].init.sendEncodings.length, 2);
  await c.close();
});

test("videoCodec puts the browser's codecs of that type first, for video only, again after a resume", async () => {
  const codecs = { video: [{ mimeType: "video/VP8" }, { mimeType: "video/H264", sdpFmtpLine: "a" }, { mimeType: "video/H264", sdpFmtpLine: "b" }], audio: [{ mimeType: "audio/opus" }] };
  globalThis.RTCRtpSender = { getCapabilities: (kind) => ({ codecs: codecs[kind] }) };
  try {
    const { c, ws, ta, tv } = await published({ simulcast: 2 }, { videoCodec: "video/h264" });
    assert.deepEqual(tv.codecs.map((x) => x.mimeType + (x.sdpFmtpLine || "")), ["video/H264a", "video/H264b", "video/VP8"]);
    assert.equal(ta.codecs, null, "audio keeps the browser's order");
    ws.drop(1006);
    await tick();
    sockets[1].accept();
    sockets[1].reply(await sockets[1].next("join"), { ...joinData, resumed: true });
    await sockets[1].next("publish");
    const tv2 = c.sendPC.transceivers.find((t) => t.sender.track.kind === "video");
    assert.equal(tv2.codecs[0].mimeType, "video/H264");
    await c.close();
  } finally {
    delete globalThis.RTCRtpSender;
  }
});

test("a bad simulcast option throws before anything is published", async () => {
  const { c, ws } = await connected();
  for (const bad of [4, -1, 2.5, "3", [{ scaleResolutionDownBy: 2 }], [{ rid: "a" }, { rid: "b" }, { rid: "c" }, { rid: "d" }]]) {
    await assert.rejects(c.publish(stream(track("video")), { simulcast: bad }), (err) => err instanceof CascadeError && err.code === "bad_request", `simulcast ${JSON.stringify(bad)}`);
  }
  assert.equal(c.sendPC.transceivers.length, 0);
  assert.equal(ws.sent.filter((m) => m.method === "publish").length, 0);
  await c.close();
});

test("setPreferredLayer sends the limits given, and no limit clears the preference", async () => {
  const { c, ws } = await connected();
  const cases = [
    [{ layer: 0 }, { producer: "PRb", layer: 0 }],
    [{ maxWidth: 319.5, maxHeight: 180 }, { producer: "PRb", maxWidth: 320, maxHeight: 180 }],
    [{ layer: 1, maxWidth: 640 }, { producer: "PRb", layer: 1, maxWidth: 640 }],
    [{ layer: -1 }, { producer: "PRb" }],
    [undefined, { producer: "PRb" }],
  ];
  for (const [pref, want] of cases) {
    const p = c.setPreferredLayer("PRb", pref);
    const req = await ws.next("setPreferredLayer");
    assert.deepEqual(req.data, want, JSON.stringify(pref));
    ws.reply(req);
    await p;
    if (Object.keys(want).length > 1) assert.deepEqual(c.preferredLayers.get("PRb"), want);
    else assert.ok(!c.preferredLayers.has("PRb"), "no limit: nothing to remember");
  }
  for (const bad of [{ layer: 1.5 }, { layer: -2 }, { maxWidth: -3 }, { maxHeight: NaN }, { maxWidth: "320" }]) {
    await assert.rejects(c.setPreferredLayer("PRb", bad), (err) => err.code === "bad_request", JSON.stringify(bad));
  }
  // The server does not know the producer: the preference is forgotten.
  const p = c.setPreferredLayer("PRx", { layer: 0 });
  ws.fail(await ws.next("setPreferredLayer"), "not_found", "no such producer");
  await assert.rejects(p, (err) => err.code === "not_found");
  assert.ok(!c.preferredLayers.has("PRx"));
  await c.close();
});

test("preferences are sent again after a resume, before the subscriptions; a removed producer's are dropped", async () => {
  const { c, ws } = await connected({}, { answer: { ...joinData, producers: [...joinData.producers, { id: "PRc", participant: "PB1", kind: "video" }], resume: { token: "R1", expires: Date.now() + 300000 }, nodes: [{ id: "n2", url: "ws://n2/ws" }] } });
  for (const [id, pref] of [["PRb", { maxWidth: 320, maxHeight: 180 }], ["PRc", { layer: 0 }]]) {
    const p = c.setPreferredLayer(id, pref);
    ws.reply(await ws.next("setPreferredLayer"));
    await p;
  }
  ws.push({ method: "producerRemoved", data: { id: "PRc", participant: "PB1" } });
  assert.deepEqual([...c.preferredLayers.keys()], ["PRb"]);
  ws.drop(1006);
  await tick();
  const ws2 = sockets[1];
  ws2.accept();
  ws2.reply(await ws2.next("join"), { ...joinData, resumed: true });
  const again = await ws2.next("setPreferredLayer");
  assert.deepEqual(again.data, { producer: "PRb", maxWidth: 320, maxHeight: 180 });
  ws2.reply(again);
  assert.equal(ws2.sent.filter((m) => m.method === "setPreferredLayer").length, 1);
  await c.close();
  assert.equal(c.preferredLayers.size, 0, "close forgets them");
});

test("layersWanted pauses and resumes the encodings of the producer's sender", async () => {
  const { c, ws, tv } = await published({}, { simulcast: 3 });
  const events = [];
  c.on("layersWanted", (d) => events.push(d));
  ws.push({ method: "layersWanted", data: { producer: "PRv", layers: { q: true, h: true, f: false } } });
  ws.push({ method: "layersWanted", data: { producer: "PRv", layers: { q: true, h: false, f: false } } });
  for (let i = 0; i < 50 && tv.sender.calls.length < 2; i++) await sleep(5);
  const active = () => tv.sender.encodings.map((e) => [e.rid, e.active]);
  assert.deepEqual(active(), [["q", true], ["h", false], ["f", false]], "both applied, in order, without a stale transaction");
  assert.equal(tv.sender.calls.length, 2);
  assert.deepEqual(events, [{ producer: "PRv", layers: { q: true, h: true, f: false } }, { producer: "PRv", layers: { q: true, h: false, f: false } }]);

  // The same wish again changes nothing: no setParameters.
  ws.push({ method: "layersWanted", data: { producer: "PRv", layers: { q: true, h: false, f: false } } });
  await sleep(20);
  assert.equal(tv.sender.calls.length, 2);

  // Resumed on demand; an unknown rid is ignored.
  ws.push({ method: "layersWanted", data: { producer: "PRv", layers: { q: true, h: true, f: true, x: false } } });
  for (let i = 0; i < 50 && tv.sender.calls.length < 3; i++) await sleep(5);
  assert.deepEqual(active(), [["q", true], ["h", true], ["f", true]]);
  await c.close();
});

test("a layersWanted that comes before the publish answer applies once the producer is known", async () => {
  const { c, ws } = await connected();
  const p = c.publish(stream(track("video")), { simulcast: 2 });
  const pub = await ws.next("publish");
  ws.push({ method: "layersWanted", data: { producer: "PRv", layers: { q: true, h: false } } });
  ws.push({ method: "layersWanted", data: { producer: "PRgone", layers: { q: false } } });
  const tv = c.sendPC.transceivers[0];
  await sleep(10);
  assert.equal(tv.sender.calls.length, 0, "no producer mapped yet");
  ws.reply(pub, { sdp: "a", producers: [{ id: "PRv", participant: "PA1", kind: "video", mid: tv.mid }] });
  await p;
  for (let i = 0; i < 50 && tv.sender.calls.length < 1; i++) await sleep(5);
  assert.deepEqual(tv.sender.encodings.map((e) => e.active), [true, false]);
  assert.equal(c._layers._pending.size, 0, "one for a producer this client does not have is dropped");
  await c.close();
});

test("a resumed session republishes with the same simulcast encodings", async () => {
  const { c, ws, tv } = await published({}, { simulcast: 2 });
  ws.push({ method: "layersWanted", data: { producer: "PRv", layers: { q: true, h: false } } });
  for (let i = 0; i < 50 && tv.sender.calls.length < 1; i++) await sleep(5);
  ws.drop(1006);
  await tick();
  const ws2 = sockets[1];
  ws2.accept();
  ws2.reply(await ws2.next("join"), { ...joinData, resumed: true });
  const republish = await ws2.next("publish");
  const tv2 = c.sendPC.transceivers.find((t) => t.sender.track.kind === "video");
  assert.notEqual(tv2, tv);
  assert.deepEqual(ridsOf(tv2), [["q", 2, 500000, true], ["h", 1, 1500000, true]], "every layer runs again: the new node decides");
  assert.ok(republish.data.producerIds);
  await c.close();
});

test("layerChanged and activeSpeakers are events and room state", async () => {
  const { c, ws } = await connected();
  const got = [];
  c.on("layerChanged", (d) => got.push(["layer", d]));
  c.on("activeSpeakers", (d) => got.push(["speakers", d]));
  ws.push({ method: "layerChanged", data: { producer: "PRb", layer: 1, rid: "h" } });
  ws.push({ method: "activeSpeakers", data: { speakers: [{ participant: "PB1", producer: "PRba", level: 0.8 }, { participant: "PA1", producer: "PRa", level: 0.2 }] } });
  assert.deepEqual(c.receivedLayers.get("PRb"), { layer: 1, rid: "h" });
  assert.deepEqual(c.activeSpeakers.map((s) => s.participant), ["PB1", "PA1"]);
  ws.push({ method: "activeSpeakers", data: { speakers: [] } });
  assert.deepEqual(c.activeSpeakers, []);
  assert.deepEqual(got, [
    ["layer", { producer: "PRb", layer: 1, rid: "h" }],
    ["speakers", { speakers: [{ participant: "PB1", producer: "PRba", level: 0.8 }, { participant: "PA1", producer: "PRa", level: 0.2 }] }],
    ["speakers", { speakers: [] }],
  ]);
  ws.push({ method: "producerRemoved", data: { id: "PRb", participant: "PB1" } });
  assert.ok(!c.receivedLayers.has("PRb"));
  await c.close();
});

// A ResizeObserver whose sizes the test sets.
class FakeResizeObserver {
  static all = [];
  constructor(cb) {
    this.cb = cb;
    this.targets = [];
    FakeResizeObserver.all.push(this);
  }
  observe(el) {
    this.targets.push(el);
  }
  disconnect() {
    this.targets = [];
  }
  resize(width, height) {
    if (this.targets.length) this.cb([{ target: this.targets[0], contentRect: { width, height } }]);
  }
}

test("fitLayer sends the element's size in device pixels once it holds still, until stopped", async () => {
  globalThis.ResizeObserver = FakeResizeObserver;
  globalThis.devicePixelRatio = 2;
  try {
    const { c, ws } = await connected();
    const el = {};
    const stop = c.fitLayer("PRb", el, { layer: 1 });
    const ro = FakeResizeObserver.all.at(-1);
    assert.deepEqual(ro.targets, [el]);
    ro.resize(100, 50);
    ro.resize(160, 90); // within the debounce: only the last size goes
    const req = await ws.next("setPreferredLayer");
    assert.deepEqual(req.data, { producer: "PRb", layer: 1, maxWidth: 320, maxHeight: 180 });
    ws.reply(req);
    ro.resize(160, 90); // the same size: nothing sent
    ro.resize(0, 0); // hidden: the last size stays
    await sleep(300);
    assert.equal(ws.sent.filter((m) => m.method === "setPreferredLayer").length, 1);
    ro.resize(640, 360);
    const req2 = await ws.next("setPreferredLayer");
    assert.deepEqual(req2.data, { producer: "PRb", layer: 1, maxWidth: 1280, maxHeight: 720 });
    ws.reply(req2);
    stop();
    assert.deepEqual(ro.targets, [], "stopped");
    assert.deepEqual(c.preferredLayers.get("PRb"), { producer: "PRb", layer: 1, maxWidth: 1280, maxHeight: 720 }, "the last preference stays");
    await c.close();
  } finally {
    delete globalThis.ResizeObserver;
    delete globalThis.devicePixelRatio;
  }
});

test("fitLayer without ResizeObserver fails with unsupported", async () => {
  const { c } = await connected();
  assert.throws(() => c.fitLayer("PRb", {}), (err) => err instanceof CascadeError && err.code === "unsupported");
  await c.close();
});
