// What the demo page's end-to-end tests read (web/*_e2e_test.go, window.cascadeApp.stats()):
// decoded video per received track with its codec and frame size, the selected candidate pairs of both
// transports, and the encodings of the page's camera sender (which layers dynacast paused).

async function selectedPairs(pc) {
  if (!pc) return [];
  const report = await pc.getStats();
  const pairs = [];
  report.forEach((s) => {
    if (s.type !== "candidate-pair" || s.state !== "succeeded" || !s.nominated) return;
    const local = report.get(s.localCandidateId) || {};
    const remote = report.get(s.remoteCandidateId) || {};
    pairs.push({
      local: local.address || local.ip || "",
      remote: remote.address || remote.ip || "",
      localType: local.candidateType || "",
      relayProtocol: local.relayProtocol || "",
    });
  });
  return pairs;
}

/** The stats of the demo page's client, as its end-to-end tests read them (window.cascadeApp.stats()). */
export async function pageStats(client) {
  const recv = client && client.recvPC;
  const send = client && client.sendPC;
  let framesDecoded = 0;
  const videoTracks = [];
  if (recv) {
    const report = await recv.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      framesDecoded += s.framesDecoded || 0;
      // The receive transport's track id is the producer id (PROTOCOL.md).
      const remote = client.remoteTracks.get(s.trackIdentifier);
      videoTracks.push({
        producerId: s.trackIdentifier || "",
        participantId: remote ? remote.participantId : "",
        framesDecoded: s.framesDecoded || 0,
        codec: (report.get(s.codecId) || {}).mimeType || "",
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
      });
    });
  }
  // The encodings of our camera's sender, and which of them run (dynacast pauses some).
  const sendEncodings = [];
  if (client) {
    for (const local of client.localProducers.values()) {
      if (local.kind !== "video") continue;
      for (const e of local.transceiver.sender.getParameters().encodings || []) {
        sendEncodings.push({ producerId: local.id, rid: e.rid || "", active: e.active !== false });
      }
    }
  }
  return {
    framesDecoded,
    videoTracks,
    sendEncodings,
    selectedPairs: await selectedPairs(recv),
    sendSelectedPairs: await selectedPairs(send),
    state: client ? client.state : "closed",
  };
}
