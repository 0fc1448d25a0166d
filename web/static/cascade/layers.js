// Media that adapts, the browser client's half (PROTOCOL.md, "Simulcast, bandwidth and
// speakers"): the encodings of a simulcast publish, a subscriber's preferred layer per producer
// (by number, or by the size of the element that shows it), and the publisher's answer to
// `layersWanted` (dynacast: the server asks it to stop encoding layers nobody receives).
//
// The node, not the browser, picks the layer each subscriber receives: the highest one that
// fits both the preference sent here and its estimate of the subscriber's bandwidth. The
// preference is only a ceiling, so a thumbnail can ask for little and a full-screen view for all.

import { CascadeError } from "./util.js";

/** The rids of the simulcast layers, lowest quality first (PROTOCOL.md's "q", "h", "f"). */
export const SIMULCAST_RIDS = ["q", "h", "f"];

// The bitrate ceiling of a layer by its downscale factor: a quarter-size layer needs about a
// tenth of the full one. The node's estimate decides which layer a viewer gets; these only keep
// the browser from spending a whole uplink on the top layer.
const MAX_BITRATE = { 4: 150000, 2: 500000, 1: 1500000 };

// How long a fitted element's size must hold still before its new size is sent: a resize
// animation sends one request, not one per frame.
const FIT_DEBOUNCE_MS = 200;

/**
 * The sendEncodings of a simulcast video publish: option true (3 layers), 2 or 3 (that many
 * layers), an array (the encodings as given: each needs a rid), anything else none (null).
 * Layers are listed lowest first, as the node numbers them: with n layers, layer i is
 * downscaled by 2^(n-1-i) ("q" 1/4, "h" 1/2, "f" full size for three).
 */
export function simulcastEncodings(option) {
  if (Array.isArray(option)) {
    if (option.length === 0) return null;
    if (option.length > SIMULCAST_RIDS.length || option.some((e) => !e || typeof e.rid !== "string" || !e.rid)) {
      throw new CascadeError("bad_request", `simulcast: 1 to ${SIMULCAST_RIDS.length} encodings, each with a rid`);
    }
    return option.map((e) => ({ ...e }));
  }
  const n = option === true ? SIMULCAST_RIDS.length : option;
  if (n === false || n === undefined || n === null || n === 0 || n === 1) return null;
  if (!Number.isInteger(n) || n < 1 || n > SIMULCAST_RIDS.length) {
    throw new CascadeError("bad_request", `simulcast: true, false or 1 to ${SIMULCAST_RIDS.length} layers, not ${option}`);
  }
  const out = [];
  for (let i = 0; i < n; i++) {
    const scale = 2 ** (n - 1 - i);
    out.push({ rid: SIMULCAST_RIDS[i], active: true, scaleResolutionDownBy: scale, maxBitrate: MAX_BITRATE[scale] });
  }
  return out;
}

// The most simulcast layers Chromium sends of an image of the given size (its simulcast table:
// 3 from 960x540, 2 from 480x270, else 1). Asked for more, it drops the top ones: a 640x480
// camera published with 3 layers sends only the 1/4 and 1/2 ones, and no viewer ever gets the
// full size.
export function maxLayersFor(width, height) {
  const pixels = width * height;
  if (pixels >= 960 * 540) return 3;
  if (pixels >= 480 * 270) return 2;
  return 1;
}

/**
 * The addTransceiver init of a published track: video gets the simulcast encodings. A count
 * of layers (true, 2, 3) is capped by the camera's size (maxLayersFor), so that the top layer
 * is the full image; encodings given as an array are used as they are.
 */
export function transceiverInit(track, stream, simulcast) {
  const init = { direction: "sendonly", streams: [stream] };
  if (track.kind !== "video") return init;
  let option = simulcast;
  const settings = typeof track.getSettings === "function" ? track.getSettings() : {};
  if (!Array.isArray(option) && settings.width > 0 && settings.height > 0) {
    const wanted = simulcastEncodings(option); // validates the option first
    if (wanted) option = Math.min(wanted.length, maxLayersFor(settings.width, settings.height));
  }
  const encodings = simulcastEncodings(option);
  if (encodings) init.sendEncodings = encodings;
  return init;
}

/** The data of setPreferredLayer for producerId and pref ({layer, maxWidth, maxHeight}). */
export function preferredLayerData(producerId, pref = {}) {
  if (typeof producerId !== "string" || !producerId) throw new CascadeError("bad_request", "setPreferredLayer: no producer");
  const data = { producer: producerId };
  const { layer, maxWidth, maxHeight } = pref || {};
  if (layer !== undefined && layer !== null) {
    if (!Number.isInteger(layer) || layer < -1) throw new CascadeError("bad_request", `setPreferredLayer: layer ${layer}`);
    if (layer >= 0) data.layer = layer;
  }
  for (const [key, v] of [["maxWidth", maxWidth], ["maxHeight", maxHeight]]) {
    if (v === undefined || v === null || v === 0) continue;
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) throw new CascadeError("bad_request", `setPreferredLayer: ${key} ${v}`);
    data[key] = Math.ceil(v);
  }
  return data;
}

/**
 * The layer state of one client: the preferences it sent (sent again after a resume: the new
 * node knows none), the elements it fits layers to, and the `layersWanted` of its own producers.
 */
export class Layers {
  /**
   * @param {object} client the CascadeClient: request(), localProducers
   */
  constructor(client) {
    this._client = client;
    /** producer id -> the data of its last setPreferredLayer (with a limit) */
    this.prefs = new Map();
    this._fits = new Map(); // producer id -> stop function of fit()
    this._pending = new Map(); // producer id -> layers: a layersWanted for a producer not mapped yet
    this._chains = new WeakMap(); // RTCRtpSender -> its setParameters queue
  }

  /** Sends the preference; remembers it for a resume (forgets it when it has no limit). */
  async setPreferred(producerId, pref) {
    const data = preferredLayerData(producerId, pref);
    if (Object.keys(data).length > 1) this.prefs.set(producerId, data);
    else this.prefs.delete(producerId);
    try {
      await this._client.request("setPreferredLayer", data);
    } catch (err) {
      if (err instanceof CascadeError && err.code === "not_found" && this.prefs.get(producerId) === data) this.prefs.delete(producerId);
      throw err;
    }
  }

  /**
   * Keeps the producer's preferred size equal to the element's rendered size in device pixels
   * (a ResizeObserver, debounced), with the options' layer as a further limit. A hidden element
   * (0 x 0) keeps the last size. Returns the function that stops it (the preference stays).
   */
  fit(producerId, element, { layer } = {}) {
    if (typeof ResizeObserver === "undefined") throw new CascadeError("unsupported", "fitLayer needs ResizeObserver");
    if (!element) throw new CascadeError("bad_request", "fitLayer: no element");
    this.unfit(producerId);
    let timer = null;
    let sent = "";
    let size = null;
    const send = () => {
      timer = null;
      if (!size) return;
      const key = `${size.w}x${size.h}`;
      if (key === sent) return;
      sent = key;
      this.setPreferred(producerId, { layer, maxWidth: size.w, maxHeight: size.h }).catch((err) => {
        sent = ""; // try again at the next resize
        this._client._emitError(err, "setPreferredLayer");
      });
    };
    const observer = new ResizeObserver((entries) => {
      const box = entries[entries.length - 1].contentRect;
      const dpr = (typeof devicePixelRatio === "number" && devicePixelRatio > 0) ? devicePixelRatio : 1;
      const w = Math.round(box.width * dpr);
      const h = Math.round(box.height * dpr);
      if (w <= 0 || h <= 0) return;
      size = { w, h };
      clearTimeout(timer);
      timer = setTimeout(send, FIT_DEBOUNCE_MS);
    });
    observer.observe(element);
    const stop = () => {
      clearTimeout(timer);
      observer.disconnect();
      if (this._fits.get(producerId) === stop) this._fits.delete(producerId);
    };
    this._fits.set(producerId, stop);
    return stop;
  }

  unfit(producerId) {
    const stop = this._fits.get(producerId);
    if (stop) stop();
  }

  /** A producer went: its preference and fit go with it. */
  forget(producerId) {
    this.unfit(producerId);
    this.prefs.delete(producerId);
    this._pending.delete(producerId);
  }

  /** The session resumed (on a node that knows no preference): sends them again. */
  restore() {
    for (const [id, data] of this.prefs) {
      this._client.request("setPreferredLayer", data).catch(() => {
        if (this.prefs.get(id) === data) this.prefs.delete(id); // the producer is gone
      });
    }
  }

  /** The peer connections were reset: a layersWanted still waiting for its producer is void. */
  resetSenders() {
    this._pending.clear();
  }

  clear() {
    for (const stop of [...this._fits.values()]) stop();
    this.prefs.clear();
    this._pending.clear();
  }

  /**
   * layersWanted for one of this client's producers: encodings of the layers marked false stop
   * (RTCRtpSender.setParameters, active false), those marked true run again. For a producer the
   * publish answer has not mapped yet, it applies once mapped (applyPending). Resolves once
   * applied; an encoding the sender does not have is ignored.
   */
  want(producerId, layers) {
    if (!layers || typeof layers !== "object") return Promise.resolve();
    const local = this._client.localProducers.get(producerId);
    if (!local) {
      this._pending.set(producerId, layers);
      return Promise.resolve();
    }
    this._pending.delete(producerId);
    return this._queue(local.transceiver.sender, () => applyActive(local.transceiver.sender, layers));
  }

  /**
   * Applies the layersWanted that arrived before their producers were mapped (by a publish
   * answer); those naming none of this client's producers are dropped.
   */
  applyPending() {
    const pending = [...this._pending];
    this._pending.clear();
    for (const [id, layers] of pending) {
      if (this._client.localProducers.has(id)) {
        this.want(id, layers).catch((err) => this._client._emitError(err, "layersWanted"));
      }
    }
  }

  // _queue runs fn after the sender's earlier setParameters: two at once would race on the
  // parameters' transaction id, and the later one would fail.
  _queue(sender, fn) {
    const prev = this._chains.get(sender) || Promise.resolve();
    const next = prev.then(fn, fn);
    this._chains.set(sender, next.catch(() => {}));
    return next;
  }
}

// applyActive sets the sender's encodings' active flags from layers (rid -> wanted); it calls
// setParameters only when something changes.
async function applyActive(sender, layers) {
  if (!sender || typeof sender.getParameters !== "function") return;
  const params = sender.getParameters();
  const encodings = params.encodings || [];
  let changed = false;
  for (const enc of encodings) {
    if (!enc.rid || !Object.prototype.hasOwnProperty.call(layers, enc.rid)) continue;
    const active = !!layers[enc.rid];
    if (enc.active !== active) {
      enc.active = active;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(params);
}
