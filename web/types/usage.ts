// A program that uses the whole public API of cascade.js through cascade.d.ts. It is compiled
// (tsc --noEmit), never run: it proves that the declarations describe an API an application can
// use, with typed event payloads. The @ts-expect-error lines prove they are not `any`.

import DefaultClient, {
  CascadeClient,
  CascadeError,
  type CascadeEventMap,
  type CloseReason,
  type ConnectionState,
  type JoinResult,
  type LocalProducer,
  type Participant,
  type Producer,
  type RemoteTrack,
  type Layer,
  type LayerPreference,
  type Speaker,
} from "../static/cascade.js";

export async function app(token: string, refresh: () => Promise<string>, stream: MediaStream): Promise<void> {
  const client: CascadeClient = new CascadeClient({
    iceServers: [{ urls: "stun:stun.example.test:3478" }],
    iceTransportPolicy: "relay",
    requestTimeout: 5000,
    reconnect: true,
    pingInterval: 1000,
    pingDeadline: 3000,
  });
  const same: CascadeClient = new DefaultClient();
  const fromWindow: CascadeClient = new window.Cascade.CascadeClient();
  const err: CascadeError = new window.Cascade.CascadeError("timeout");
  void [same, fromWindow, err.code, err.serverMessage, CascadeClient.CascadeError];

  // Events, with on() and with addEventListener.
  const off: () => void = client.on("state", ({ state, previous }) => {
    const s: ConnectionState = state;
    void [s, previous];
  });
  off();
  client.on("joined", (d) => {
    const room: string = d.room;
    const again: boolean = d.reconnected;
    const meta: string | undefined = d.roomMetadata;
    const resumed: boolean = d.resumed;
    void [room, again, meta, resumed, d.participant.metadata, d.iceServers, d.redirect?.url, d.resume?.expires, d.nodes?.[0]?.url];
  });
  client.on("closed", ({ reason, code }) => {
    const r: CloseReason = reason;
    if (r === "removed" || r === "room_deleted" || r === "replaced") console.log("ended by the server", code);
  });
  client.on("participantJoined", (p: Participant) => console.log(p.identity, p.joinedAt, p.metadata ?? ""));
  client.on("participantLeft", ({ id }) => console.log(id));
  client.on("participantUpdated", (p) => console.log(p.id, p.metadata));
  client.on("roomUpdated", ({ metadata }) => console.log(metadata.length));
  client.on("producerAdded", (p: Producer) => console.log(p.kind, p.muted, p.origin, p.codec));
  client.on("producerRemoved", ({ id, participant }) => console.log(id, participant));
  client.on("producerMuted", ({ id, muted, byServer }) => {
    const local: LocalProducer | undefined = client.localProducers.get(id);
    if (local && byServer && muted) console.log("a moderator muted", local.kind, local.mutedByServer);
  });
  client.on("unmuteRequested", async ({ producer }) => {
    if (confirm("A moderator asks you to unmute. Unmute?")) await client.mute(producer, false);
  });
  client.on("message", ({ from, identity, data }) => console.log(from || "server", identity, data));
  client.on("track", ({ track, stream, streams, participantId, producerId, kind }) => {
    const video = document.createElement("video");
    video.srcObject = stream; // plays on across a resume: the client swaps the track inside it
    void [track.id, streams.length, participantId?.length, producerId, kind, video];
  });
  client.on("trackReplaced", ({ track, previous, stream, producerId }) => void [track.id, previous.id, stream.id, producerId]);
  client.on("resumed", ({ participant, url, migrated }) => console.log(participant?.id, url, migrated, client.url));
  client.on("producerMoved", ({ id, participant }) => console.log(id, participant));
  client.on("migrate", ({ node, url, reason, deadline }) => console.log(node, url, reason, deadline));
  client.on("trackEnded", ({ track, participantId, producerId }) => void [track, participantId, producerId]);
  client.on("data", ({ data, label }) => console.log(label, typeof data === "string" ? data : "binary"));
  client.on("transportState", ({ transport, state }) => console.log(transport, state));
  client.on("notification", ({ method, data }) => console.log(method, data));
  client.on("error", ({ error, context }) => console.warn(context, error instanceof CascadeError ? error.code : error.message));
  client.addEventListener("roomUpdated", (e) => console.log(e.detail.metadata));
  const onState = (e: CustomEvent<CascadeEventMap["state"]>) => console.log(e.detail.state);
  client.addEventListener("state", onState);
  client.removeEventListener("state", onState);
  client.addEventListener("some-other-event", (e: Event) => console.log(e.type));

  // Connect, publish, and the rest of the methods.
  const joined: JoinResult = await client.connect("/ws", token, { autoSubscribe: false, region: "eu" });
  await client.connect("wss://node.example.test/ws", refresh);
  await client.connect("/ws", () => "static-token", {});
  const producers: Producer[] = await client.publish(stream);
  for (const p of producers) await client.mute(p.id, true);
  await client.subscribe(joined.producers[0]?.id ?? "");
  await client.unsubscribe("PR1");
  await client.unpublish(producers[0]?.id ?? "");

  // Simulcast, preferred layers, dynacast and speakers.
  const simulcastClient = new CascadeClient({ simulcast: 2 });
  await simulcastClient.publish(stream, { simulcast: true, videoCodec: "video/H264" });
  await client.publish(stream, { simulcast: [{ rid: "q", scaleResolutionDownBy: 2 }, { rid: "h" }] });
  const layers: Layer[] = producers[0]?.layers ?? [];
  const pref: LayerPreference = { maxWidth: 320, maxHeight: 180 };
  await client.setPreferredLayer("PR1", pref);
  await client.setPreferredLayer("PR1", { layer: 0 });
  await client.setPreferredLayer("PR1");
  const stopFit: () => void = client.fitLayer("PR1", document.createElement("video"), { layer: 1 });
  stopFit();
  client.on("layerChanged", ({ producer, layer, rid }) => console.log(producer, layer.toFixed(), rid));
  client.on("layersWanted", ({ producer, layers }) => console.log(producer, layers["f"] === false));
  client.on("activeSpeakers", ({ speakers }) => {
    const loudest: Speaker | undefined = speakers[0];
    console.log(loudest?.participant, loudest?.producer, loudest?.level.toFixed(2));
  });
  const speaking: Speaker[] = client.activeSpeakers;
  const received: { layer: number; rid: string } | undefined = client.receivedLayers.get("PR1");
  const preferred: LayerPreference | undefined = client.preferredLayers.get("PR1");
  void [layers.map((l) => [l.rid, l.width, l.height, l.bitrate, l.active]), speaking, received, preferred];
  await client.sendMessage({ text: "hello" });
  await client.sendData("ping");
  const custom: { sdp: string } = await client.request<{ sdp: string }>("publish", { sdp: "v=0" }, 2000);
  const anyReply = await client.request("subscribe");
  void [custom.sdp, anyReply["x"]];
  await client.close();

  // State.
  const state: ConnectionState = client.state;
  const reason: CloseReason | null = client.closeReason;
  const self: Participant | null = client.participant;
  const room: string | null = client.room;
  const roomMetadata: string = client.roomMetadata;
  const others: Map<string, Participant> = client.participants;
  const all: Map<string, Producer> = client.producers;
  const remote: RemoteTrack | undefined = client.remoteTracks.get("PR1");
  remote?.end();
  const pcs: (RTCPeerConnection | null)[] = [client.sendPC, client.recvPC];
  const dc: RTCDataChannel | null = client.dataChannel;
  const timeout: number = client.options.requestTimeout;
  void [state, reason, self, room, roomMetadata, others, all, pcs, dc, timeout];

  // The declarations are strict.
  // @ts-expect-error roomUpdated carries a string
  client.on("roomUpdated", ({ metadata }) => metadata.toFixed());
  // @ts-expect-error there is no such event in the map for on()
  client.on("participantRenamed", () => {});
  // @ts-expect-error mute needs the muted flag
  await client.mute("PR1");
  // @ts-expect-error byServer is a boolean
  client.on("producerMuted", ({ byServer }) => byServer.length);
  // @ts-expect-error a token is a string or a function
  await client.connect("/ws", 42);
  // @ts-expect-error unknown option
  new CascadeClient({ reconect: false });
  // @ts-expect-error at most 3 layers
  await client.publish(stream, { simulcast: 4 });
  // @ts-expect-error a layer is a number
  await client.setPreferredLayer("PR1", { layer: "f" });
}
