// The console's live pages: one server-sent event stream (/ui/events) says what changed; the page then fetches
// itself and swaps its live regions ([data-region] with an id) for the server's new rendering of them, so HTML
// is only ever built by the server's autoescaping templates. SLA time left counts down here, every second.
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
  let busy = false, queued = false, queuedAll = false, queuedKinds = new Set();
  function say(text) {
    if (!status) return;
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
      if (r.status === 401 || (r.redirected && new URL(r.url).pathname === "/ui/login")) { say("Session ended: reload to log in again."); return; }
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
      body.dataset.updated = String(Date.now());
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
  let lastSeq = null, polling = null, ended = false;
  function changed(d) {
    counts(d.counts);
    const moved = lastSeq !== null && d.seq !== lastSeq;
    lastSeq = d.seq;
    // the breaching-soon strip is on every page: incident changes refresh it everywhere
    if (moved && (d.what.some((w) => wants.includes(w)) || d.what.includes("incidents"))) refresh(d.what);
  }
  // When the agent's cap on open event streams is reached (503), or there is no EventSource: ask every 2 s
  // instead, with requests that return at once and hold no server worker.
  function poll() {
    if (polling) return;
    body.dataset.feed = "poll";  // how this page hears of changes now (tests wait for it rather than sleep)
    polling = setInterval(async () => {
      try {
        const r = await fetch("/ui/events?poll=" + (lastSeq === null ? "" : lastSeq), { credentials: "same-origin" });
        if (r.status === 401) { ended = true; clearInterval(polling); say("Session ended: reload to log in again."); return; }
        if (r.ok) { changed(await r.json()); say(""); }
      } catch (e) {
        say("Could not update; retrying.");
      }
    }, 2000);
  }
  if (!window.EventSource) { poll(); return; }
  function connect() {
    const src = new EventSource("/ui/events");
    src.addEventListener("hello", (ev) => {
      const d = JSON.parse(ev.data);
      const again = lastSeq !== null && d.seq !== lastSeq;  // reconnected after missing changes: catch up
      if (polling) { clearInterval(polling); polling = null; }  // a stream again: no more asking
      body.dataset.feed = "stream";
      counts(d.counts);
      lastSeq = d.seq;
      if (again) refresh(null);
      say("");
    });
    src.addEventListener("change", (ev) => changed(JSON.parse(ev.data)));
    src.addEventListener("logout", () => { ended = true; src.close(); say("Session ended: reload to log in again."); });
    src.onerror = () => {
      if (src.readyState !== EventSource.CLOSED || ended) return;  // the browser reconnects by itself
      poll();  // refused (503: every stream slot taken) or gone: ask instead, and try a stream again in a minute
      setTimeout(() => { if (!ended) connect(); }, 60000);
    };
  }
  connect();
  const every = Number(body.dataset.refresh || 0);
  if (every > 0 && wants.length) setInterval(() => refresh(null), every * 1000);  // "checked 5 min ago", new SLA levels
})();
