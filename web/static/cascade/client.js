// The media half of the Cascade browser client: the send transport (publish, mute, the data
// channel) and the receive transport (offers from the server, remote tracks), on top of the room
// state of room.js and the signaling of signaling.js.

import { Room } from "./room.js";
import { STALE_TRACK_MS, CascadeError, preferCodec, sdpOf, transceiverKind } from "./util.js";
import { RemoteTracks } from "./tracks.js";
import { Layers, transceiverInit } from "./layers.js";

export class CascadeClient extends Room {
  /**
   * @param {object} [options]
   * @param {RTCIceServer[]} [options.iceServers] STUN/TURN servers for both peer connections, besides
   *   the node's own TURN servers, which the join response hands out with fresh credentials
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy] "all" (default: direct paths
   *   first, TURN when they fail) or "relay" (TURN only)
   * @param {number} [options.requestTimeout] ms before a request fails with code "timeout" (10000)
   * @param {boolean} [options.reconnect] reconnect when the WebSocket drops (true)
   * @param {boolean|number|RTCRtpEncodingParameters[]} [options.simulcast] publish's default for
   *   video: false (one encoding), true (3 layers), 2 or 3 layers, or the encodings themselves
   */
  constructor(options = {}) {
    super({ simulcast: false, ...options });
    /** The node's TURN servers from the last join response (PROTOCOL.md, iceServers). */
    this._nodeIceServers = [];
    /**
     * This client's producers: id -> {id, kind, track, transceiver, muted, mutedByServer, producer}.
     * mutedByServer: a moderator muted it and has not asked for an unmute yet.
     */
    this.localProducers = new Map();
    /**
     * Received tracks: producer id -> {track, stream, streams, participantId, producerId, kind}.
     * stream (the producer's) and streams (the participant's) are the same MediaStream objects
     * for as long as the producer lives: a resume swaps the new track into them.
     */
    this._remote = new RemoteTracks((type, detail) => this._emit(type, detail));
    this.remoteTracks = this._remote.byProducer;
    this.sendPC = null;
    this.recvPC = null;
    /** The send transport's data channel ("data"). */
    this.dataChannel = null;

    this._published = []; // [{track, stream}]: what to publish again after a reconnection
    this._wantData = false;
    this._gen = 0; // bumped whenever the peer connections are torn down
    this._oldPCs = []; // a migration's old peer connections: media flows on them until the new ones run
    this._resumeProducers = []; // [{id, track}]: this client's producers before the node went
    this._subscribed = new Set(); // producers subscribe() asked for: asked again after a resume
    this._layers = new Layers(this);
    /**
     * The preferences this client sent with setPreferredLayer (those with a limit), by producer
     * id: sent again after a resume.
     */
    this.preferredLayers = this._layers.prefs;
    this._staleTimer = null;
    this._resetTransportState();
  }

  /**
   * Publishes the stream's tracks on the send transport (one sendonly transceiver each, plus the
   * data channel "data"). Calling it again with new tracks renegotiates. Resolves with the
   * producers of the send transport.
   *
   * options.simulcast (default: the constructor's): video tracks are sent as simulcast layers
   * (PROTOCOL.md, "Simulcast"): true for 3 layers, 2 or 3, or sendEncodings of your own (each
   * with a rid, lowest quality first). The layers are rids "q", "h", "f", downscaled 4, 2, 1
   * (2 layers: "q" at half size, "h" full). A count is capped by the camera's size, as
   * Chromium caps it (at most 2 layers below 960x540, none below 480x270), so that the top layer
   * is the full image. The server pauses layers nobody receives (`layersWanted`), by itself.
   *
   * options.videoCodec (e.g. "video/H264"): offer that codec first for video, when the browser
   * has it.
   */
  async publish(stream, { simulcast = this.options.simulcast, videoCodec = "" } = {}) {
    this._requireConnected();
    const pc = this._ensureSendPC();
    for (const track of stream.getTracks()) {
      if (this._published.some((p) => p.track === track)) continue;
      const init = transceiverInit(track, stream, simulcast); // throws on a bad option, before anything changed
      const codec = track.kind === "video" ? videoCodec : "";
      this._published.push({ track, stream, simulcast, codec });
      preferCodec(pc.addTransceiver(track, init), codec);
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

  /**
   * Mutes or unmutes one of this client's producers, and toggles the local track's enabled with
   * it: a mute disables the track at once, an unmute enables it once the server agreed. After a
   * moderator's mute (`producerMuted` with byServer) the server refuses an unmute with
   * "forbidden" until it sends `unmuteRequested`; a refused call leaves the track as it was.
   */
  async mute(producerId, muted) {
    this._requireConnected();
    muted = !!muted;
    const local = this.localProducers.get(producerId);
    const before = local && { muted: local.muted, enabled: local.track ? local.track.enabled : undefined };
    if (local && muted) {
      local.muted = true;
      if (local.track) local.track.enabled = false;
    }
    try {
      await this.request("mute", { producer: producerId, muted });
    } catch (err) {
      if (local && muted && this.localProducers.get(producerId) === local) {
        local.muted = before.muted;
        if (local.track) local.track.enabled = before.enabled;
      }
      throw err;
    }
    if (local && !muted && this.localProducers.get(producerId) === local) {
      local.muted = false;
      local.mutedByServer = false;
      if (local.track) local.track.enabled = true;
    }
  }

  /** Subscribes to a producer (for clients that joined with autoSubscribe: false). */
  subscribe(producerId) {
    this._subscribed.add(producerId);
    return this.request("subscribe", { producer: producerId });
  }

  unsubscribe(producerId) {
    this._subscribed.delete(producerId);
    return this.request("unsubscribe", { producer: producerId });
  }

  /**
   * Sets the largest simulcast layer this client wants of a producer (PROTOCOL.md,
   * "setPreferredLayer"): by number (layer, 0 the lowest; -1 no limit), by the size of the view
   * showing it (maxWidth, maxHeight in device pixels), or both; no limit at all clears the
   * preference (the top layer). The node forwards the highest layer within every limit that
   * its bandwidth estimate allows, the lowest when none fits. Works before subscribing too, and
   * is sent again after a resume.
   */
  setPreferredLayer(producerId, { layer, maxWidth, maxHeight } = {}) {
    return this._layers.setPreferred(producerId, { layer, maxWidth, maxHeight });
  }

  /**
   * Keeps a producer's preferred size equal to the size of the element that shows it (a
   * ResizeObserver; the element's size in CSS pixels times devicePixelRatio, sent 200 ms after
   * it last changed): a thumbnail receives a small layer, a full-screen view the top one.
   * options.layer adds a limit by number. Returns the function that stops watching (the last
   * preference stays; setPreferredLayer(id) clears it). One element per producer: a second
   * call replaces the first.
   */
  fitLayer(producerId, element, options = {}) {
    return this._layers.fit(producerId, element, options);
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


  // ---- hooks of signaling.js and room.js --------------------------------------------------------

  _applyJoin(data, reconnected) {
    // Peer connections made from now on use this node's TURN servers and credentials.
    this._nodeIceServers = Array.isArray(data.iceServers) ? data.iceServers : [];
    super._applyJoin(data, reconnected);
    if (!reconnected) return;
    // The remote tracks of producers that are gone end now; those that remain wait for their
    // new track (the offer of the new receive transport), or end if none comes.
    this._remote.endStaleExcept(this.producers);
    clearTimeout(this._staleTimer);
    const gen = this._gen;
    this._staleTimer = setTimeout(() => {
      if (gen === this._gen) this._remote.endStale();
    }, STALE_TRACK_MS);
  }

  _forget() {
    super._forget();
    this._layers.clear();
    this._published = [];
    this._wantData = false;
    this._resumeProducers = [];
    this._subscribed.clear();
  }

  // _restoreMedia publishes the local tracks again on a new send transport; a resumed session
  // names their producer ids (mid -> id), so the producers keep them. Subscriptions the
  // application asked for are asked again.
  async _restoreMedia(resumed) {
    this._layers.restore(); // before the subscriptions: a preference applies from them on
    for (const id of this._subscribed) {
      if (!this._autoSubscribe && this.producers.has(id)) this.request("subscribe", { producer: id }).catch(() => {});
    }
    const live = this._published.filter((p) => p.track.readyState === "live");
    this._published = [];
    if (live.length === 0 && !this._wantData) return;
    const pc = this._ensureSendPC();
    for (const { track, stream, simulcast, codec } of live) {
      this._published.push({ track, stream, simulcast, codec });
      preferCodec(pc.addTransceiver(track, transceiverInit(track, stream, simulcast)), codec);
    }
    await this._negotiateSend(resumed);
    this._resumeProducers = [];
    for (const local of this.localProducers.values()) {
      if (local.track && !local.track.enabled) await this.mute(local.id, true);
    }
  }

  // _migrated runs once a resumed or migrated session republished: when media flows on the new
  // transports (or after a few seconds), the old ones close.
  async _migrated() {
    const gen = this._gen;
    const until = Date.now() + 5000;
    // The old transports close once the new send transport is up and every received track
    // was swapped for its successor (which happens at the successor's first packet).
    const flowing = () => (!this.sendPC || this.sendPC.connectionState === "connected") && this._remote.staleCount() === 0;
    while (Date.now() < until && gen === this._gen && !flowing()) await new Promise((r) => setTimeout(r, 100));
    this._closeOldPCs();
  }

  // A moderator muted (or, never by itself, unmuted) one of this client's producers: the server
  // stopped forwarding it; the local track is disabled too, so that the page shows it muted.
  _onServerMute(producerId, muted) {
    const local = this.localProducers.get(producerId);
    if (!local) return;
    local.mutedByServer = muted;
    if (muted) {
      local.muted = true;
      if (local.track) local.track.enabled = false;
    }
  }

  // The server asks for some layers of one of this client's simulcast producers only
  // (dynacast): the others stop being encoded until a later layersWanted wants them.
  _onLayersWanted(producerId, layers) {
    this._layers.want(producerId, layers).catch((err) => this._emitError(err, "layersWanted"));
  }

  // A producer left the room: a preference for it has no use any more.
  _onProducerGone(producerId) {
    this._layers.forget(producerId);
  }

  // The moderator's lock is lifted: mute(id, false) is now allowed.
  _onUnmuteRequested(producerId) {
    const local = this.localProducers.get(producerId);
    if (local) local.mutedByServer = false;
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
    this._remote.add(e.track, [...e.streams]);
  }

  _teardownPeers() {
    this._gen++;
    clearTimeout(this._staleTimer);
    this._remote.endAll();
    this._closeOldPCs();
    for (const pc of [this.sendPC, this.recvPC]) closePC(pc);
    this.sendPC = null;
    this.recvPC = null;
    this.dataChannel = null;
    this.localProducers.clear();
    this._layers.resetSenders();
    this._resetTransportState();
  }

  // _suspendPeers drops the peer connections of a session that moves, but not its remote
  // tracks' streams (the new tracks are swapped into them) nor what it published (published
  // again, under the same producer ids). keep: a migration or a resume, whose old peer connections carry
  // the media until the new ones do.
  _suspendPeers(keep) {
    this._gen++;
    clearTimeout(this._staleTimer);
    if (this.localProducers.size > 0) {
      this._resumeProducers = [...this.localProducers.values()].map((l) => ({ id: l.id, track: l.track }));
    }
    this._remote.suspendAll();
    this._closeOldPCs();
    for (const pc of [this.sendPC, this.recvPC]) {
      if (!pc) continue;
      pc.onicecandidate = pc.ontrack = pc.ondatachannel = pc.onconnectionstatechange = null;
      if (keep) this._oldPCs.push(pc);
      else closePC(pc);
    }
    this.sendPC = null;
    this.recvPC = null;
    this.dataChannel = null;
    this.localProducers.clear();
    this._layers.resetSenders();
    this._resetTransportState();
  }

  _closeOldPCs() {
    for (const pc of this._oldPCs) closePC(pc);
    this._oldPCs = [];
  }

  // Offers the send transport's current state through `publish`, serialized with earlier calls.
  _negotiateSend(resumed = false) {
    const gen = this._gen;
    const run = async () => {
      const pc = this.sendPC;
      if (gen !== this._gen || !pc) throw new CascadeError("disconnected", "the connection was reset");
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const req = { sdp: pc.localDescription.sdp };
      if (resumed) {
        const ids = this._producerIds(pc);
        if (Object.keys(ids).length > 0) req.producerIds = ids;
      }
      let res;
      try {
        res = await this.request("publish", req);
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

  // _producerIds maps the offer's media sections to the producers the session had before it
  // resumed (PROTOCOL.md, "Resume"): each track to the producer it was.
  _producerIds(pc) {
    const ids = {};
    for (const t of pc.getTransceivers()) {
      if (t.mid === null || !t.sender.track) continue;
      const old = this._resumeProducers.find((p) => p.track === t.sender.track);
      if (old) ids[t.mid] = old.id;
    }
    return ids;
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
      const old = previous.get(p.id);
      next.set(p.id, { id: p.id, kind: p.kind, track, transceiver: t, muted: !!p.muted, mutedByServer: !!(old && old.mutedByServer), producer: p });
    }
    for (const id of previous.keys()) if (!next.has(id)) this.producers.delete(id);
    this.localProducers = next;
    this._layers.applyPending();
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

function closePC(pc) {
  if (!pc) return;
  pc.onicecandidate = pc.ontrack = pc.ondatachannel = pc.onconnectionstatechange = null;
  try {
    pc.close();
  } catch (_) {
    // already closed
  }
}
