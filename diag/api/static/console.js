// Live progress of a check job: server-sent events from /ui/checks/ID/events, one section per finished host.
"use strict";
(function () {
  const box = document.getElementById("results");
  if (!box || !window.EventSource) return;
  const total = Number(box.dataset.total);
  const stateEl = document.getElementById("state");
  const progEl = document.getElementById("progress");
  let done = 0;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;  // textContent: host output is never parsed as HTML
    return e;
  };
  const src = new EventSource(box.dataset.events);
  src.addEventListener("start", () => { stateEl.textContent = "running"; stateEl.dataset.state = "running"; });
  src.addEventListener("host", (ev) => {
    const r = JSON.parse(ev.data);
    done += 1;
    progEl.textContent = done + "/" + total;
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
    src.close();
  });
})();
