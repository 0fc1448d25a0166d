// The signaling half of the Cascade browser client: the WebSocket, requests and their responses,
// the join (with a placement redirect), reconnection with backoff, and the end of a session.
//
// Signaling knows nothing of rooms or media: the classes built on it (room.js, client.js) supply
// the hooks it calls: _applyJoin(data, reconnected), _onNotification(method, data),
// _teardownPeers(), _restoreMedia() and _forget().

import {
  BACKOFF_MAX_MS,
  BACKOFF_MIN_MS,
  CascadeError,
  ERROR_CLOSE_CODES,
  FATAL_JOIN_CODES,
  FINAL_CLOSE_CODES,
  frameTooBig,
  webSocketURL,
} from "./util.js";

export class Signaling extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = { iceServers: [], iceTransportPolicy: "all", requestTimeout: 10000, reconnect: true, ...options };
    /** "closed" | "connecting" | "connected" | "reconnecting" */
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
    this._token = token;
    this._autoSubscribe = autoSubscribe !== false;
    this._region = region;
    this._redirected = false;
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
  _teardownPeers() {}
  async _restoreMedia() {}
  _forget() {}

  // ---- connection ------------------------------------------------------------------------------

  async _open(reconnected) {
    const token = typeof this._token === "function" ? await this._token() : this._token;
    await this._openSocket();
    let data = await this.request("join", this._joinData(token));
    if (data.redirect && data.redirect.url && !this._redirected) {
      // The node placed this client on a better node (region, load, draining): follow once,
      // and stay there across reconnections.
      this._dropSocket(1000, "redirected");
      this._url = data.redirect.url;
      this._redirected = true;
      await this._openSocket();
      data = await this.request("join", this._joinData(token));
    }
    this._applyJoin(data, reconnected);
    this._attempt = 0;
    this._setState("connected");
    this._emit("joined", { ...data, reconnected });
    return data;
  }

  _joinData(token) {
    const d = { token, autoSubscribe: this._autoSubscribe };
    if (this._region) d.region = this._region;
    if (this._redirected) d.noRedirect = true;
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
      let opened = false;
      ws.onopen = () => {
        opened = true;
        resolve(ws);
      };
      ws.onmessage = (ev) => this._onFrame(ws, ev.data);
      ws.onerror = () => {}; // a close event follows
      ws.onclose = (ev) => {
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
      // The server ended the session for good (replaced, removed, room deleted): no reconnect.
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
    this._dropSocket(1000, reason);
    this._teardownPeers();
    this._forget();
    this.closeReason = reason;
    this._emit("closed", { reason, code });
    this._setState("closed");
  }

  _beginReconnect(code) {
    if (!this.options.reconnect) {
      this._finish("disconnected", code);
      return;
    }
    this._setState("reconnecting");
    this._teardownPeers();
    this._attempt = 0;
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._closed) return;
    clearTimeout(this._reconnectTimer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this._attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5)); // +-25% jitter
    this._attempt++;
    this._reconnectTimer = setTimeout(() => this._reconnectOnce(), delay);
  }

  async _reconnectOnce() {
    this._reconnectTimer = null;
    if (this._closed || this.state !== "reconnecting") return;
    try {
      await this._open(true);
    } catch (err) {
      if (this._closed || this.state !== "reconnecting") return;
      this._dropSocket();
      if (err instanceof CascadeError && FATAL_JOIN_CODES.has(err.code)) {
        this._emitError(err, "reconnect");
        this._finish(err.code, 0);
        return;
      }
      this._scheduleReconnect();
      return;
    }
    try {
      await this._restoreMedia();
    } catch (err) {
      // A drop during the restore starts another reconnection by itself.
      if (this.state === "connected") this._emitError(err, "republish");
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
