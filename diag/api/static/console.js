// The console's live pages: one server-sent event stream (/ui/events) says what changed; the page then fetches
// itself and swaps its live regions ([data-region] with an id) for the server's new rendering of them, so HTML
// is only ever built by the server's autoescaping templates. SLA time left counts down here, every second.
// The page always shows how live it is (#live-mode: live / polling / reconnecting / signed out): a screen left
// on all day must never show old data as if it were current.
"use strict";
(function () {
  const body = document.body;
  const wants = (body.dataset.live || "").split(/\s+/).filter(Boolean);
  const status = document.getElementById("live-status");
  let t0 = performance.now();

  // ---- SLA countdown: the same words and thresholds as diag/api/fmt.py and diag/api/incidents.py
  const SOON_SHARE = 0.25, SOON_NO_WINDOW_S = 900;
  function leftText(s) {
    const a = Math.floor(Math.abs(s));
    const t = a >= 3600 ? Math.floor(a / 3600) + " h " + Math.floor((a % 3600) / 60) + " min"
                        : Math.floor(a / 60) + " min " + String(a % 60).padStart(2, "0") + " s";
    return s >= 0 ? t : "breached " + t + " ago";
  }
  function level(left, total) {
    if (left < 0) return "breached";
    return left <= (total > 0 ? SOON_SHARE * total : SOON_NO_WINDOW_S) ? "soon" : "ok";
  }
  function tick() {
    const gone = (performance.now() - t0) / 1000;
    for (const el of document.querySelectorAll(".sla[data-left]")) {
      if (el.dataset.left === "" || el.dataset.left === "None") continue;
      const born = Number(el.dataset.born || 0);
      const left = Number(el.dataset.left) - (gone - born);
      const lv = level(left, Number(el.dataset.total || 0));
      el.textContent = leftText(left);
      el.classList.remove("sla-ok", "sla-soon", "sla-breached");
      el.classList.add("sla-" + lv);
    }
  }
  function stamp(root) {  // a region's countdowns start from the moment it arrived
    const gone = (performance.now() - t0) / 1000;
    for (const el of root.querySelectorAll(".sla[data-left]")) el.dataset.born = String(gone);
  }
  setInterval(tick, 1000);

  // ---- live regions: [data-region="incidents jobs"] is swapped when one of those kinds changed
  let busy = false, queued = false, queuedAll = false, queuedKinds = new Set(), ended = false;
  function say(text) {
    if (!status || ended) return;
    status.textContent = text;
    status.hidden = !text;
  }
  async function refresh(kinds) {  // kinds: what changed (null: everything, the periodic refresh)
    if (busy) {  // one fetch at a time; what comes meanwhile is done once, right after
      queued = true;
      if (kinds === null) queuedAll = true; else kinds.forEach((k) => queuedKinds.add(k));
      return;
    }
    busy = true;
    const only = kinds === null ? null : new Set(kinds);
    try {
      const r = await fetch(location.href, { credentials: "same-origin", headers: { "X-Diag-Live": "1" } });
      if (r.status === 401) { signedOut(r.headers.get("X-Diag-Signed-Out")); return; }
      if (!r.ok) { say("Could not update (" + r.status + "); retrying."); return; }
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      for (const fresh of doc.querySelectorAll("[data-region][id]")) {
        const old = document.getElementById(fresh.id);
        if (!old) continue;
        const mine = (fresh.dataset.region || "").split(/\s+/).filter(Boolean);
        if (only && mine.length && !mine.some((k) => only.has(k))) continue;  // not what moved
        if (old.contains(document.activeElement) && document.activeElement !== document.body) continue;  // typing here
        const edited = [...old.querySelectorAll("input:not([type=hidden]), textarea")].some((f) => f.value !== f.defaultValue);
        if (edited) continue;  // a comment half written stays until it is sent
        if (old.innerHTML === fresh.innerHTML) continue;  // nothing new: keep the nodes (and what points at them)
        const node = document.importNode(fresh, true);
        stamp(node);
        const was = [...old.querySelectorAll("details")], now = [...node.querySelectorAll("details")];
        if (was.length === now.length) was.forEach((d, i) => { now[i].open = d.open; });  // keep what was unfolded
        old.replaceWith(node);
      }
      tick();
      say("");
      fresh();
    } catch (e) {
      say("Could not update; retrying.");
    } finally {
      busy = false;
      if (queued) {
        const next = queuedAll ? null : [...queuedKinds];
        queued = false; queuedAll = false; queuedKinds = new Set();
        setTimeout(() => refresh(next), 100);
      }
    }
  }
  function counts(c) {
    for (const [k, v] of Object.entries(c || {})) {
      for (const el of document.querySelectorAll('[data-count="' + k + '"]')) el.textContent = String(v);
    }
  }

  stamp(document);
  if (!document.getElementById("counts")) return;

  // ---- how live the page is, on screen
  const mode = document.getElementById("live-mode");
  let state = "";
  function clock(ms) { return new Date(ms).toTimeString().slice(0, 8); }
  function fresh() { body.dataset.updated = String(Date.now()); }
  function show(s, text) {  // s: live | polling | reconnecting | signed-out
    state = s;
    body.dataset.liveState = s;
    body.classList.toggle("stale", s === "reconnecting" || s === "signed-out");
    if (!mode) return;
    mode.dataset.state = s;
    mode.textContent = text;
  }
  function reconnecting() {
    if (ended) return;
    const at = Number(body.dataset.updated || 0);
    show("reconnecting", "Reconnecting… " + (at ? "data from " + clock(at) : "no data yet"));
  }
  const WHY = {
    expired: "Signed out: session expired — sign in again.",
    idle: "Signed out: session expired — sign in again.",
    revoked: "Signed out: the token of this session was revoked — sign in again.",
  };
  function signedOut(why) {
    if (ended) return;
    ended = true;
    if (src) src.close();
    if (polling) { clearInterval(polling); polling = null; }
    show("signed-out", "Signed out");
    if (!status) return;
    status.textContent = "";
    status.append((WHY[why] || "Signed out — sign in again.") + " ");
    const a = document.createElement("a");  // built with the DOM: no HTML from text
    a.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
    a.textContent = "Sign in";
    status.append(a);
    status.setAttribute("role", "alert");
    status.classList.add("ended");
    status.hidden = false;
  }

  // ---- what changed: a stream (or polling when no stream slot is free), with the last event's id
  // the state this page was rendered from: what moved after it is fetched at once (first poll or stream)
  let lastId = null, lastEpoch = null, lastSeq = null, polling = null, src = null, heard = Date.now();
  const born = /^([0-9a-f]{8})-([0-9]+)$/.exec(body.dataset.liveId || "");
  if (born) { lastId = born[0]; lastEpoch = born[1]; lastSeq = Number(born[2]); }
  let keepalive = 5;
  function changed(d) {
    heard = Date.now();
    counts(d.counts);
    const resync = d.resync || (lastEpoch !== null && d.epoch !== lastEpoch);  // the agent restarted meanwhile
    const moved = lastSeq !== null && d.seq !== lastSeq;
    lastSeq = d.seq; lastEpoch = d.epoch; lastId = d.epoch + "-" + d.seq;
    if (resync) { refresh(null); return; }
    // the breaching-soon strip is on every page: incident changes refresh it everywhere
    if (moved && (d.what.some((w) => wants.includes(w)) || d.what.includes("incidents"))) refresh(d.what);
  }
  // When the agent's cap on open event streams is reached (503), or there is no EventSource: ask every 2 s
  // instead, with requests that return at once and hold no server worker. Said on screen: it is a little later.
  function poll() {
    if (polling || ended) return;
    body.dataset.feed = "poll";  // how this page hears of changes now (tests wait for it rather than sleep)
    show("polling", "Polling every 2 s (no live stream free)");
    polling = setInterval(async () => {
      try {
        const r = await fetch("/ui/events?poll=" + encodeURIComponent(lastId || ""), { credentials: "same-origin" });
        if (r.status === 401) { signedOut(r.headers.get("X-Diag-Signed-Out")); return; }
        if (!r.ok) { reconnecting(); return; }
        changed(await r.json());
        fresh();
        if (state !== "polling") { show("polling", "Polling every 2 s (no live stream free)"); say(""); }
      } catch (e) {
        reconnecting();
      }
    }, 2000);
  }
  if (!window.EventSource) { poll(); return; }
  async function why() {  // a stream was refused: for want of a session, of a free slot, or is the agent away?
    try {
      const r = await fetch("/ui/events?poll=" + encodeURIComponent(lastId || ""), { credentials: "same-origin" });
      if (r.status === 401) { signedOut(r.headers.get("X-Diag-Signed-Out")); return; }
      if (!r.ok) throw new Error(String(r.status));
    } catch (e) {  // away (restarting, the network down): keep trying a stream every few seconds
      reconnecting();
      setTimeout(connect, 3000);
      return;
    }
    poll();  // it answers, but had no stream for us: ask every 2 s, and try a stream again in 15 s
    setTimeout(connect, 15000);  // one cheap request per 15 s a page: a freed slot is taken back soon
  }
  function connect() {
    if (ended || (src && src.readyState !== EventSource.CLOSED)) return;
    // a stream opened by hand (not the browser's own reconnect) names the last event seen itself
    src = new EventSource("/ui/events" + (lastId ? "?last=" + encodeURIComponent(lastId) : ""));
    const mine = src;
    src.addEventListener("hello", (ev) => {
      const d = JSON.parse(ev.data);
      if (polling) { clearInterval(polling); polling = null; }  // a stream again: no more asking
      body.dataset.feed = "stream";
      keepalive = Number(d.keepalive || 5);
      const behind = lastSeq !== null && d.epoch === lastEpoch && d.seq !== lastSeq && !d.resync;
      changed({ ...d, what: [] });
      if (behind) refresh(null);  // a stream opened without our last id (after polling): catch up
      fresh();
      show("live", "Live");
      say("");
    });
    src.addEventListener("change", (ev) => { changed(JSON.parse(ev.data)); fresh(); });
    src.addEventListener("ping", () => { heard = Date.now(); fresh(); if (state !== "live") show("live", "Live"); });
    src.addEventListener("logout", (ev) => { signedOut(JSON.parse(ev.data).reason); });
    src.onerror = () => {
      if (ended || mine !== src) return;
      if (src.readyState !== EventSource.CLOSED) { reconnecting(); return; }  // the browser reconnects by itself
      why();  // refused: 401 (session ended), 503 (every stream slot taken), or the agent is away
    };
  }
  // a stream that says nothing for three pings is dead (a network that dropped without a reset): open another
  setInterval(() => {
    if (ended || !src || polling || src.readyState === EventSource.CLOSED) return;
    if (Date.now() - heard > (3 * keepalive + 2) * 1000) {
      src.close();
      heard = Date.now();
      reconnecting();
      connect();
    }
  }, 1000);
  connect();
  const every = Number(body.dataset.refresh || 0);
  if (every > 0 && wants.length) setInterval(() => { if (!ended) refresh(null); }, every * 1000);  // "checked 5 min ago", SLA levels
})();
