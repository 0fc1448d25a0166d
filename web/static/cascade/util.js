// Shared pieces of the Cascade browser client: the error class, the protocol's close codes and
// small helpers with no state.

export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 8000;
export const MAX_FRAME_BYTES = 64 * 1024;
// Liveness (PROTOCOL.md, "Resume"; proto.PingIntervalMillis, proto.PingDeadlineMillis): a ping
// every second; a node that sent nothing for 3 s is gone.
export const PING_INTERVAL_MS = 1000;
export const PING_DEADLINE_MS = 3000;
// How long one resume attempt waits for a node's WebSocket to open: a blackholed node never
// answers, and the next candidate must not wait for the browser's own (minutes long) timeout.
export const OPEN_TIMEOUT_MS = 3000;
// How long a remote track that was not offered again after a resume is kept before it ends.
export const STALE_TRACK_MS = 10000;
// Join errors that another attempt cannot fix: reconnection stops on them.
export const FATAL_JOIN_CODES = new Set(["unauthorized", "token_expired", "forbidden", "bad_request", "already_joined"]);
// The resume credential was refused (used, expired, room gone): join afresh with the token.
export const RESUME_REFUSED = "resume_refused";

// WebSocket close codes after which the session is over for good (PROTOCOL.md): the client must
// not reconnect on its own. The value is the reason of the `closed` notification that precedes
// the close, used when that notification was lost.
export const FINAL_CLOSE_CODES = new Map([
  [4001, "replaced"],
  [4003, "removed"],
  [4004, "room_deleted"],
  [4005, "resumed"],
]);

// Close codes of a session the server ended for something the client did (or did not do): the
// client reports them as errors with this code, then reconnects as after any drop.
export const ERROR_CLOSE_CODES = new Map([
  [4002, "slow_client"],
  [4008, "join_deadline"],
  [4029, "flood"],
]);

/** An error answered by the server ({code, message}) or raised by the client. */
export class CascadeError extends Error {
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.name = "CascadeError";
    this.code = code;
    this.serverMessage = message || "";
  }
}

export function sdpOf(value) {
  if (typeof value === "string") return value;
  if (value && typeof value.sdp === "string") return value.sdp;
  throw new CascadeError("bad_sdp", "the message carries no SDP");
}

export function webSocketURL(url) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const u = new URL(url || "/ws", base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  return u.href;
}

export function frameTooBig(frame) {
  // A UTF-8 byte is at least one and at most three per UTF-16 unit: encode only when unsure.
  if (frame.length * 3 <= MAX_FRAME_BYTES) return false;
  if (frame.length > MAX_FRAME_BYTES) return true;
  return new TextEncoder().encode(frame).length > MAX_FRAME_BYTES;
}

export function transceiverKind(t) {
  return (t.receiver && t.receiver.track && t.receiver.track.kind) || (t.sender.track && t.sender.track.kind) || "";
}

/** Whether two URLs name the same WebSocket endpoint (http: and ws:, a path and a full URL). */
export function sameURL(a, b) {
  try {
    return webSocketURL(a) === webSocketURL(b);
  } catch (_) {
    return false;
  }
}


/**
 * Puts the browser's codecs of mimeType (e.g. "video/H264") first in the transceiver's offer,
 * the others after them (the node picks the first it supports). Unknown to the browser or
 * without setCodecPreferences: nothing changes.
 */
export function preferCodec(transceiver, mimeType) {
  if (!mimeType || typeof RTCRtpSender === "undefined" || typeof RTCRtpSender.getCapabilities !== "function") return;
  if (typeof transceiver.setCodecPreferences !== "function") return;
  const kind = transceiverKind(transceiver);
  const caps = RTCRtpSender.getCapabilities(kind);
  if (!caps || !caps.codecs) return;
  const want = mimeType.toLowerCase();
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === want);
  if (first.length === 0) return;
  transceiver.setCodecPreferences([...first, ...caps.codecs.filter((c) => c.mimeType.toLowerCase() !== want)]);
}
