// The signaling half of the Cascade browser client: the WebSocket, requests and their responses,
// the join (with a placement redirect), liveness (ping), the resume of the session on another
// node when its node goes (PROTOCOL.md, "Resume"), migration, and the end of a session.
//
// Signaling knows nothing of rooms or media: the classes built on it (room.js, client.js) supply
// the hooks it calls: _applyJoin(data, reconnected), _onNotification(method, data),
// _suspendPeers(keep), _teardownPeers(), _restoreMedia(resumed), _migrated() and _forget().

import {
  BACKOFF_MAX_MS,
  BACKOFF_MIN_MS,
  CascadeError,
  ERROR_CLOSE_CODES,
  FATAL_JOIN_CODES,
  FINAL_CLOSE_CODES,
  OPEN_TIMEOUT_MS,
  PING_DEADLINE_MS,
  PING_INTERVAL_MS,
  RESUME_REFUSED,
  frameTooBig,
  sameURL,
  webSocketURL,
} from "./util.js";

export class Signaling extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = {
      iceServers: [],
      iceTransportPolicy: "all",
      requestTimeout: 10000,
      reconnect: true,
      pingInterval: PING_INTERVAL_MS,
      pingDeadline: PING_DEADLINE_MS,
      ...options,
    };
    /**
     * "closed" | "connecting" | "connected" | "reconnecting" (the node went: no media until the
     * session resumed) | "migrating" (make-before-break: the old node's media flows meanwhile)
     */
    this.state = "closed";
    /** Why the last session ended without close() ("removed", "room_deleted", ...); null while open. */
    this.closeReason = null;

    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._url = null;
    this._token = null;
    this._autoSubscribe = true;
    this._closed = true;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._serverReason = null; // the reason of a `closed` notification, until the socket closes

    this._entryURL = null; // the URL the application gave: the load balancer, the way back to placement
    this._resume = null; // the latest resume credential {token, expires}
    this._nodes = []; // the join answer's nodes: where to resume when this node goes
    this._avoid = []; // URLs of nodes that went during this loss: never joined or followed again
    this._pingTimer = null;
    this._lastFrame = 0; // when the current WebSocket last delivered a frame (ms)
    this._migration = null; // {ws, url}: the session a migration leaves once the new one runs
  }

  /** The URL of the node the client is connected (or connecting) to. */
  get url() {
    return this._url;
  }

  /** Registers fn(detail) for an event; returns a function that removes it. */
  on(type, fn) {
    const listener = (e) => fn(e.detail, e);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /**
   * Opens the WebSocket (ws:, wss:, http:, https: or a path such as "/ws") and joins with the
   * token. Resolves with the join response data. Later drops reconnect automatically, joining
   * with the same token; `token` may also be a function returning a token (or a promise of
   * one), called for every join, so that a long-lived page can refresh an expired token.
   */
  async connect(url, token, { autoSubscribe = true, region = "" } = {}) {
    if (this.state !== "closed") throw new CascadeError("bad_state", `connect while ${this.state}`);
    this._url = webSocketURL(url);
    this._entryURL = this._url;
    this._resume = null;
    this._nodes = [];
    this._avoid = [];
    this._token = token;
    this._autoSubscribe = autoSubscribe !== false;
    this._region = region;
    this._closed = false;
    this._serverReason = null;
    this.closeReason = null;
    this._attempt = 0;
    this._setState("connecting");
    try {
      return await this._open(false);
    } catch (err) {
      this._closed = true;
      this._dropSocket();
      this._teardownPeers();
      this._setState("closed");
      throw err;
    }
  }

  /** Sends `leave`, closes everything and stops reconnecting. Local tracks are left running. */
  async close() {
    if (this._closed && this.state === "closed") return;
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._stopPing();
    this._endMigration();
    if (this.state === "connected" && this._ws && this._ws.readyState === 1) {
      try {
        await this.request("leave", {}, 2000);
      } catch (_) {
        // closing anyway
      }
    }
    this._dropSocket(1000, "leave");
    this._teardownPeers();
    this._forget();
    this._setState("closed");
  }

  /** Sends one request; resolves with the response's data or rejects with a CascadeError. */
  request(method, data = {}, timeout = this.options.requestTimeout) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) {
      return Promise.reject(new CascadeError("disconnected", `${method}: not connected`));
    }
    const id = this._nextId++;
    const frame = JSON.stringify({ id, method, data });
    if (frameTooBig(frame)) {
      return Promise.reject(new CascadeError("too_big", `${method}: request over 64 KiB`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new CascadeError("timeout", `${method}: no response in ${timeout} ms`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, method });
      try {
        ws.send(frame);
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(err);
      }
    });
  }

  // ---- hooks (overridden by room.js and client.js) ---------------------------------------------

  _applyJoin(_data, _reconnected) {}
  _onNotification(_method, _data) {}
  _suspendPeers(_keep) {}
  _teardownPeers() {}
  async _restoreMedia(_resumed) {}
  async _migrated() {}
  _forget() {}

  // ---- connection ------------------------------------------------------------------------------

  // _open joins on this._url (and the node it redirects to). With a resume credential it resumes
  // the session; a refused credential falls back to a fresh join on the same socket.
  async _open(reconnected) {
    const resume = reconnected && this._resume ? this._resume.token : "";
    const token = await this._freshToken(resume !== "");
    await this._openSocket();
    let data = await this._join(token, resume, false);
    const redirect = data.redirect && data.redirect.url;
    if (redirect) {
      this._dropSocket(1000, "redirected");
      if (this._avoid.some((u) => sameURL(u, redirect))) {
        // Placement does not know yet that the node went: stay where we are.
        await this._openSocket();
        data = await this._join(token, this._resume ? resume : "", true);
      } else {
        // The node placed this client on a better node (region, load, draining): follow once.
        // The target is not sticky: after a loss the client goes back to placement.
        this._url = webSocketURL(redirect);
        await this._openSocket();
        data = await this._join(token, this._resume ? resume : "", true);
      }
    }
    if (this._closed && reconnected) {
      // close() was called while this attempt was under way: the session ends here.
      await this.request("leave", {}, 2000).catch(() => {});
      this._dropSocket(1000, "leave");
      throw new CascadeError("disconnected", "closed while reconnecting");
    }
    this._resume = data.resume && data.resume.token ? data.resume : null;
    this._nodes = Array.isArray(data.nodes) ? data.nodes.filter((n) => n && typeof n.url === "string") : [];
    const resumed = !!(reconnected && data.resumed);
    this._applyJoin(data, reconnected);
    this._attempt = 0;
    this._avoid = [];
    this._startPing();
    this._setState("connected");
    this._emit("joined", { ...data, reconnected, resumed });
    return data;
  }

  // _join sends join: a resume when resume is set, falling back to a fresh join with token when
  // the node refuses the credential.
  async _join(token, resume, noRedirect) {
    if (resume) {
      try {
        return await this.request("join", this._joinData(token, resume, noRedirect));
      } catch (err) {
        if (!(err instanceof CascadeError) || err.code !== RESUME_REFUSED) throw err;
        this._resume = null; // used or expired: a fresh join, as a new participant
        if (!token) token = await this._freshToken(false);
      }
    }
    return this.request("join", this._joinData(token, "", noRedirect));
  }

  // _freshToken is the application's token (its function's answer). For a resume it is only the
  // fallback: a token function that fails (the page's origin may be the node that went) or
  // hangs does not stop the resume.
  async _freshToken(forResume) {
    if (typeof this._token !== "function") return this._token;
    if (!forResume) return this._token();
    try {
      return await Promise.race([
        Promise.resolve(this._token()),
        new Promise((resolve) => setTimeout(() => resolve(undefined), OPEN_TIMEOUT_MS)),
      ]);
    } catch (_) {
      return undefined;
    }
  }

  _joinData(token, resume = "", noRedirect = false) {
    const d = { autoSubscribe: this._autoSubscribe };
    if (token) d.token = token;
    if (resume) d.resume = resume;
    if (this._region) d.region = this._region;
    if (noRedirect) d.noRedirect = true;
    return d;
  }

  _openSocket() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this._url);
      } catch (err) {
        reject(err);
        return;
      }
      this._ws = ws;
      this._lastFrame = Date.now();
      let opened = false;
      // A blackholed node never answers: give up on it in time to try the next one.
      const timer = setTimeout(() => {
        if (opened || this._ws !== ws) return;
        this._dropSocket();
        reject(new CascadeError("connect_failed", `WebSocket ${this._url} did not open in ${OPEN_TIMEOUT_MS} ms`));
      }, OPEN_TIMEOUT_MS);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        resolve(ws);
      };
      ws.onmessage = (ev) => this._onFrame(ws, ev.data);
      ws.onerror = () => {}; // a close event follows
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!opened) reject(new CascadeError("connect_failed", `WebSocket ${this._url} closed before it opened (code ${ev.code})`));
        this._onSocketClose(ws, ev);
      };
    });
  }

  _dropSocket(code = 1000, reason = "") {
    const ws = this._ws;
    this._ws = null;
    this._rejectPending(new CascadeError("disconnected", "the connection closed"));
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code, reason);
      } catch (_) {
        // already closed
      }
    }
  }

  // _abandonSocket forgets the WebSocket without closing it: the node closes it (it fences the
  // session once it resumed elsewhere), or it dies with the node's connection.
  _abandonSocket() {
    const ws = this._ws;
    this._ws = null;
    this._rejectPending(new CascadeError("disconnected", "the node answers nothing"));
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _rejectPending(err) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  _onSocketClose(ws, ev) {
    if (ws !== this._ws) return;
    this._ws = null;
    const code = ev.code;
    // The code names the reason when it is one of the final ones (a `closed` notification's
    // reason may be prose); else the notification's reason makes the close final.
    const final = FINAL_CLOSE_CODES.get(code) || this._serverReason;
    const errorCode = ERROR_CLOSE_CODES.get(code);
    // A request in flight fails with the reason when there is one (a join that missed the
    // deadline fails with "join_deadline", not a bare "disconnected").
    const why = final || errorCode;
    const detail = ev.reason ? `${ev.reason} (code ${code})` : `the connection closed (code ${code})`;
    this._rejectPending(new CascadeError(why || "disconnected", detail));
    if (final && this.state !== "connecting") {
      // The server ended the session for good (replaced, removed, room deleted, resumed
      // elsewhere): no reconnect.
      this._finish(final, code);
      return;
    }
    if (errorCode && this.state === "connected") this._emitError(new CascadeError(errorCode, detail), "connection");
    if (!this._closed && this.state === "connected") this._beginReconnect(code);
    // While connecting or reconnecting, the attempt in progress sees the rejection.
  }

  // _finish ends a session that close() did not end: the server closed it, or reconnection gave
  // up. It emits `closed` {reason, code} before the state becomes "closed".
  _finish(reason, code) {
    this._closed = true;
    this._serverReason = null;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._stopPing();
    this._endMigration();
    this._dropSocket(1000, reason);
    this._teardownPeers();
    this._forget();
    this.closeReason = reason;
    this._emit("closed", { reason, code });
    this._setState("closed");
  }

  // _beginReconnect starts over after the node went (its WebSocket closed without `closed`, or
  // it missed the ping deadline). The peer connections close, but the remote tracks' streams
  // stay: the resumed session's tracks are swapped into them.
  _beginReconnect(code) {
    this._stopPing();
    if (!this.options.reconnect) {
      this._finish("disconnected", code);
      return;
    }
    if (this._url && !this._avoid.some((u) => sameURL(u, this._url))) this._avoid.push(this._url);
    this._setState("reconnecting");
    // The old peer connections stay until the resumed session's media flows: a node that only
    // lost the signaling connection (a resume on the same node) still holds this client's
    // producers, which the new session adopts; closing their transport first would end them.
    this._suspendPeers(true);
    this._attempt = 0;
    this._scheduleReconnect(0); // the first attempt at once
  }

  // _candidates are where a resume goes, in order: the nodes the join answer listed (but never
  // one that went), then the URL the application gave (placement, a load balancer).
  _candidates() {
    const out = [];
    const add = (u) => {
      if (!u || out.some((x) => sameURL(x, u))) return;
      try {
        out.push(webSocketURL(u));
      } catch (_) {
        // a malformed URL from the server: skipped
      }
    };
    for (const n of this._nodes) if (!this._avoid.some((a) => sameURL(a, n.url))) add(n.url);
    // The application's URL even if it was the node that went: it may be a load balancer, and
    // with no other node it is the only way back.
    add(this._entryURL);
    return out;
  }

  _scheduleReconnect(delay) {
    if (this._closed) return;
    clearTimeout(this._reconnectTimer);
    if (delay === undefined) {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this._attempt);
      // Full jitter around the base: the survivors of a node's death are not hit by all of its
      // clients in the same instant.
      delay = Math.round(base * (0.5 + Math.random()));
      this._attempt++;
    }
    this._reconnectTimer = setTimeout(() => this._reconnectOnce(), delay);
  }

  // _reconnectOnce tries every candidate once; when none takes the session, it tries again
  // after a backoff.
  async _reconnectOnce() {
    this._reconnectTimer = null;
    for (const url of this._candidates()) {
      if (this._closed || !this._moving()) return;
      this._url = url;
      let data;
      try {
        data = await this._open(true);
      } catch (err) {
        if (this._closed || !this._moving()) return;
        this._dropSocket();
        if (err instanceof CascadeError && FATAL_JOIN_CODES.has(err.code)) {
          this._emitError(err, "reconnect");
          this._finish(err.code, 0);
          return;
        }
        continue;
      }
      await this._afterRejoin(!!data.resumed);
      return;
    }
    this._scheduleReconnect();
  }

  async _afterRejoin(resumed) {
    try {
      await this._restoreMedia(resumed);
    } catch (err) {
      // A drop during the restore starts another reconnection by itself.
      if (this.state === "connected") this._emitError(err, "republish");
    }
    if (this.state !== "connected") return;
    if (resumed) this._emit("resumed", { participant: this.participant, url: this._url, migrated: !!this._migration });
    await this._migrated().catch(() => {}); // the old transports close once the new ones carry media
    if (this._migration) this._endMigration();
  }

  _moving() {
    return this.state === "reconnecting" || this.state === "migrating";
  }

  // ---- liveness --------------------------------------------------------------------------------

  _startPing() {
    this._stopPing();
    this._lastFrame = Date.now();
    const ws = this._ws;
    this._pingTimer = setInterval(() => {
      if (ws !== this._ws || this.state !== "connected") return;
      if (Date.now() - this._lastFrame > this.options.pingDeadline) {
        // The node answered nothing for the deadline: a machine that vanished without a TCP
        // reset, a blackholed path. It is gone.
        // No close frame: the node takes one as a goodbye (its participant would leave at once,
        // for everyone), should it be alive after all. The resumed session fences it instead.
        this._abandonSocket();
        this._beginReconnect(0);
        return;
      }
      this.request("ping", {}, this.options.pingDeadline).catch(() => {});
    }, this.options.pingInterval);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  // ---- migration -------------------------------------------------------------------------------

  // _migrate moves the session to url (a draining node's migrate notification), make-before-
  // break: the current WebSocket and peer connections keep running until the session resumed
  // on url and republished; then `leave` goes to the old node (_endMigration).
  _migrate(url) {
    if (this.state !== "connected" || !this._resume || this._migration || typeof url !== "string" || !url) return;
    const ws = this._ws;
    this._stopPing();
    this._rejectPending(new CascadeError("disconnected", "the session moves to another node"));
    this._ws = null;
    // The old socket stays open, but nothing of it reaches the session any more; its close
    // (the node fences the old copy with `closed` "resumed") is expected.
    ws.onmessage = null;
    ws.onclose = null;
    this._migration = { ws, from: this._url };
    this._avoid = [this._url];
    this._suspendPeers(true);
    this._setState("migrating");
    this._nodes = [{ url }, ...this._nodes];
    this._attempt = 0;
    this._scheduleReconnect(0);
  }

  // _endMigration says goodbye to the node the session left: `leave`, then the close.
  _endMigration() {
    const m = this._migration;
    if (!m) return;
    this._migration = null;
    const ws = m.ws;
    ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      if (ws.readyState === 1) ws.send(JSON.stringify({ id: this._nextId++, method: "leave", data: {} }));
      ws.close(1000, "migrated");
    } catch (_) {
      // already closed
    }
  }

  _requireConnected() {
    if (this.state !== "connected") throw new CascadeError("disconnected", `not connected (${this.state})`);
  }

  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _emitError(error, context) {
    this._emit("error", { error, context });
  }

  // ---- incoming frames -------------------------------------------------------------------------

  _onFrame(ws, raw) {
    if (ws !== this._ws) return;
    this._lastFrame = Date.now();
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (err) {
      this._emitError(new CascadeError("bad_frame", `not JSON: ${err.message}`), "frame");
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.method === "string" && (msg.id === undefined || msg.id === null)) {
      const data = msg.data && typeof msg.data === "object" ? msg.data : {};
      if (msg.method === "closed") {
        // The session ends (replaced, removed, room deleted): the socket closes next, and the
        // client must not reconnect. The close event finishes the session with this reason.
        this._serverReason = typeof data.reason === "string" && data.reason ? data.reason : "closed";
        this._closed = true;
        clearTimeout(this._reconnectTimer);
        return;
      }
      if (msg.method === "resumeToken") {
        if (typeof data.token === "string" && data.token) this._resume = { token: data.token, expires: data.expires };
        return;
      }
      if (msg.method === "migrate") {
        this._migrate(data.url);
        this._emit("migrate", data);
        return;
      }
      try {
        this._onNotification(msg.method, data);
      } catch (err) {
        this._emitError(err, msg.method);
      }
      return;
    }
    const pending = this._pending.get(msg.id);
    if (!pending) return;
    this._pending.delete(msg.id);
    clearTimeout(pending.timer);
    if (msg.ok) {
      pending.resolve(msg.data || {});
    } else {
      const e = msg.error || {};
      pending.reject(new CascadeError(e.code || "internal", e.message || `${pending.method} failed`));
    }
  }
}
