"use strict";
// The cluster view: polls /cluster?format=json (and the picked room's detail) every 2 s. Every
// name is put in with textContent or setAttribute, never parsed as HTML: room names and
// identities may hold any characters.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const EVERY = 2000;
  const $ = (id) => document.getElementById(id);
  const state = { picked: pickedFromHash(), view: null, detail: null, updated: null, keys: {} };
  window.cascadeView = state; // for the console and the tests

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  // changed tells whether what a part shows differs from what it showed: unchanged parts are
  // not rebuilt, so nothing flickers and a hovered or focused element stays put.
  function changed(part, data) {
    const key = JSON.stringify(data);
    if (state.keys[part] === key) return false;
    state.keys[part] = key;
    return true;
  }
  function pickedFromHash() {
    const m = /^#room=(.*)$/.exec(location.hash);
    if (!m) return null;
    try { return decodeURIComponent(m[1]); } catch (e) { return null; }
  }

  // Regions get a colour from their name, so a region keeps its colour from one refresh (and
  // one page) to the next.
  function regionColour(region) {
    if (!region) return "#9e9e9e";
    let h = 2166136261;
    for (let i = 0; i < region.length; i++) { h ^= region.charCodeAt(i); h = Math.imul(h, 16777619); }
    return "hsl(" + ((h >>> 0) % 360) + ", 65%, 48%)";
  }
  function regionLabel(region) { return region || "no region"; }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON: reported below */ }
    if (!r.ok) {
      const err = new Error((body && body.message) || ("HTTP " + r.status));
      err.status = r.status; err.code = body && body.code;
      throw err;
    }
    return body;
  }

  function regionsOf(v) {
    const byNode = {};
    for (const n of v.nodes || []) byNode[n.id] = n.region || "";
    for (const r of v.cluster_rooms || []) for (const n of r.nodes || []) if (!(n.id in byNode)) byNode[n.id] = n.region || "";
    return byNode;
  }

  function renderNodes(v) {
    $("me").textContent = "seen from " + v.node;
    const groups = new Map();
    for (const n of v.nodes || []) {
      const k = n.region || "";
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(n);
    }
    const regions = [...groups.keys()].sort();
    if (changed("nodes", [v.node, v.nodes && v.nodes.map((n) => [n.id, n.region, n.participants, n.consumers, n.producers, n.rooms, n.draining])])) {
      const box = $("regions");
      const parts = [];
      for (const region of regions) {
        const div = el("div", null, "region");
        div.dataset.region = region;
        div.style.setProperty("--c", regionColour(region));
        const h = el("h3"); h.appendChild(el("span", null, "swatch")); h.appendChild(document.createTextNode(regionLabel(region)));
        div.appendChild(h);
        const nodes = el("div", null, "nodes");
        for (const n of groups.get(region).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
          const card = el("div", null, "node" + (n.id === v.node ? " self" : "") + (n.draining ? " draining" : ""));
          card.dataset.node = n.id;
          const id = el("div", n.id, "id");
          if (n.id === v.node) id.appendChild(el("small", " (this node)"));
          if (n.draining) id.appendChild(el("span", "draining", "badge"));
          card.appendChild(id);
          const load = el("ul", null, "load");
          for (const [label, x] of [["participants", n.participants], ["consumers", n.consumers], ["producers", n.producers], ["rooms", n.rooms]]) {
            const li = el("li", label + ": " + (x || 0)); li.dataset.stat = label; load.appendChild(li);
          }
          card.appendChild(load);
          nodes.appendChild(card);
        }
        div.appendChild(nodes);
        parts.push(div);
      }
      box.replaceChildren(...parts);
    }
    const un = $("unreachable");
    un.hidden = !(v.unreachable && v.unreachable.length);
    un.textContent = un.hidden ? "" : "Did not answer in time (their rooms may be missing): " + v.unreachable.join(", ");
    $("links").textContent = (v.relay_links || []).join(", ") || "none";
  }

  // roomsOf is the cluster's listing, or this node's own rooms when the listing failed.
  function roomsOf(v) {
    if (!v.error) return v.cluster_rooms || [];
    return (v.rooms || []).map((r) => ({
      name: r.name, participants: r.participants, publishers: (r.publishers || []).length, producers: (r.producers || []).length,
      nodes: Object.entries(r.per_node || {}).sort().map(([id, participants]) => ({ id, participants })),
    }));
  }

  function renderRooms(v) {
    const rooms = roomsOf(v);
    const note = $("roomnote");
    note.hidden = !v.error && !v.cluster_rooms_more;
    note.textContent = v.error ? "The cluster's listing failed (" + v.error.message + "): showing the rooms open on this node only."
      : v.cluster_rooms_more ? "Showing the first " + rooms.length + " rooms; the room API (GET /api/rooms) pages through the rest." : "";
    $("roomcount").textContent = "(" + rooms.length + ")";
    $("norooms").hidden = rooms.length > 0;
    const regions = regionsOf(v);
    if (!changed("rooms", [state.picked, rooms, regions])) return;
    const rows = [];
    for (const r of rooms) {
      const tr = el("tr", null, r.name === state.picked ? "selected" : "");
      tr.dataset.room = r.name;
      const name = el("td"); const b = el("button", r.name, "pick"); b.type = "button";
      b.title = "draw the relay trees of this room";
      b.addEventListener("click", () => pick(r.name));
      name.appendChild(b); tr.appendChild(name);
      for (const x of [r.participants, r.publishers, r.producers]) tr.appendChild(el("td", x || 0, "num"));
      const nodes = el("td", null, "nodes");
      (r.nodes || []).forEach((n, i) => {
        if (i) nodes.appendChild(document.createTextNode(", "));
        const region = regions[n.id] || n.region || "";
        const sw = el("span", null, "swatch"); sw.style.background = regionColour(region);
        sw.title = regionLabel(region);
        nodes.appendChild(sw);
        nodes.appendChild(document.createTextNode(n.id + " (" + n.participants + ")"));
      });
      tr.appendChild(nodes);
      rows.push(tr);
    }
    document.querySelector("#rooms tbody").replaceChildren(...rows);
  }

  function pick(name) {
    state.picked = name;
    history.replaceState(null, "", "#room=" + encodeURIComponent(name));
    state.keys = {}; // redraw the selection at once
    if (state.view) { renderRooms(state.view); }
    refresh();
  }

  // layout places a tree's nodes: depth down, leaves left to right, a parent above the middle
  // of its children. Every node is placed once, whatever the edges say (a loop or an unknown
  // parent draws as another root rather than hanging the page).
  function layout(origin, edges) {
    const parent = {};
    const kids = {};
    const all = new Set(origin ? [origin] : []);
    for (const e of edges || []) {
      all.add(e.node);
      if (e.parent && e.parent !== e.node) { parent[e.node] = e.parent; all.add(e.parent); }
    }
    for (const [c, p] of Object.entries(parent)) (kids[p] = kids[p] || []).push(c);
    for (const k of Object.values(kids)) k.sort();
    const pos = {};
    let slot = 0, depthMax = 0;
    function place(n, depth) {
      pos[n] = { depth, x: 0 };
      depthMax = Math.max(depthMax, depth);
      const cs = (kids[n] || []).filter((c) => !(c in pos));
      if (!cs.length) { pos[n].x = slot++; return; }
      for (const c of cs) place(c, depth + 1);
      pos[n].x = (pos[cs[0]].x + pos[cs[cs.length - 1]].x) / 2;
    }
    const roots = [];
    if (origin) roots.push(origin);
    for (const n of [...all].sort()) if (n !== origin && !(n in parent)) roots.push(n);
    for (const n of [...all].sort()) if (!roots.includes(n)) roots.push(n); // left over: loops
    for (const r of roots) if (!(r in pos)) place(r, 0);
    return { pos, parent, slots: Math.max(slot, 1), depth: depthMax };
  }

  function short(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  function drawTree(p, regions) {
    const origin = p.origin || ((p.tree || []).find((e) => !e.parent) || {}).node || "";
    const { pos, parent, slots, depth } = layout(origin, p.tree);
    const W = 130, H = 64, R = 14;
    const width = slots * W, height = depth * H + 2 * R + 12;
    const s = svg("svg", { class: "tree", width, height, viewBox: "0 0 " + width + " " + height, role: "img" });
    const title = svg("title"); title.textContent = "relay tree of " + p.id + " from " + origin; s.appendChild(title);
    const at = (n) => ({ x: pos[n].x * W + R + 8, y: pos[n].depth * H + R + 6 });
    for (const [c, par] of Object.entries(parent)) {
      if (!(par in pos) || !(c in pos)) continue;
      const a = at(par), b = at(c);
      const cross = (regions[par] || "") !== (regions[c] || "");
      const line = svg("line", { x1: a.x, y1: a.y + R, x2: b.x, y2: b.y - R, class: "edge" + (cross ? " cross" : ""), "data-from": par, "data-to": c, "data-cross": cross });
      const lt = svg("title");
      lt.textContent = par + " → " + c + (cross ? " (crosses from " + regionLabel(regions[par]) + " to " + regionLabel(regions[c]) + ")" : "");
      line.appendChild(lt);
      s.appendChild(line);
      if (cross) {
        const t = svg("text", { x: (a.x + b.x) / 2 + 4, y: (a.y + b.y) / 2 + 4, class: "cross" });
        t.textContent = "⇄ region";
        s.appendChild(t);
      }
    }
    for (const n of Object.keys(pos).sort()) {
      const c = at(n);
      const g = svg("g", { class: "tnode" + (n === origin ? " origin" : ""), "data-node": n, "data-region": regions[n] || "" });
      const gt = svg("title");
      gt.textContent = n + " (" + regionLabel(regions[n]) + ")" + (n === origin ? ": origin" : "");
      g.appendChild(gt);
      g.appendChild(svg("circle", { cx: c.x, cy: c.y, r: R, fill: regionColour(regions[n]) }));
      const t = svg("text", { x: c.x + R + 4, y: c.y + 4 });
      t.textContent = short(n, 16);
      g.appendChild(t);
      s.appendChild(g);
    }
    return s;
  }

  function renderDetail(v, d, err) {
    const sec = $("detail");
    if (state.picked === null) { sec.hidden = true; return; }
    sec.hidden = false;
    $("detail-name").textContent = state.picked;
    let producers = d ? d.producerList || [] : null;
    let note = "";
    if (!d) {
      const local = (v.rooms || []).find((r) => r.name === state.picked);
      if (err && err.status === 404) note = "This room is not open anywhere in the cluster.";
      else note = "The room's detail failed (" + (err ? err.message : "?") + ")" + (local ? ": showing this node's knowledge of it." : ".");
      producers = local ? (local.producers || []).map((p) => ({ ...p, origin: p.origin || v.node })) : [];
    } else if (!producers.length) {
      note = "Nobody publishes in this room.";
    }
    const st = $("detail-status");
    st.textContent = note;
    st.className = d ? "" : "warn";
    const regions = regionsOf(v);
    if (!changed("detail", [state.picked, producers, regions])) return;
    const used = new Set();
    const cards = [];
    for (const p of producers) {
      const card = el("div", null, "producer");
      card.dataset.producer = p.id;
      const h = el("h3", (p.kind || "?") + " of " + (p.participant || "?") + " · from " + (p.origin || "?"));
      if (p.muted) h.appendChild(el("span", " (muted)", "muted"));
      h.title = p.id;
      card.appendChild(h);
      card.appendChild(drawTree(p, regions));
      for (const e of p.tree || []) used.add(regions[e.node] || "");
      used.add(regions[p.origin] || "");
      cards.push(card);
    }
    $("trees").replaceChildren(...cards);
    const legend = [];
    for (const r of [...used].sort()) {
      const item = el("span"); const sw = el("span", null, "swatch"); sw.style.background = regionColour(r);
      item.appendChild(sw); item.appendChild(document.createTextNode(regionLabel(r))); legend.push(item);
    }
    if (cards.length) legend.push(el("span", "dashed orange edge: the stream crosses a region boundary"));
    $("legend").replaceChildren(...legend);
  }

  function stamp(d) { return d.toLocaleTimeString([], { hour12: false }); }

  let running = false, again = false;
  async function refresh() {
    if (running) { again = true; return; } // a pick while a fetch runs: fetch again after it
    running = true;
    const st = $("status");
    try {
      const v = await getJSON("/cluster?format=json");
      let d = null, derr = null;
      if (state.picked !== null) {
        try { d = await getJSON("/cluster?format=json&room=" + encodeURIComponent(state.picked)); } catch (e) { derr = e; }
      }
      state.view = v; state.detail = d; state.updated = new Date();
      renderNodes(v);
      renderRooms(v);
      renderDetail(v, d, derr);
      st.className = v.error ? "error" : "";
      st.textContent = "Last updated " + stamp(state.updated) + (v.error ? "; the cluster's listing failed: " + v.error.message : "");
    } catch (e) {
      st.className = "error";
      st.textContent = "Update failed at " + stamp(new Date()) + ": " + e.message +
        (state.updated ? "; showing the view of " + stamp(state.updated) : "") + ". Retrying.";
    } finally {
      running = false;
      if (again) { again = false; setTimeout(refresh, 0); }
    }
  }

  async function loop() {
    await refresh();
    setTimeout(loop, EVERY);
  }
  window.addEventListener("hashchange", () => { const r = pickedFromHash(); if (r !== null && r !== state.picked) pick(r); });
  loop();
})();
