// The remote tracks of the Cascade browser client, and the MediaStreams handed to the
// application with them. Those streams are stable: a producer keeps its MediaStream (`stream`)
// and a participant its own (`streams[0]`) for as long as they live, and when the session resumes
// on another node (new peer connections, new tracks) the new track is swapped into them. A
// <video> whose srcObject is one of them plays on without the page doing anything.

// How long a resumed producer's new track may stay without media before it replaces the old one
// anyway.
const UNMUTE_WAIT_MS = 3000;

export class RemoteTracks {
  /** @param {(type: string, detail: object) => void} emit */
  constructor(emit) {
    this._emit = emit;
    /** producer id -> entry {track, stream, streams, participantId, producerId, kind, stale} */
    this.byProducer = new Map();
    this._participants = new Map(); // participant id -> MediaStream
  }

  /**
   * A track arrived on the receive transport: its id is the producer id, its first stream's id
   * the participant id (PROTOCOL.md). A producer known already (a resume) gets it swapped in.
   */
  add(track, rawStreams) {
    const participantId = rawStreams.length ? rawStreams[0].id : null;
    const producerId = track.id;
    const entry = this.byProducer.get(producerId);
    if (entry && !entry.ended) {
      this._swap(entry, track, rawStreams);
      return;
    }
    const pstream = this._participantStream(participantId);
    pstream.addTrack(track);
    const created = {
      track,
      stream: new MediaStream([track]),
      streams: [pstream],
      participantId,
      producerId,
      kind: track.kind,
      stale: false,
      ended: false,
      unwatch: () => {},
    };
    created.end = () => this._end(created);
    this._watch(created, rawStreams);
    this.byProducer.set(producerId, created);
    this._emit("track", detail(created));
  }

  /** The peer connections go (the node went): the tracks wait for their successors. */
  suspendAll() {
    for (const e of this.byProducer.values()) {
      e.unwatch();
      e.stale = true;
    }
  }

  /** Ends the waiting tracks whose producer is not in producers (a Map by id). */
  endStaleExcept(producers) {
    for (const e of [...this.byProducer.values()]) if (e.stale && !producers.has(e.producerId)) this._end(e);
  }

  /** Ends the tracks still waiting for a successor. */
  endStale() {
    for (const e of [...this.byProducer.values()]) if (e.stale) this._end(e);
  }

  staleCount() {
    let n = 0;
    for (const e of this.byProducer.values()) if (e.stale) n++;
    return n;
  }

  endAll() {
    for (const e of [...this.byProducer.values()]) this._end(e);
    this.byProducer.clear();
    this._participants.clear();
  }

  // _swap puts track in place of the entry's old one inside the stable streams, once the new
  // track has media (it unmutes at its first packet; at most UNMUTE_WAIT_MS): during a
  // migration the old track plays until then. The old track is removed first, so that a player
  // never holds two video tracks of one producer.
  _swap(entry, track, rawStreams) {
    clearTimeout(entry.pending);
    if (track.muted && entry.track !== track) {
      const go = () => {
        track.removeEventListener("unmute", go);
        clearTimeout(entry.pending);
        if (!entry.ended && this.byProducer.get(entry.producerId) === entry) this._swapNow(entry, track, rawStreams);
      };
      track.addEventListener("unmute", go);
      entry.pending = setTimeout(go, UNMUTE_WAIT_MS);
      return;
    }
    this._swapNow(entry, track, rawStreams);
  }

  _swapNow(entry, track, rawStreams) {
    entry.unwatch();
    const previous = entry.track;
    if (previous !== track) {
      for (const s of [entry.stream, ...entry.streams]) {
        s.removeTrack(previous);
        s.addTrack(track);
      }
    }
    entry.track = track;
    entry.stale = false;
    this._watch(entry, rawStreams);
    this._emit("trackReplaced", { ...detail(entry), previous });
  }

  // _watch ends the entry when its track ends or the browser removes it from its stream (the
  // server stopped the consumer), until unwatch.
  _watch(entry, rawStreams) {
    const track = entry.track;
    const end = () => this._end(entry);
    const onRemove = (ev) => {
      if (ev.track === track) end();
    };
    track.addEventListener("ended", end);
    for (const s of rawStreams) s.addEventListener("removetrack", onRemove);
    entry.unwatch = () => {
      track.removeEventListener("ended", end);
      for (const s of rawStreams) s.removeEventListener("removetrack", onRemove);
    };
  }

  _end(entry) {
    if (entry.ended) return;
    entry.ended = true;
    clearTimeout(entry.pending);
    entry.stale = false;
    entry.unwatch();
    const pstream = entry.streams[0];
    pstream.removeTrack(entry.track);
    if (pstream.getTracks().length === 0 && this._participants.get(entry.participantId) === pstream) {
      this._participants.delete(entry.participantId);
    }
    if (this.byProducer.get(entry.producerId) === entry) this.byProducer.delete(entry.producerId);
    this._emit("trackEnded", { track: entry.track, participantId: entry.participantId, producerId: entry.producerId, kind: entry.kind });
  }

  _participantStream(participantId) {
    let s = this._participants.get(participantId);
    if (!s) {
      s = new MediaStream();
      this._participants.set(participantId, s);
    }
    return s;
  }
}

function detail(e) {
  return { track: e.track, stream: e.stream, streams: e.streams, participantId: e.participantId, producerId: e.producerId, kind: e.kind };
}
