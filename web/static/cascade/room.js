// The room half of the Cascade browser client: who is in the room, what they publish, the room's
// and the participants' metadata, kept up to date from the join response and the notifications.
// Media notifications (offer, trickle, layersWanted) and the server's mute of this client's own
// producers go to the hooks of client.js; layerChanged and activeSpeakers are room state here.

import { Signaling } from "./signaling.js";

export class Room extends Signaling {
  constructor(options = {}) {
    super(options);
    /** This client's Participant once joined. */
    this.participant = null;
    this.room = null;
    /** The room's metadata (set by the room API); "" when it has none. */
    this.roomMetadata = "";
    /** The other participants of the room, by id. */
    this.participants = new Map();
    /** The room's producers (this client's included), by id. */
    this.producers = new Map();
    /**
     * The room's loudest participants, loudest first, from the last `activeSpeakers`
     * ({participant, producer, level}); empty when nobody speaks.
     */
    this.activeSpeakers = [];
    /**
     * The simulcast layer this client receives of each producer, from `layerChanged`
     * ({layer, rid}), by producer id.
     */
    this.receivedLayers = new Map();
  }

  _forget() {
    super._forget();
    this.participants.clear();
    this.producers.clear();
    this.activeSpeakers = [];
    this.receivedLayers.clear();
    this.participant = null;
    this.roomMetadata = "";
  }

  _applyJoin(data, reconnected) {
    super._applyJoin(data, reconnected);
    const before = this.participants;
    const producersBefore = this.producers;
    const metadataBefore = this.roomMetadata;
    this.participant = data.participant || null;
    this.room = data.room || null;
    this.roomMetadata = typeof data.roomMetadata === "string" ? data.roomMetadata : "";
    const selfId = this.participant && this.participant.id;
    this.participants = new Map();
    for (const p of data.participants || []) if (p.id !== selfId) this.participants.set(p.id, p);
    this.producers = new Map();
    for (const p of data.producers || []) this.producers.set(p.id, p);
    if (!reconnected) return;
    // Tell listeners what changed while the connection was down.
    for (const [id, p] of producersBefore) if (!this.producers.has(id)) this._emit("producerRemoved", { id, participant: p.participant });
    for (const id of before.keys()) if (!this.participants.has(id)) this._emit("participantLeft", { id });
    for (const [id, p] of this.participants) {
      const old = before.get(id);
      if (!old) this._emit("participantJoined", p);
      else if ((old.metadata || "") !== (p.metadata || "")) this._emit("participantUpdated", p);
    }
    for (const [id, p] of this.producers) if (!producersBefore.has(id)) this._emit("producerAdded", p);
    if (metadataBefore !== this.roomMetadata) this._emit("roomUpdated", { metadata: this.roomMetadata });
  }

  _onNotification(method, data) {
    const selfId = this.participant && this.participant.id;
    switch (method) {
      case "offer":
        this._onOffer(data);
        return;
      case "trickle":
        this._onRemoteCandidate(data.transport, data.candidate);
        return;
      case "participantJoined":
        if (data.id === selfId) return;
        this.participants.set(data.id, data);
        this._emit("participantJoined", data);
        return;
      case "participantLeft":
        if (data.id === selfId) return;
        this.participants.delete(data.id);
        this._emit("participantLeft", data);
        return;
      case "participantUpdated":
        // The room API changed a participant's metadata (this client's own included).
        if (data.id === selfId) this.participant = { ...this.participant, ...data };
        else this.participants.set(data.id, { ...this.participants.get(data.id), ...data });
        this._emit("participantUpdated", data);
        return;
      case "roomUpdated":
        this.roomMetadata = typeof data.metadata === "string" ? data.metadata : "";
        this._emit("roomUpdated", { metadata: this.roomMetadata });
        return;
      case "producerAdded":
        this.producers.set(data.id, data);
        this._emit("producerAdded", data);
        return;
      case "producerRemoved": {
        this.producers.delete(data.id);
        this.receivedLayers.delete(data.id);
        this._onProducerGone(data.id);
        const remote = this.remoteTracks.get(data.id);
        if (remote) remote.end();
        this._emit("producerRemoved", data);
        return;
      }
      case "producerMoved":
        // Its publisher resumed on another node: the media comes from there now, on the same
        // track. Nothing to do; told for applications that show it.
        this._emit("producerMoved", data);
        return;
      case "producerMuted": {
        const p = this.producers.get(data.id);
        if (p) p.muted = !!data.muted;
        if (data.byServer) this._onServerMute(data.id, !!data.muted);
        this._emit("producerMuted", { ...data, byServer: !!data.byServer });
        return;
      }
      case "unmuteRequested":
        // A moderator lifted its mute: the app decides whether to unmute (client.mute(id, false)).
        this._onUnmuteRequested(data.producer);
        this._emit("unmuteRequested", data);
        return;
      case "message":
        this._emit("message", data);
        return;
      case "layersWanted":
        // Dynacast: the server wants only some layers of one of this client's producers.
        this._onLayersWanted(data.producer, data.layers);
        this._emit("layersWanted", { producer: data.producer, layers: { ...data.layers } });
        return;
      case "layerChanged":
        this.receivedLayers.set(data.producer, { layer: data.layer, rid: data.rid || "" });
        this._emit("layerChanged", { producer: data.producer, layer: data.layer, rid: data.rid || "" });
        return;
      case "activeSpeakers":
        this.activeSpeakers = Array.isArray(data.speakers) ? data.speakers.filter((s) => s && typeof s.participant === "string") : [];
        this._emit("activeSpeakers", { speakers: this.activeSpeakers.slice() });
        return;
      default:
        this._emit("notification", { method, data });
    }
  }
}
