// TypeScript declarations for cascade.js, the Cascade browser client (PROTOCOL.md on standard
// browser APIs). Written by hand; web/types checks them against the JavaScript (the same exports,
// methods, properties and events) and compiles a program that uses the whole API.
//
//   import { CascadeClient } from "/cascade.js"; // or a copy of cascade.js, cascade/ and this file
//   const client = new CascadeClient();
//   client.on("participantUpdated", (p) => console.log(p.identity, p.metadata));
//   await client.connect("/ws", token);

/** A participant of the room (PROTOCOL.md, "Objects"). */
export interface Participant {
  /**
   * The participant's id: kept when the session resumes on another node, new after a fresh
   * join (a refused resume).
   */
  id: string;
  /** The identity of its token. */
  identity: string;
  /** When the participant joined, in Unix milliseconds. */
  joinedAt: number;
  /**
   * The application's data about the participant: the token's `metadata` claim, then the room
   * API's updates (at most 4096 bytes). Absent when empty.
   */
  metadata?: string;
}

/** A track a participant publishes (PROTOCOL.md, "Objects"). */
export interface Producer {
  id: string;
  /** The id of the participant that publishes it. */
  participant: string;
  kind: "audio" | "video";
  /** The producer's media section on its publisher's send transport. */
  mid?: string;
  /** Set once media flows, for example "video/VP8". */
  codec?: string;
  muted: boolean;
  /** The node its publisher is connected to ("" or absent on that node itself). */
  origin?: string;
  clockRate?: number;
  channels?: number;
  fmtp?: string;
  /** A simulcast video producer's layers, lowest quality first (absent: not simulcast). */
  layers?: Layer[];
}

/**
 * One simulcast layer of a producer (PROTOCOL.md, "Simulcast"): its number is its index in
 * Producer.layers. width/height: of its last keyframe (absent until seen); bitrate in bit/s.
 */
export interface Layer {
  rid: string;
  width?: number;
  height?: number;
  bitrate?: number;
  /** Packets of it arrived in the last second (a paused layer is inactive). */
  active: boolean;
}

/**
 * The largest layer a subscriber wants of a producer (setPreferredLayer): every limit given
 * applies; none given, none applies (the top layer).
 */
export interface LayerPreference {
  /** The highest layer number (0 the lowest); -1 or absent: no limit by number. */
  layer?: number;
  /** The width of the view showing it, in device pixels (0 or absent: no limit). */
  maxWidth?: number;
  /** The height of the view showing it, in device pixels (0 or absent: no limit). */
  maxHeight?: number;
}

/**
 * How a video track is published: false (one encoding), true (3 layers), 2 or 3 layers ("q",
 * "h", "f", lowest first, downscaled 4, 2, 1; capped by the camera's size as Chromium caps
 * them: at most 2 below 960x540, 1 below 480x270), or sendEncodings of your own (each with a
 * rid, lowest quality first, used as given).
 */
export type SimulcastOption = boolean | 1 | 2 | 3 | RTCRtpEncodingParameters[];

/** Options of publish. */
export interface PublishOptions {
  /** Video as simulcast layers (default: the constructor's simulcast option, false). */
  simulcast?: SimulcastOption;
  /** The video codec to offer first, e.g. "video/H264" or "video/VP8" (default: the browser's order). */
  videoCodec?: string;
}

/** One entry of activeSpeakers: a participant, the audio producer it speaks through, its level. */
export interface Speaker {
  participant: string;
  producer: string;
  /** 0 (silent) .. 1 (loudest), from the RFC 6464 audio level. */
  level: number;
}

/** A placement redirect: the node the client should join instead (followed by connect). */
export interface Redirect {
  node: string;
  /** The node's signaling URL (ws://host:port/ws). */
  url: string;
}

/** The data of a join response. */
export interface JoinResult {
  /** This client's participant. */
  participant: Participant;
  room: string;
  /** Everyone in the room, this client included. */
  participants: Participant[];
  producers: Producer[];
  /** The node's TURN servers with short-lived credentials; absent when the node runs none. */
  iceServers?: RTCIceServer[];
  /** The room's metadata (room API); absent when empty. */
  roomMetadata?: string;
  redirect?: Redirect;
  /** The session's resume credential (PROTOCOL.md, "Resume"); the client keeps it. */
  resume?: ResumeToken;
  /** This join resumed the session: same participant id, same producer ids. */
  resumed?: boolean;
  /** A few other healthy nodes to resume on should this one go. */
  nodes?: NodeURL[];
}

/** A session's resume credential: opaque, usable once, until expires (Unix ms). */
export interface ResumeToken {
  token: string;
  expires: number;
}

/** A node a client may resume on (the join answer's nodes). */
export interface NodeURL {
  id: string;
  /** Its signaling URL (ws://host:port/ws). */
  url: string;
  region?: string;
}

/**
 * The connection's state, reported by the `state` event: "reconnecting" after the node went
 * (the media stalls until the session resumed elsewhere), "migrating" while the session moves
 * off a draining node (make-before-break: the media flows meanwhile).
 */
export type ConnectionState = "closed" | "connecting" | "connected" | "reconnecting" | "migrating";

/**
 * Why a session ended without close(): the reason of the server's `closed` notification
 * ("replaced": close 4001, a newer session of the same identity joined; "removed": 4003, the
 * room API removed the participant; "room_deleted": 4004, the room API deleted the room;
 * "resumed": 4005, a newer copy of this session runs elsewhere), the
 * error code of a join that reconnection cannot fix ("token_expired", "unauthorized", ...), or
 * "disconnected" (a drop with the reconnect option off).
 */
export type CloseReason = "replaced" | "removed" | "room_deleted" | "resumed" | "disconnected" | (string & {});

/**
 * An error code: the server's (PROTOCOL.md, "Error codes") or the client's own ("timeout",
 * "disconnected", "too_big", "connect_failed", "bad_frame", "bad_sdp", "bad_state"), or the
 * reason of a close ("slow_client" 4002, "join_deadline" 4008, "flood" 4029, or a CloseReason).
 */
export type ErrorCode =
  | "bad_request"
  | "unknown_method"
  | "unauthorized"
  | "token_expired"
  | "forbidden"
  | "not_joined"
  | "already_joined"
  | "bad_sdp"
  | "not_found"
  | "bad_state"
  | "rate_limited"
  | "draining"
  | "internal"
  | "cluster_unavailable"
  | "too_many_rooms"
  | "room_full"
  | "too_many_tracks"
  | "timeout"
  | "disconnected"
  | "too_big"
  | "connect_failed"
  | "bad_frame"
  | "slow_client"
  | "join_deadline"
  | "flood"
  | "resume_refused"
  | (string & {});

/** Options of the CascadeClient constructor. */
export interface CascadeClientOptions {
  /**
   * STUN/TURN servers for both peer connections, besides the node's own TURN servers, which
   * the join response hands out with fresh credentials.
   */
  iceServers?: RTCIceServer[];
  /** "all" (the default: direct paths first, TURN when they fail) or "relay" (TURN only). */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Milliseconds before a request fails with code "timeout" (10000). */
  requestTimeout?: number;
  /**
   * Resume the session elsewhere when its node goes (true): the WebSocket closed without a
   * `closed` notification, or the node answered nothing for pingDeadline.
   */
  reconnect?: boolean;
  /** Milliseconds between two pings (1000). */
  pingInterval?: number;
  /** Milliseconds without any frame from the node after which it is gone (3000). */
  pingDeadline?: number;
  /** The default of publish's simulcast option (false). */
  simulcast?: SimulcastOption;
}

/** Options of connect. */
export interface ConnectOptions {
  /** Subscribe to every producer of the room, present and future (true). */
  autoSubscribe?: boolean;
  /** The client's region, a placement hint: the node may redirect to a node of that region. */
  region?: string;
}

/** A token, or a function returning one, called for every join (to refresh an expired token). */
export type TokenSource = string | (() => string | Promise<string>);

/** One of this client's producers, linked to its local track. */
export interface LocalProducer {
  id: string;
  kind: "audio" | "video";
  track: MediaStreamTrack;
  transceiver: RTCRtpTransceiver;
  muted: boolean;
  /** A moderator muted it and has not asked for an unmute yet: mute(id, false) is refused. */
  mutedByServer: boolean;
  /** The producer as the server described it. */
  producer: Producer;
}

/**
 * A received track: the payload of the `track` event. stream and streams are the client's own
 * MediaStreams, the same objects for as long as the producer lives: when the session resumes on
 * another node the new track replaces the old one inside them (event `trackReplaced`), so a
 * media element playing one of them plays on.
 */
export interface RemoteTrackInfo {
  track: MediaStreamTrack;
  /** The producer's stream: this track only. */
  stream: MediaStream;
  /** The participant's stream (all its received tracks); its id is not the participant id. */
  streams: MediaStream[];
  /** The publishing participant, null when the track came without a stream. */
  participantId: string | null;
  /** The producer (the track id). */
  producerId: string;
  kind: string;
}

/** An entry of CascadeClient.remoteTracks. */
export interface RemoteTrack extends RemoteTrackInfo {
  /** Forgets the track and emits trackEnded (once). */
  end(): void;
}

/** The events of a CascadeClient and their payloads (event.detail). */
export interface CascadeEventMap {
  /** The connection's state changed. */
  state: { state: ConnectionState; previous: ConnectionState };
  /** A join succeeded, the first or after a reconnection (the room state is then fresh). */
  joined: JoinResult & { reconnected: boolean; resumed: boolean };
  /**
   * The session ended without close() and will not reconnect: the server closed it (code, the
   * WebSocket close code) or reconnection gave up (code 0). The state becomes "closed" next.
   */
  closed: { reason: CloseReason; code: number };
  participantJoined: Participant;
  participantLeft: { id: string };
  /** A participant's metadata changed (this client's own too: client.participant is updated). */
  participantUpdated: Participant;
  /** The room's metadata changed (client.roomMetadata is updated). */
  roomUpdated: { metadata: string };
  producerAdded: Producer;
  producerRemoved: { id: string; participant: string };
  /**
   * A producer was muted or unmuted. byServer: a moderator muted it through the room API; when
   * it is one of this client's producers its track is disabled and mute(id, false) fails with
   * "forbidden" until an `unmuteRequested`.
   */
  producerMuted: { id: string; muted: boolean; byServer: boolean };
  /**
   * A moderator asks this client to unmute one of its producers. Nothing happens by itself: to
   * accept, call `client.mute(producer, false)`.
   */
  unmuteRequested: { producer: string };
  /** An application message; `from` and `identity` are "" when the room API sent it. */
  message: { from: string; identity: string; data: unknown };
  track: RemoteTrackInfo;
  /** A received track ended (its producer was removed, or the connection was reset). */
  trackEnded: Omit<RemoteTrackInfo, "streams" | "stream">;
  /**
   * The session resumed and a producer's new track replaced `previous` inside its stable
   * streams: nothing to do for a page that plays those streams.
   */
  trackReplaced: RemoteTrackInfo & { previous: MediaStreamTrack };
  /**
   * The session resumed on another node (url) with the same participant and producer ids,
   * after its node went, or after a migration (migrated).
   */
  resumed: { participant: Participant | null; url: string; migrated: boolean };
  /** A producer's publisher resumed on another node: its media goes on, on the same track. */
  producerMoved: { id: string; participant: string };
  /**
   * The node asks this client to move (it drains): the client resumes on url, make-before-
   * break, by itself.
   */
  migrate: { node: string; url: string; reason: string; deadline: number };
  /** A message on the receive transport's data channel. */
  data: { data: string | ArrayBuffer | Blob; label: string };
  /**
   * The simulcast layer this client receives of a producer changed (after each switch; also
   * client.receivedLayers).
   */
  layerChanged: { producer: string; layer: number; rid: string };
  /**
   * Dynacast: the server wants only the layers marked true of one of this client's simulcast
   * producers. The client already paused (or resumed) the encodings (RTCRtpSender.setParameters).
   */
  layersWanted: { producer: string; layers: Record<string, boolean> };
  /**
   * The room's loudest participants changed, loudest first (empty: nobody speaks); also
   * client.activeSpeakers.
   */
  activeSpeakers: { speakers: Speaker[] };
  /** A peer connection's connectionState changed. */
  transportState: { transport: "send" | "recv"; state: RTCPeerConnectionState };
  /** A notification this library does not know. */
  notification: { method: string; data: unknown };
  /**
   * An asynchronous failure (nothing threw to the caller). Context "connection": the server
   * closed the connection for slow_client (4002), join_deadline (4008) or flood (4029); the
   * client reconnects.
   */
  error: { error: Error; context: string };
}

/** An error answered by the server ({code, message}) or raised by the client. */
export class CascadeError extends Error {
  constructor(code: ErrorCode, message?: string);
  name: "CascadeError";
  /** The error code, stable across versions. */
  code: ErrorCode;
  /** The server's message ("" when the client raised the error). */
  serverMessage: string;
}

/**
 * A participant of a Cascade room: one WebSocket for signaling, a send transport for what it
 * publishes and a receive transport for what it subscribes to. When its node goes it resumes the
 * session on another one (same participant and producer ids, the same MediaStreams), never
 * after the server ended the session.
 */
export class CascadeClient extends EventTarget {
  constructor(options?: CascadeClientOptions);

  /** The constructor's options with their defaults. */
  options: Required<CascadeClientOptions>;
  state: ConnectionState;
  /** Why the last session ended without close(); null while open and after close(). */
  closeReason: CloseReason | null;
  /** This client's participant once joined. */
  participant: Participant | null;
  /** The room's name once joined. */
  room: string | null;
  /** The room's metadata (room API); "" when it has none. */
  roomMetadata: string;
  /** The other participants of the room, by id. */
  participants: Map<string, Participant>;
  /** The room's producers (this client's included), by id. */
  producers: Map<string, Producer>;
  /** The room's loudest participants, loudest first, from the last `activeSpeakers`. */
  activeSpeakers: Speaker[];
  /** The simulcast layer received of each producer, from `layerChanged`, by producer id. */
  receivedLayers: Map<string, { layer: number; rid: string }>;
  /** The preferences sent with setPreferredLayer (those with a limit), by producer id. */
  preferredLayers: Map<string, LayerPreference & { producer: string }>;
  /** This client's producers, by id. */
  localProducers: Map<string, LocalProducer>;
  /** Received tracks, by producer id. */
  remoteTracks: Map<string, RemoteTrack>;
  /** The send transport (null before publish or sendData). */
  sendPC: RTCPeerConnection | null;
  /** The receive transport (null before the server's first offer). */
  recvPC: RTCPeerConnection | null;
  /** The send transport's data channel ("data"). */
  dataChannel: RTCDataChannel | null;

  /** The signaling URL of the node the client is on (or trying). */
  get url(): string | null;

  /** The class itself, for `window.Cascade.CascadeClient`. */
  static CascadeClient: typeof CascadeClient;
  /** The error class, for `window.Cascade.CascadeError`. */
  static CascadeError: typeof CascadeError;

  /** Registers fn(detail, event) for an event; returns a function that removes it. */
  on<K extends keyof CascadeEventMap>(type: K, fn: (detail: CascadeEventMap[K], event: CustomEvent<CascadeEventMap[K]>) => void): () => void;

  /**
   * Opens the WebSocket (ws:, wss:, http:, https: or a path such as "/ws") and joins with the
   * token. Resolves with the join response data; rejects with a CascadeError (for example
   * "unauthorized", "room_full"). Later drops reconnect automatically.
   */
  connect(url: string, token: TokenSource, options?: ConnectOptions): Promise<JoinResult>;

  /**
   * Publishes the stream's tracks on the send transport (plus the data channel "data"). Calling
   * it again with new tracks renegotiates. Resolves with the producers of the send transport.
   * With options.simulcast, video goes as simulcast layers; the client pauses and resumes them
   * as the server asks (`layersWanted`).
   */
  publish(stream: MediaStream, options?: PublishOptions): Promise<Producer[]>;

  /** Stops one of this client's producers and renegotiates the send transport without it. */
  unpublish(producerId: string): Promise<void>;

  /**
   * Mutes or unmutes one of this client's producers and its local track. Rejects with
   * "forbidden" when unmuting a producer a moderator muted, until an `unmuteRequested`.
   */
  mute(producerId: string, muted: boolean): Promise<void>;

  /** Subscribes to a producer (for a client that connected with autoSubscribe: false). */
  subscribe(producerId: string): Promise<void>;

  unsubscribe(producerId: string): Promise<void>;

  /**
   * Sets the largest simulcast layer wanted of a producer (by number and/or by the view's size
   * in device pixels); without limits, clears it. The node forwards the highest layer within
   * every limit that the subscriber's bandwidth allows. Sent again after a resume.
   */
  setPreferredLayer(producerId: string, preference?: LayerPreference): Promise<void>;

  /**
   * Keeps the producer's preferred size equal to the element's rendered size (ResizeObserver,
   * device pixels, debounced 200 ms); options.layer adds a limit by number. Returns the
   * function that stops watching (the last preference stays).
   */
  fitLayer(producerId: string, element: Element, options?: { layer?: number }): () => void;

  /** Sends an application message (any JSON value) to the whole room over signaling. */
  sendMessage(data: unknown): Promise<void>;

  /** Sends a string on the send transport's data channel, to every other participant. */
  sendData(data: string): Promise<void>;

  /** Sends `leave`, closes everything and stops reconnecting. Local tracks are left running. */
  close(): Promise<void>;

  /** Sends one request; resolves with the response's data or rejects with a CascadeError. */
  request<T = Record<string, unknown>>(method: string, data?: object, timeout?: number): Promise<T>;

  addEventListener<K extends keyof CascadeEventMap>(
    type: K,
    listener: (this: CascadeClient, ev: CustomEvent<CascadeEventMap[K]>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof CascadeEventMap>(
    type: K,
    listener: (this: CascadeClient, ev: CustomEvent<CascadeEventMap[K]>) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

export default CascadeClient;

declare global {
  interface Window {
    /** Set when cascade.js loads in a page: the client class. */
    Cascade: typeof CascadeClient;
  }
}
