// A check job's page: every target is a row (queued, running, done, with elapsed time), and each host's findings
// with their evidence appear as it finishes. Server-sent events from /ui/checks/ID/events; built with textContent
// only, so host output is never parsed as HTML.
"use strict";
(function () {
  const box = document.getElementById("results");
  if (!box || !window.EventSource) return;
  const total = Number(box.dataset.total);
  const stateEl = document.getElementById("state");
  const progEl = document.getElementById("progress");
  const running = new Map();  // host -> performance.now() at which its elapsed time was elapsed_s
  const seen = new Set();
  let done = 0;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;  // textContent: host output is never parsed as HTML
    return e;
  };
  const row = (host) => document.querySelector('#targets tr[data-host="' + CSS.escape(host) + '"]');
  function phase(tr, name) {
    tr.dataset.phase = name;
    const cell = tr.querySelector(".phase");
    cell.replaceChildren(el("span", "ph ph-" + name, name));
  }
  for (const tr of document.querySelectorAll('#targets tr[data-phase="running"]')) {
    const e = tr.querySelector(".elapsed");
    running.set(tr.dataset.host, performance.now() - 1000 * Number(e.dataset.elapsed || 0));
  }
  setInterval(() => {
    for (const [host, since] of running) {
      const tr = row(host);
      if (tr) tr.querySelector(".elapsed").textContent = ((performance.now() - since) / 1000).toFixed(1) + " s";
    }
  }, 250);
  const src = new EventSource(box.dataset.events);
  src.addEventListener("start", () => { stateEl.textContent = "running"; stateEl.dataset.state = "running"; });
  src.addEventListener("running", (ev) => {
    const d = JSON.parse(ev.data);
    const tr = row(d.host);
    if (!tr || seen.has(d.host)) return;
    phase(tr, "running");
    running.set(d.host, performance.now() - 1000 * d.elapsed_s);
    tr.querySelector(".elapsed").textContent = d.elapsed_s.toFixed(1) + " s";
  });
  src.addEventListener("host", (ev) => {
    const r = JSON.parse(ev.data);
    if (seen.has(r.host)) return;
    seen.add(r.host);
    done += 1;
    progEl.textContent = done + "/" + total;
    running.delete(r.host);
    const tr = row(r.host);
    if (tr) {
      phase(tr, "done");
      tr.querySelector(".elapsed").textContent = r.duration_s.toFixed(1) + " s";
      tr.querySelector(".status").replaceChildren(el("span", "st st-" + r.status, r.status));
      const nf = tr.querySelector(".nfind");
      nf.replaceChildren(document.createTextNode(String(r.findings.length)));
      if (r.worst) { nf.appendChild(document.createTextNode(" ")); nf.appendChild(el("span", "sev sev-" + r.worst, r.worst)); }
    }
    const sec = el("section", "host");
    sec.dataset.host = r.host;
    const h = el("h2", null, r.host + " ");
    h.appendChild(el("span", "st st-" + r.status, r.status));
    h.appendChild(el("small", null, " " + r.duration_s.toFixed(2) + " s"));
    sec.appendChild(h);
    if (r.error) sec.appendChild(el("p", "error", r.error));
    for (const f of r.findings) {
      const d = el("div", "finding");
      d.appendChild(el("span", "sev sev-" + f.severity, f.severity));
      d.appendChild(document.createTextNode(" "));
      d.appendChild(el("strong", null, f.summary));
      d.appendChild(el("small", null, " [" + f.check + "]"));
      for (const e of f.evidence) {
        const det = el("details");
        det.appendChild(el("summary", null, "$ " + e.title));
        det.appendChild(el("pre", null, e.text));
        d.appendChild(det);
      }
      sec.appendChild(d);
    }
    for (const s of r.steps) {
      if (s.status === "needs_approval") sec.appendChild(el("p", "held", "step " + s.id + " not run: needs approval"));
    }
    if (!r.findings.length && !r.error) sec.appendChild(el("p", "ok", "no findings"));
    box.appendChild(sec);
  });
  src.addEventListener("done", (ev) => {
    const d = JSON.parse(ev.data);
    stateEl.textContent = d.state + " (exit " + d.exit_status + ")";
    stateEl.dataset.state = d.state;
    for (const tr of document.querySelectorAll('#targets tr[data-phase="queued"]')) phase(tr, "skipped");
    running.clear();
    src.close();
  });
})();
