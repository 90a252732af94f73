// The live part of the page: events from the journal's Server-Sent Events
// stream, newest first, and a status line from /v0/summary. Everything is
// built with textContent: payloads and topics are anyone's text.
"use strict";

(function () {
  const MAX_ROWS = 200; // rows kept in the list, and events held while paused
  const HISTORY = 20; // events of history shown when the stream opens
  const MAX_TEXT = 20000; // characters of one payload shown
  const SUMMARY_EVERY = 5000; // ms

  const $ = (id) => document.getElementById(id);
  const list = $("events"); // absent when the bus keeps no journal
  const form = $("controls");
  const input = $("filter");
  const pauseBtn = $("pause");
  const state = $("stream-state");
  const shown = $("shown");
  const status = $("status");

  let es = null;
  let filter = new URLSearchParams(location.search).get("filter") || (input && input.value) || "#";
  let paused = false;
  let pending = []; // events that arrived while paused, oldest first
  let dropped = 0; // events that did not fit in pending
  let received = 0;
  let lastSeq = 0;
  let summary = null;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setState(text, cls) {
    state.textContent = text;
    state.className = cls || "";
  }

  // --- the stream -------------------------------------------------------

  function streamURL() {
    const q = new URLSearchParams({ filter: filter });
    const j = summary && summary.journal;
    if (j && j.last_seq > 0) {
      q.set("since", String(Math.max(j.first_seq || 1, j.last_seq - HISTORY + 1)));
    }
    return "/v0/events/stream?" + q.toString();
  }

  function open() {
    if (es) es.close();
    list.replaceChildren(el("li", "empty", "Waiting for events on " + filter + " …"));
    received = 0;
    lastSeq = 0;
    pending = [];
    dropped = 0;
    updateCounts();
    const url = streamURL();
    const src = new EventSource(url);
    es = src;
    setState("connecting…");
    src.onopen = () => { if (es === src && !paused) setState("live", "s-live"); };
    const receive = (m) => {
      if (es !== src) return;
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (typeof ev.seq !== "number" || ev.seq <= lastSeq) return;
      lastSeq = ev.seq;
      received++;
      if (paused) {
        pending.push(ev);
        if (pending.length > MAX_ROWS) { pending.shift(); dropped++; }
      } else {
        show(ev, true);
      }
      updateCounts();
    };
    src.onmessage = receive;
    src.addEventListener("gap", receive); // a marker where the journal lost messages
    src.addEventListener("truncated", (m) => {
      let t = {};
      try { t = JSON.parse(m.data); } catch (e) { /* keep the plain note */ }
      note("History before #" + t.first_seq + " is no longer kept.");
    });
    src.onerror = () => {
      if (es !== src) return;
      if (src.readyState === EventSource.CLOSED) {
        explain(url);
      } else {
        setState("reconnecting…", "s-retry"); // EventSource resumes by itself after the last id
      }
    };
  }

  // EventSource does not say why a server refused it; ask once, plainly.
  function explain(url) {
    setState("stream closed", "s-error");
    const ctl = new AbortController();
    fetch(url, { signal: ctl.signal }).then((r) => {
      if (r.ok) { ctl.abort(); setState("stream closed by the server", "s-error"); return; }
      return r.text().then((t) => {
        let msg = t;
        try { msg = JSON.parse(t).error || t; } catch (e) { /* not JSON: show the text */ }
        setState("stream refused: " + msg.trim().slice(0, 300), "s-error");
      });
    }).catch(() => setState("stream closed: the server cannot be reached", "s-error"));
  }

  // --- rendering ----------------------------------------------------------

  function payloadText(ev) {
    let text;
    if ("payload" in ev) {
      text = JSON.stringify(ev.payload, null, 2);
    } else if (typeof ev.payload_base64 === "string") {
      let bytes;
      try {
        bytes = Uint8Array.from(atob(ev.payload_base64), (c) => c.charCodeAt(0));
      } catch (e) {
        return "(undecodable payload)";
      }
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch (e) {
        const hex = Array.from(bytes.subarray(0, 256), (b) => b.toString(16).padStart(2, "0")).join(" ");
        return "(" + bytes.length + " bytes, not text)\n" + hex + (bytes.length > 256 ? " …" : "");
      }
    } else {
      text = "";
    }
    if (text.length > MAX_TEXT) {
      text = text.slice(0, MAX_TEXT) + "\n… (" + (text.length - MAX_TEXT) + " more characters)";
    }
    return text;
  }

  function prepend(li) {
    const first = list.firstElementChild;
    if (first && first.classList.contains("empty")) first.remove();
    list.prepend(li);
    while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
  }

  function note(text) {
    prepend(el("li", "note-row", text));
  }

  function show(ev, fresh) {
    const li = el("li", fresh ? "event fresh" : "event");
    li.dataset.seq = String(ev.seq);
    const head = el("div", "head");
    head.append(el("span", "seq", "#" + ev.seq));
    const t = new Date(ev.time);
    const time = el("time", "time", isNaN(t) ? String(ev.time) : t.toLocaleTimeString());
    time.dateTime = String(ev.time);
    time.title = String(ev.time);
    head.append(time);
    if (ev.gap) {
      li.classList.add("gap");
      head.append(el("span", "gap-text", "gap: " + Number(ev.gap.lost) + " messages were not journaled (" + String(ev.gap.reason) + ")"));
      li.append(head);
    } else {
      head.append(el("span", "topic", String(ev.topic)));
      li.append(head, el("pre", "payload", payloadText(ev)));
    }
    prepend(li);
  }

  function updateCounts() {
    let s = received === 1 ? "1 event" : received + " events";
    if (received > MAX_ROWS) s += ", newest " + MAX_ROWS + " shown";
    shown.textContent = "· " + s;
    pauseBtn.textContent = paused ? "Resume" + (pending.length ? " (" + (pending.length + dropped) + " new)" : "") : "Pause";
  }

  // --- controls -------------------------------------------------------------

  if (list) form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = input.value.trim() || "#";
    input.value = f;
    filter = f;
    const u = new URL(location.href);
    if (f === "#") u.searchParams.delete("filter"); else u.searchParams.set("filter", f);
    history.replaceState(null, "", u);
    open();
  });

  if (list) pauseBtn.addEventListener("click", () => {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    if (paused) {
      setState("paused", "s-paused");
    } else {
      pending.forEach((ev) => show(ev, false));
      pending = [];
      dropped = 0;
      setState(es && es.readyState === EventSource.OPEN ? "live" : "connecting…", es && es.readyState === EventSource.OPEN ? "s-live" : "");
    }
    updateCounts();
  });

  // --- the status line ------------------------------------------------------

  function num(n) { return Number(n).toLocaleString(); }

  function span(seconds) {
    if (!(seconds > 0)) return "";
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m";
    return Math.floor(seconds) + "s";
  }

  function renderSummary(s) {
    const parts = [];
    const b = (text) => el("b", null, text);
    parts.push([b(num(s.clients)), " clients"]);
    const epm = Number(s.events_per_minute);
    parts.push([b(epm < 10 ? epm.toFixed(1) : num(Math.round(epm))), " events/min"]);
    const j = s.journal;
    if (j && j.last_seq > 0) {
      const secs = (Date.parse(j.last_time) - Date.parse(j.first_time)) / 1000;
      const p = ["journal ", b("#" + num(j.first_seq) + "–#" + num(j.last_seq))];
      if (secs > 0) p.push(" over " + span(secs));
      const since = new Date(j.first_time);
      if (!isNaN(since)) p.push(" (since " + since.toLocaleString() + ")");
      parts.push(p);
    } else if (j) {
      parts.push(["journal empty"]);
    } else {
      parts.push(["no journal"]);
    }
    const out = [];
    parts.forEach((p, i) => { if (i) out.push(" · "); out.push(...p); });
    status.replaceChildren(...out);
    status.hidden = false;
  }

  function fetchSummary() {
    return fetch("/v0/summary", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .then((s) => { if (s) { summary = s; renderSummary(s); } })
      .catch(() => {});
  }

  // --- copy buttons on the examples -------------------------------------------

  document.querySelectorAll("pre.code").forEach((pre) => {
    const btn = el("button", "copy", "Copy");
    btn.type = "button";
    btn.addEventListener("click", () => {
      const text = pre.querySelector("code").textContent;
      const done = () => { btn.textContent = "Copied"; setTimeout(() => { btn.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, () => {});
      } else {
        const r = document.createRange();
        r.selectNodeContents(pre.querySelector("code"));
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        if (document.execCommand("copy")) done();
      }
    });
    pre.append(btn);
  });

  if (list) {
    input.value = filter;
    $("live-ui").hidden = false;
    fetchSummary().then(open);
  } else {
    fetchSummary();
  }
  setInterval(() => { if (!document.hidden) fetchSummary(); }, SUMMARY_EVERY);
})();
