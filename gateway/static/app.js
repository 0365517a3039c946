// The edgegate status page: reads /status/events (Server-Sent Events) and keeps
// four tables up to date. Read-only; no framework. Every name shown comes from the
// network (device ids, points, values), so text is only ever set with textContent.
"use strict";

const MAX_STREAM_ROWS = 200;
const SPARK_VALUES = 60; // as many as the first snapshot's history carries
const STATE_CHANGES = 6; // state changes kept per device
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let source = null;
let paused = false;
let lastSnapshot = null;
const latestRows = new Map(); // "device\u0000point" -> row
// Sparklines: "device\u0000point" -> {values, seq}. Seeded by the first snapshot's
// history (what the hub's ring holds), extended by every newer value the page sees.
const series = new Map();
// The state changes this page has seen, per device: [{state, since}], newest last.
// The gateway keeps only a device's current state and since when; what happened
// before the page was opened is not known.
const stateLog = new Map();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c);
  return tr;
}

function ago(iso) {
  if (!iso) return "never";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 1) return "now";
  if (s < 60) return Math.round(s) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  if (s < 86400) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}

function duration(sec) {
  sec = Math.floor(sec);
  const d = Math.floor(sec / 86400), h = Math.floor(sec / 3600) % 24, m = Math.floor(sec / 60) % 60, s = sec % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + s + "s";
  return s + "s";
}

function clock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function replaceBody(table, rows) {
  const tb = $(table).tBodies[0];
  tb.replaceChildren(...rows);
}

const NUMERIC = new Set(["double", "int", "uint"]);

function extendSeries(m) {
  if (!NUMERIC.has(m.kind)) return;
  const v = Number(m.value);
  if (!isFinite(v)) return;
  const key = m.device + "\u0000" + m.point;
  let s = series.get(key);
  if (!s) { s = { values: [], seq: 0 }; series.set(key, s); }
  if (m.seq <= s.seq) return;
  s.values.push(v);
  if (s.values.length > SPARK_VALUES) s.values.splice(0, s.values.length - SPARK_VALUES);
  s.seq = m.seq;
}

// spark draws values as an inline SVG polyline (no image fetched, nothing inline
// that the CSP would refuse): the range is the values' own, labelled in the title.
function spark(values) {
  const w = 120, h = 22, pad = 2;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.dataset.values = values.length;
  if (values.length === 0) return svg;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (i) => values.length === 1 ? w - pad : pad + (i * (w - 2 * pad)) / (values.length - 1);
  const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / (hi - lo);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" "));
  svg.appendChild(line);
  const dot = document.createElementNS(SVG, "circle");
  dot.setAttribute("cx", x(values.length - 1).toFixed(1));
  dot.setAttribute("cy", y(values[values.length - 1]).toFixed(1));
  dot.setAttribute("r", "2");
  svg.appendChild(dot);
  const title = document.createElementNS(SVG, "title");
  title.textContent = values.length + " values, " + Math.min(...values) + " to " + Math.max(...values);
  svg.appendChild(title);
  return svg;
}

function sparkCell(m) {
  const td = el("td", null, "trend");
  const s = series.get(m.device + "\u0000" + m.point);
  if (s && s.values.length) td.appendChild(spark(s.values));
  return td;
}

// noteState records a device's state when it changed since the last snapshot.
function noteState(d) {
  let log = stateLog.get(d.id);
  if (!log) { log = []; stateLog.set(d.id, log); }
  const last = log[log.length - 1];
  if (last && last.state === d.state && last.since === d.state_since) return log;
  log.push({ state: d.state, since: d.state_since });
  if (log.length > STATE_CHANGES) log.splice(0, log.length - STATE_CHANGES);
  return log;
}

// stateCell: the current state, since when, and the changes seen before it as
// small marks (oldest first), each with its state and time in its title.
function stateCell(d) {
  const log = noteState(d);
  const td = el("td", null, "state " + d.state);
  const marks = el("span", null, "history");
  for (const c of log.slice(0, -1)) {
    const mark = el("span", null, "mark " + c.state);
    mark.title = c.state + " since " + clock(c.since);
    marks.appendChild(mark);
  }
  td.appendChild(marks);
  td.appendChild(el("span", d.state));
  if (d.state_since) {
    const since = el("span", " " + ago(d.state_since), "since");
    since.title = "since " + new Date(d.state_since).toLocaleString();
    td.appendChild(since);
  }
  td.dataset.changes = log.length;
  return td;
}

function renderSnapshot(s) {
  lastSnapshot = s;
  $("gw-id").textContent = s.id;
  $("gw-version").textContent = s.version;
  $("gw-uptime").textContent = duration(s.uptime_seconds);
  $("gw-seq").textContent = s.last_sequence;
  $("gw-devices").textContent = s.devices.length;
  document.title = "edgegate " + s.id;
  for (const h of s.history || []) {
    series.set(h.device + "\u0000" + h.point, { values: h.values.slice(-SPARK_VALUES), seq: h.seq });
  }

  replaceBody("devices", s.devices.map((d) => {
    const tr = row([
      el("td", d.id, "id"),
      el("td", d.protocol),
      stateCell(d),
      el("td", ago(d.last_seen)),
      el("td", d.rate.toFixed(1), "num"),
      el("td", d.messages, "num"),
      el("td", d.errors, d.errors ? "num warn" : "num"),
      el("td", d.writes, "num"),
      el("td", d.last_error || "", "err"),
    ]);
    tr.dataset.device = d.id;
    tr.dataset.state = d.state;
    return tr;
  }));
  $("devices-empty").hidden = s.devices.length > 0;

  for (const m of s.latest) upsertLatest(m);
  $("latest-empty").hidden = latestRows.size > 0;
  // Refresh the ages of the values shown.
  for (const tr of latestRows.values()) tr.cells[6].textContent = ago(tr.dataset.time);

  replaceBody("subscribers", s.subscribers.map((x) => row([
    el("td", x.name, "id name"),
    el("td", ago(x.since)),
    el("td", x.cursor, "num"),
    el("td", x.lag, x.lag > 1000 ? "num warn" : "num"),
    el("td", x.dropped, x.dropped ? "num warn" : "num"),
  ])));
  replaceBody("consumers", s.consumers.map((c) => row([
    el("td", c.name, "id"), el("td", c.position, "num"), el("td", c.lag, "num"),
  ])));
  $("consumers-empty").hidden = s.consumers.length > 0;
  $("stream-note").textContent = "at most " + s.rate + " a second" + (s.dropped ? "; " + s.dropped + " skipped" : "");
}

function upsertLatest(m) {
  const key = m.device + "\u0000" + m.point;
  let tr = latestRows.get(key);
  if (tr && Number(tr.dataset.seq) >= m.seq) return;
  extendSeries(m);
  const cells = [
    el("td", m.device, "id"), el("td", m.point), el("td", m.value, "num value"),
    el("td", m.unit || ""), sparkCell(m), el("td", m.quality, "q " + m.quality), el("td", ago(m.time)),
  ];
  if (!tr) {
    tr = row(cells);
    latestRows.set(key, tr);
    // Keep the table sorted by device, then point.
    const tb = $("latest").tBodies[0];
    let before = null;
    for (const other of tb.rows) {
      if (other.dataset.key > key) { before = other; break; }
    }
    tb.insertBefore(tr, before);
  } else {
    tr.replaceChildren(...cells);
    tr.classList.remove("changed");
    void tr.offsetWidth; // restart the highlight
  }
  tr.classList.add("changed");
  tr.dataset.key = key;
  tr.dataset.device = m.device;
  tr.dataset.point = m.point;
  tr.dataset.seq = m.seq;
  tr.dataset.time = m.time;
  tr.dataset.value = m.value;
}

function addStreamRow(m) {
  upsertLatest(m);
  $("latest-empty").hidden = true;
  if (paused) return;
  const tb = $("stream").tBodies[0];
  const tr = row([
    el("td", m.seq, "num"), el("td", clock(m.time)), el("td", m.device, "id"), el("td", m.point),
    el("td", m.value, "num value"), el("td", m.unit || ""), el("td", m.quality, "q " + m.quality),
    el("td", m.priority, "prio " + m.priority),
  ]);
  tb.insertBefore(tr, tb.firstChild);
  while (tb.rows.length > MAX_STREAM_ROWS) tb.deleteRow(-1);
}

function setConn(state, text) {
  const c = $("conn");
  c.className = "pill " + state;
  c.textContent = text;
  document.body.dataset.conn = state;
}

function connect() {
  if (source) source.close();
  const form = new FormData($("filter"));
  const q = new URLSearchParams();
  for (const [k, v] of form) if (String(v).trim()) q.append(k, String(v).trim());
  const url = "/status/events" + (q.toString() ? "?" + q : "");
  $("stream").tBodies[0].replaceChildren();
  $("filter-error").hidden = true;
  setConn("off", "connecting…");
  source = new EventSource(url);
  source.addEventListener("open", () => setConn("on", "live"));
  source.addEventListener("snapshot", (e) => { setConn("on", "live"); renderSnapshot(JSON.parse(e.data)); });
  source.addEventListener("message", (e) => addStreamRow(JSON.parse(e.data)));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // A refusal (a bad filter, or every stream slot taken): say why, try again later.
      const ac = new AbortController();
      fetch(url, { signal: ac.signal }).then((r) => {
        if (r.ok) { ac.abort(); return ""; }
        return r.text();
      }).then((t) => {
        if (t) { $("filter-error").textContent = t; $("filter-error").hidden = false; }
      }).catch(() => {});
      setConn("off", "disconnected");
      setTimeout(connect, 5000);
    } else {
      setConn("off", "reconnecting…");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("submit", (e) => { e.preventDefault(); connect(); });
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "resume" : "pause";
    $("pause").setAttribute("aria-pressed", String(paused));
  });
  connect();
});
