// edgesiam dashboard: renders the REST API's data and keeps it live from /api/stream (Server-Sent
// Events). No framework, no build step, nothing loaded from elsewhere. Every value from a device
// is written with textContent, never parsed as HTML.
"use strict";

const MAX_EVENTS = 200;
const MAX_NEAR = 100;
const MAX_WAV_BYTES = 512 * 1024;       // one clip (WAV or CSV), as the device takes it
const MAX_ENROLL_BYTES = 2 * 1024 * 1024; // all the clips of one enroll command
const MAX_CLIPS = 10;
const COLOURS = ["#2f7ed8", "#e4572e", "#17a589", "#a05195", "#f4a259", "#5c6bc0", "#8d6e63", "#c0ca33"];

const state = {
  devices: new Map(),      // device id -> device record (as /api/devices gives it)
  events: [],              // newest first
  near: [],                // newest first
  timeline: new Map(),     // device id -> points, oldest first
  commands: [],            // newest first
  reviews: [],             // newest first
  selected: null,          // device shown in the timeline
  managed: null,           // device shown in the enrollment panel
  labelsShown: null,        // what the labels list shows, so it is not rebuilt while typed in
  broker: null,
  arrived: new Map(),      // "event:<id>" or "status:<device>:<status>" -> when this page first showed it (ms)
};

function arrival(key) {
  if (!state.arrived.has(key)) state.arrived.set(key, Date.now());
  return state.arrived.get(key);
}

// -- helpers ------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "css") for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "css") for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clock(ts) {
  if (typeof ts !== "number") return "—";
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

function dateTime(ts) {
  if (typeof ts !== "number") return "—";
  return new Date(ts * 1000).toLocaleString([], { hour12: false });
}

function ago(ts) {
  if (typeof ts !== "number") return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 2) return "just now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function fixed(value, digits) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "—";
}

// a label's colour follows from its name alone (FNV-1a hash), so it never changes when other
// labels come and go, and is the same on every page and device
function colourOf(label) {
  let hash = 0x811c9dc5;
  for (const ch of String(label)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return COLOURS[hash % COLOURS.length];
}

// a gap under a thousandth must not read as "0.000"
function gap(value) {
  if (typeof value !== "number" || !isFinite(value)) return "—";
  if (Math.abs(value) >= 0.001 || value === 0) return value.toFixed(3);
  return Math.abs(value) >= 0.0001 ? value.toFixed(4) : "< 0.0001";
}

function thresholdOf(device, label) {
  const t = device && device.thresholds;
  if (!t) return null;
  const own = t.labels && typeof t.labels[label] === "number" ? t.labels[label] : null;
  return own !== null ? own : typeof t.default === "number" ? t.default : null;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("not logged in");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok && !(data && typeof data === "object")) {
    throw new Error(`${path}: HTTP ${response.status}`);
  }
  return data;
}

// -- score against threshold ----------------------------------------------------------------------

function scoreCell(score, threshold) {
  const margin = typeof score === "number" && typeof threshold === "number" ? score - threshold : null;
  const pct = (v) => `${Math.max(0, Math.min(100, v * 100)).toFixed(1)}%`; // scores 0..1 (cosine)
  const bar = el("span", { class: "bar" },
    el("span", { class: margin !== null && margin >= 0 ? "fill fill-hit" : "fill fill-miss",
                 css: { width: typeof score === "number" ? pct(score) : "0%" } }),
    typeof threshold === "number" ? el("span", { class: "tick", css: { left: pct(threshold) } }) : null);
  return el("td", { class: "score" }, bar,
    el("span", { class: "nums" }, fixed(score, 3), el("span", { class: "vs" }, " / "), fixed(threshold, 3)));
}

// -- devices ----------------------------------------------------------------------------------------

const METRIC_FIELDS = [
  ["windows_per_s", "windows/s", 1],
  ["inference_ms_p50", "inference p50 ms", 2],
  ["rss_mb", "memory MiB", 1],
  ["cpu_percent", "CPU %", 0],
  ["outbox_depth", "outbox", 0],
  ["uptime_s", "uptime", -1],
];

function uptime(s) {
  if (typeof s !== "number") return "—";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function renderDevices() {
  const box = document.getElementById("devices");
  const devices = [...state.devices.values()].sort((a, b) => a.device.localeCompare(b.device));
  const online = devices.filter((d) => d.status === "online").length;
  document.getElementById("device-count").textContent = devices.length
    ? `${online} of ${devices.length} online` : "";
  box.replaceChildren();
  if (!devices.length) {
    box.append(el("p", { class: "empty" }, "No device has published yet."));
    return;
  }
  for (const d of devices) {
    const metrics = d.metrics || {};
    const labels = d.labels === null || d.labels === undefined ? null : d.labels;
    const card = el("article", {
      class: `device ${d.device === state.selected ? "selected" : ""}`,
      dataset: { device: d.device, status: d.status, statusShown: arrival(`status:${d.device}:${d.status}`) },
      tabindex: "0",
      onclick: () => select(d.device),
      onkeydown: (e) => { if (e.key === "Enter") select(d.device); },
    },
    el("header", {},
      el("span", { class: "name" }, d.device),
      el("span", { class: `pill pill-${d.status}`, "data-role": "status" }, d.status)),
    el("dl", {},
      el("dt", {}, "last seen"), el("dd", { "data-role": "last-seen", "data-ts": d.last_seen }, ago(d.last_seen)),
      el("dt", {}, "model"), el("dd", {}, d.model || "—"),
      el("dt", {}, "events"), el("dd", {}, String(d.events || 0),
        d.last_event_ts ? el("span", { class: "muted" }, ` · last ${clock(d.last_event_ts)}`) : null)),
    el("div", { class: "chips" },
      labels === null ? el("span", { class: "muted" }, "labels unknown")
        : labels.length ? labels.map((l) => el("span", { class: "chip", css: { "--c": colourOf(l) } }, l))
          : el("span", { class: "muted" }, "no labels enrolled")),
    el("div", { class: "metrics" }, METRIC_FIELDS.map(([key, name, digits]) =>
      el("div", { class: "metric" },
        el("span", { class: "value" }, digits < 0 ? uptime(metrics[key]) : fixed(metrics[key], digits)),
        el("span", { class: "name" }, name)))));
    box.append(card);
  }
  renderSelectors();
}

function refreshAges() {
  for (const node of document.querySelectorAll("[data-role=last-seen]")) {
    const ts = parseFloat(node.dataset.ts);
    node.textContent = ago(isNaN(ts) ? undefined : ts);
  }
}

function renderSelectors() {
  const ids = [...state.devices.keys()].sort();
  if (state.selected === null && ids.length) {
    state.selected = ids[0];
    loadTimeline(ids[0]);
  }
  if (state.managed === null && ids.length) state.managed = ids[0];
  for (const [id, value] of [["timeline-device", state.selected], ["enroll-device", state.managed]]) {
    const select = document.getElementById(id);
    const current = [...select.options].map((o) => o.value).join("\n");
    if (current !== ids.join("\n")) {
      select.replaceChildren(...ids.map((d) => el("option", { value: d }, d)));
    }
    if (value !== null) select.value = value;
  }
  renderLabels();
}

// a click on a device card shows it in both panels; each selector changes its own panel
function select(device) {
  state.managed = device;
  selectTimeline(device);
  renderDevices();
}

function selectTimeline(device) {
  if (state.selected === device) return;
  state.selected = device;
  renderDevices();
  loadTimeline(device);
}

function selectManaged(device) {
  state.managed = device;
  renderSelectors();
}

function upsertDevice(device, changes) {
  const d = state.devices.get(device) || {
    device, status: "unknown", last_seen: null, model: null, labels: null, metrics: null, events: 0,
  };
  Object.assign(d, changes);
  state.devices.set(device, d);
  return d;
}

// -- events and near misses ---------------------------------------------------------------------------

function reviewedAs(ref) {
  return state.reviews.find((r) => r.ref === ref && r.undone_ts === null);
}

// a button that sends a review of this event or near miss; shown when it carries its embedding
function reviewButton(item, action, ref, text, title) {
  if (typeof item.embedding !== "string" || !item.label) return el("td", {});
  const done = reviewedAs(ref);
  if (done) return el("td", { class: "reviewed" }, `${done.action === "wrong" ? "marked wrong" : "confirmed"} by ${done.by}`);
  return el("td", {}, el("button", {
    type: "button", class: "secondary review", title, dataset: { action },
    onclick: () => review(item, action, ref),
  }, text));
}

function eventRow(e) {
  const shown = arrival(`event:${e.id}`);
  return el("tr", { dataset: { device: e.device, id: e.id, shown } },
    el("td", { class: "time", title: `${dateTime(e.ts)} (on this page at ${dateTime(shown / 1000)})` }, clock(e.ts)),
    el("td", {}, e.device),
    el("td", {}, el("span", { class: "chip", css: { "--c": colourOf(e.label) } }, e.label)),
    scoreCell(e.score, e.threshold),
    el("td", { class: "num" }, String(e.seq)),
    reviewButton(e, "wrong", `event:${e.id}`, "wrong",
      `not ${e.label}: the device raises ${e.label}'s threshold above this window`));
}

function nearRef(n) {
  return `near_miss:${n.device}:${n.ts}:${n.embedding_id || ""}`;
}

function nearRow(n) {
  const short = typeof n.score === "number" && typeof n.threshold === "number" ? n.threshold - n.score : null;
  return el("tr", { dataset: { device: n.device, ts: String(n.ts) } },
    el("td", { class: "time", title: dateTime(n.ts) }, clock(n.ts)),
    el("td", {}, n.device),
    el("td", {}, n.label ? el("span", { class: "chip", css: { "--c": colourOf(n.label) } }, n.label) : "—"),
    scoreCell(n.score, n.threshold),
    el("td", { class: "num" }, gap(short)),
    reviewButton(n, "this_was", nearRef(n), `this was ${n.label}`,
      `the device enrolls this window as one more template of ${n.label}`));
}

// -- reviews --------------------------------------------------------------------------------------------

function reviewer() {
  return document.getElementById("reviewer").value.trim();
}

async function review(item, action, ref) {
  const what = action === "wrong" ? `wrong ${item.label}` : `this was ${item.label}`;
  const body = { action, label: item.label, embedding: item.embedding, embedding_scale: item.embedding_scale, ref, by: reviewer() };
  const result = await command(item.device, "review", body, what);
  if (result && result.ok && result.review) addReview(result.review);
}

async function undoReview(r) {
  const box = document.getElementById("command-result");
  box.hidden = false;
  box.dataset.ok = "pending";
  try {
    const result = await api(`/api/reviews/${r.n}/undo`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ by: reviewer() }),
    });
    showResult(result, `undo ${r.action === "wrong" ? "wrong" : "this was"} ${r.label}`);
    if (result && result.ok && result.review) addReview(result.review);
  } catch (error) {
    showResult({ ok: false, error: String(error.message || error) }, "undo");
  }
}

function reviewItem(r) {
  const what = r.action === "wrong" ? `marked a ${r.label} event wrong` : `confirmed a near miss as ${r.label}`;
  const after = r.result && typeof r.result.threshold === "number" ? ` (threshold now ${r.result.threshold.toFixed(4)})` : "";
  return el("li", { dataset: { n: String(r.n), action: r.action, undone: r.undone_ts === null ? "false" : "true" } },
    el("span", { class: "time", title: dateTime(r.ts) }, clock(r.ts)), ` ${r.by} ${what} on ${r.device}${after}`,
    r.undone_ts === null
      ? el("button", { type: "button", class: "secondary undo", onclick: () => undoReview(r) }, "undo")
      : el("span", { class: "undone" }, ` — undone by ${r.undone_by} at ${clock(r.undone_ts)}`));
}

function addReview(r) {
  state.reviews = [r, ...state.reviews.filter((x) => x.n !== r.n)];
  renderReviews();
  renderEvents();
  renderNear();
}

function renderReviews() {
  document.getElementById("review-log").replaceChildren(...state.reviews.map(reviewItem));
}

function renderEvents() {
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...state.events.map(eventRow));
  document.getElementById("events-empty").hidden = state.events.length > 0;
  document.getElementById("event-count").textContent = state.events.length ? `latest ${state.events.length}` : "";
}

function renderNear() {
  const body = document.querySelector("#near-misses tbody");
  body.replaceChildren(...state.near.map(nearRow));
  document.getElementById("near-empty").hidden = state.near.length > 0;
  document.getElementById("near-count").textContent = state.near.length ? `latest ${state.near.length}` : "";
}

function addEvent(e) {
  if (state.events.some((x) => x.id === e.id)) return;
  state.events.unshift(e);
  state.events.length = Math.min(state.events.length, MAX_EVENTS);
  renderEvents();
  const d = upsertDevice(e.device, { last_seen: e.received_ts || e.ts, last_event_ts: e.ts });
  d.events = (d.events || 0) + 1;
  if (e.model) d.model = e.model;
  addPoint(e.device, { ts: e.ts, kind: "event", label: e.label, score: e.score, threshold: e.threshold });
  renderDevices();
}

function addNear(n) {
  state.near.unshift(n);
  state.near.length = Math.min(state.near.length, MAX_NEAR);
  renderNear();
  upsertDevice(n.device, { last_seen: n.received_ts || n.ts });
  addPoint(n.device, { ts: n.ts, kind: "near_miss", label: n.label, score: n.score, threshold: n.threshold });
}

// -- timeline (SVG) ---------------------------------------------------------------------------------------

function addPoint(device, point) {
  if (!state.timeline.has(device)) return; // loaded on selection
  const points = state.timeline.get(device);
  points.push(point);
  if (points.length > 2000) points.splice(0, points.length - 2000);
  if (device === state.selected) renderTimeline();
}

async function loadTimeline(device) {
  if (!device) return;
  const data = await api(`/api/timeline?device=${encodeURIComponent(device)}&limit=2000`);
  state.timeline.set(device, data.points || []);
  if (device === state.selected) renderTimeline();
}

function renderTimeline() {
  const box = document.getElementById("timeline");
  const W = 720, H = 260, L = 46, R = 12, T = 14, B = 30;
  const points = (state.timeline.get(state.selected) || []).filter((p) => typeof p.score === "number");
  box.replaceChildren();
  if (!points.length) {
    box.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis-note" },
      state.selected ? `no scores from ${state.selected} yet` : "no device selected"));
    return;
  }
  const t0 = points[0].ts, t1 = Math.max(points[points.length - 1].ts, t0 + 1);
  const scores = points.flatMap((p) => [p.score, p.threshold]).filter((v) => typeof v === "number");
  let lo = Math.min(...scores), hi = Math.max(...scores);
  const pad = Math.max(0.05, (hi - lo) * 0.12);
  lo = Math.max(-1, lo - pad); hi = Math.min(1, hi + pad);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const grid = [];
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    grid.push(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v.toFixed(2)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    grid.push(svg("text", { x: x(t), y: H - 10, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "axis" }, clock(t)));
  }
  // the threshold as a step line through time (it may change per label or by command)
  const steps = points.filter((p) => typeof p.threshold === "number");
  let path = "";
  steps.forEach((p, i) => { path += `${i ? "L" : "M"}${x(p.ts).toFixed(1)},${y(p.threshold).toFixed(1)} `; });
  if (steps.length) path += `L${x(t1).toFixed(1)},${y(steps[steps.length - 1].threshold).toFixed(1)}`;
  const marks = points.map((p) => {
    const attrs = { cx: x(p.ts).toFixed(1), cy: y(p.score).toFixed(1), r: p.kind === "event" ? 4.5 : 3.5,
      class: p.kind === "event" ? "pt pt-event" : "pt pt-near", css: { "--c": colourOf(p.label || "?") } };
    return svg("circle", attrs, svg("title", {}, `${clock(p.ts)} ${p.label || "?"} ${p.kind === "event" ? "match" : "near miss"}: ${fixed(p.score, 3)} (threshold ${fixed(p.threshold, 3)})`));
  });
  box.append(...grid, svg("path", { d: path, class: "threshold" }), ...marks);
}

// -- enrollment and commands ------------------------------------------------------------------------------

// what the device's bundle takes: "audio" (WAV clips) or "sensor" (CSV clips), from its metrics or
// its last list/enroll result; null until it has said
function modalityOf(d) {
  if (!d) return null;
  return d.modality || (d.metrics && d.metrics.modality) || null;
}

// an example label that fits the device's bundle: a name for a speaker model, a gesture for a
// motion model, a sound otherwise
function labelExample(d) {
  const modality = modalityOf(d);
  const model = ((d && d.model) || "").toLowerCase();
  if (modality === "sensor" || /motion|imu|gesture/.test(model)) return "wave";
  if (/speak|voice/.test(model)) return "alice";
  if (modality === "audio" || /event|sound/.test(model)) return "doorbell";
  return null;
}

function renderEnrollForm(d) {
  const modality = modalityOf(d);
  const example = labelExample(d);
  const input = document.getElementById("enroll-label");
  input.placeholder = example ? `e.g. ${example}` : "label name";
  const file = document.getElementById("enroll-file");
  file.accept = modality === "sensor" ? ".csv,text/csv"
    : modality === "audio" ? ".wav,audio/wav,audio/x-wav" : ".wav,.csv,audio/wav,audio/x-wav,text/csv";
  const what = modality === "sensor"
    ? "CSVs of the motion (one row per sample, one column per channel, an optional header row)"
    : modality === "audio" ? "WAVs of the sound or voice"
      : "WAVs for a sound or voice device, CSVs (one row per sample, one column per channel) for a motion device";
  document.getElementById("enroll-hint").textContent =
    `1 to ${MAX_CLIPS} recordings of the label: ${what}; each up to 512 KiB, 2 MiB together. ` +
    "Silent clips are refused by the device. They are sent to the device as its enroll command.";
  document.getElementById("enroll-form").dataset.modality = modality || "unknown";
}

function renderLabels() {
  const list = document.getElementById("labels-list");
  const d = state.devices.get(state.managed);
  renderEnrollForm(d);
  const shown = JSON.stringify([state.managed, d && d.labels, d && d.thresholds]);
  if (shown === state.labelsShown) return; // unchanged: keep what the user is typing
  state.labelsShown = shown;
  list.replaceChildren();
  if (!d) { list.append(el("li", { class: "muted" }, "no device")); return; }
  if (d.labels === null || d.labels === undefined) {
    list.append(el("li", { class: "muted" }, "unknown — ask the device"));
    return;
  }
  if (!d.labels.length) { list.append(el("li", { class: "muted" }, "nothing enrolled")); return; }
  for (const label of d.labels) {
    const threshold = thresholdOf(d, label);
    list.append(el("li", { dataset: { label } },
      el("span", { class: "chip", css: { "--c": colourOf(label) } }, label),
      el("button", { type: "button", class: "danger", "aria-label": `forget ${label}`,
        onclick: () => forget(d.device, label) }, "Forget"),
      el("form", { class: "threshold", onsubmit: (e) => setThreshold(e, d.device, label) },
        el("input", { type: "number", name: "threshold", min: "-1", max: "1", step: "any",
          required: true, value: threshold === null ? null : threshold.toFixed(4),
          placeholder: "ask the device", title: "threshold: a window matches at this cosine score or above",
          "aria-label": `threshold of ${label}` }),
        el("button", { type: "submit", class: "secondary", "aria-label": `set the threshold of ${label}` }, "Set"))));
  }
}

async function setThreshold(event, device, label) {
  event.preventDefault();
  const value = parseFloat(event.target.elements.threshold.value);
  if (!(value >= -1 && value <= 1)) {
    showResult({ ok: false, error: "a threshold is a cosine between -1 and 1", error_code: "invalid" }, `threshold ${label}`);
    return;
  }
  await command(device, "threshold", { label, value }, `threshold ${label}`);
}

function showResult(result, what) {
  const box = document.getElementById("command-result");
  box.hidden = false;
  box.dataset.ok = result && result.ok ? "true" : "false";
  box.replaceChildren();
  if (result && result.ok) {
    const r = result.result || {};
    const detail = [];
    if (r.label) detail.push(`label ${r.label}`);
    if (typeof r.recordings === "number") detail.push(`${r.recordings} recording(s)`);
    if (typeof r.consistency === "number") detail.push(`consistency ${r.consistency.toFixed(3)}`);
    if (typeof r.removed !== "undefined") detail.push(`removed ${r.removed}`);
    const clipTexts = Array.isArray(r.clips) ? r.clips.map(clipText) : [];
    const warnings = (Array.isArray(r.warnings) ? r.warnings : []).filter((w) => !clipTexts.includes(w));
    if (typeof r.threshold === "number") detail.push(`threshold ${r.threshold.toFixed(4)} (${r.source || "?"})`);
    if (warnings.length) detail.push(`warnings: ${warnings.join("; ")}`);
    box.append(el("strong", {}, `✓ ${what} done`), detail.length ? ` — ${detail.join(", ")}` : "");
    if (clipTexts.length) {
      box.append(el("ul", { class: "clips" }, (r.clips || []).map((c, i) =>
        el("li", { dataset: { clip: c.name, refused: c.refused ? "true" : "false" } }, clipTexts[i]))));
    }
  } else {
    const message = (result && (result.error || result.message)) || "no answer";
    const code = result && result.error_code ? ` (${result.error_code})` : "";
    box.append(el("strong", {}, `✗ ${what} failed${code}`), ` — ${message}`);
  }
}

// one clip's line, as the device and `edgesiam enroll` word it
function clipText(c) {
  return c.refused ? `${c.name}: refused: ${c.refused}` : `${c.name}: ${c.active} of ${c.windows} windows active`;
}

async function command(device, verb, body, what) {
  const box = document.getElementById("command-result");
  box.hidden = false;
  box.dataset.ok = "pending";
  box.replaceChildren(`${what}: waiting for ${device}…`);
  try {
    const result = await api(`/api/devices/${encodeURIComponent(device)}/${verb}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    showResult(result, what);
    if (result && result.ok && result.result && result.result.modality) {
      upsertDevice(device, { modality: result.result.modality });
      renderLabels();
    }
    return result;
  } catch (error) {
    showResult({ ok: false, error: String(error.message || error) }, what);
    return null;
  }
}

async function forget(device, label) {
  if (!window.confirm(`Forget "${label}" on ${device}? Its templates are deleted from the device.`)) return;
  await command(device, "forget", { label }, `forget ${label}`);
}

function base64Of(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

// a clip as the enroll command takes it, or a message saying why the file cannot be one
async function clipOf(file, modality) {
  if (file.size > MAX_WAV_BYTES) {
    return { error: `${file.name} is ${(file.size / 1024).toFixed(0)} KiB; the device takes at most 512 KiB per clip`, code: "too_large" };
  }
  const buffer = await file.arrayBuffer();
  const head = new TextDecoder("latin1").decode(new Uint8Array(buffer.slice(0, 12)));
  const isWav = head.slice(0, 4) === "RIFF" && head.slice(8, 12) === "WAVE";
  const kind = modality === "sensor" ? "csv" : modality === "audio" ? "wav"
    : /\.csv$/i.test(file.name) ? "csv" : "wav";
  if (kind === "wav" && !isWav) {
    return { error: `${file.name} is not a WAV file${modality === "audio" ? " (this device takes WAV clips)" : ""}`, code: "invalid" };
  }
  if (kind === "csv" && (isWav || new Uint8Array(buffer).includes(0))) {
    return { error: `${file.name} is not a CSV text file (this device takes CSV clips)`, code: "invalid" };
  }
  return { clip: { name: file.name, [`${kind}_base64`]: base64Of(buffer) }, size: buffer.byteLength };
}

async function enroll(event) {
  event.preventDefault();
  const device = document.getElementById("enroll-device").value;
  const label = document.getElementById("enroll-label").value.trim();
  const files = [...document.getElementById("enroll-file").files];
  const append = document.getElementById("enroll-mode").value === "append";
  if (!device) { showResult({ ok: false, error: "no device selected" }, "enroll"); return; }
  if (!files.length) { showResult({ ok: false, error: "choose 1 to 10 recordings" }, "enroll"); return; }
  if (files.length > MAX_CLIPS) {
    showResult({ ok: false, error: `${files.length} files chosen; a label takes at most ${MAX_CLIPS} recordings`, error_code: "invalid" }, `enroll ${label}`);
    return;
  }
  const modality = modalityOf(state.devices.get(device));
  const clips = [];
  let total = 0;
  for (const file of files) {
    const got = await clipOf(file, modality);
    if (got.error) { showResult({ ok: false, error: got.error, error_code: got.code }, `enroll ${label}`); return; }
    clips.push(got.clip);
    total += got.size;
  }
  if (total > MAX_ENROLL_BYTES) {
    showResult({ ok: false, error: `the clips are ${(total / 1048576).toFixed(1)} MiB together; the device takes at most 2 MiB at once: enroll the rest with "add to its recordings"`, error_code: "too_large" }, `enroll ${label}`);
    return;
  }
  const submit = document.getElementById("enroll-submit");
  submit.disabled = true;
  try {
    await command(device, "enroll", { label, clips, append }, `enroll ${label}`);
  } finally {
    submit.disabled = false;
  }
}

function addCommandResult(r) {
  state.commands.unshift(r);
  state.commands.length = Math.min(state.commands.length, 20);
  const log = document.getElementById("command-log");
  log.replaceChildren(...state.commands.map((c) => el("li", { class: c.ok ? "ok" : "failed" },
    el("span", { class: "time" }, clock(c.ts)), ` ${c.device} · ${c.verb} · `,
    c.ok ? "ok" : `${c.error_code || "error"}: ${c.error || ""}`)));
}

// -- live stream --------------------------------------------------------------------------------------------

function setPill(id, cls, text) {
  const pill = document.getElementById(id);
  pill.className = `pill ${cls}`;
  pill.textContent = text;
}

function showBroker(stats) {
  const broker = stats.broker || {};
  state.broker = broker;
  setPill("broker-state", broker.connected ? "pill-online" : "pill-offline",
    broker.connected ? `broker: connected` : `broker: ${broker.last_error || "disconnected"}`);
  const h = stats.history || {};
  document.getElementById("footer-stats").textContent =
    `edgesiam ${stats.version} · history: ${h.events ?? "?"} events, ${h.near_misses ?? "?"} near misses` +
    (h.retention_days ? `, kept ${h.retention_days} days` : ", kept for ever") +
    (broker.url ? ` · ${broker.url}` : "");
  document.getElementById("logout-form").hidden = !stats.auth_required;
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => {
    document.body.dataset.live = "connected";
    setPill("live-state", "pill-online", "live");
  });
  source.addEventListener("error", () => {
    document.body.dataset.live = "reconnecting";
    setPill("live-state", "pill-wait", "live: reconnecting…");
  });
  let hellos = 0;
  source.addEventListener("hello", (m) => {
    showBroker(JSON.parse(m.data));
    if (hellos++ > 0) reload(); // a reconnect: catch up on what was missed meanwhile
  });
  source.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));
  source.addEventListener("near_miss", (m) => addNear(JSON.parse(m.data)));
  source.addEventListener("review", (m) => addReview(JSON.parse(m.data)));
  source.addEventListener("status", (m) => {
    const s = JSON.parse(m.data);
    upsertDevice(s.device, s.status === "online"
      ? { status: s.status, last_seen: s.ts, status_changed: s.ts } : { status: s.status, status_changed: s.ts });
    renderDevices();
  });
  source.addEventListener("metrics", (m) => {
    const s = JSON.parse(m.data);
    upsertDevice(s.device, { metrics: s.metrics, last_seen: s.received_ts });
    renderDevices();
  });
  source.addEventListener("labels", (m) => {
    const s = JSON.parse(m.data);
    upsertDevice(s.device, s.thresholds ? { labels: s.labels, thresholds: s.thresholds } : { labels: s.labels });
    renderDevices();
  });
  source.addEventListener("command_result", (m) => {
    const r = JSON.parse(m.data);
    addCommandResult(r);
    if (r.ok && r.result && r.result.modality && r.device) {
      upsertDevice(r.device, { modality: r.result.modality });
      if (r.device === state.managed) renderLabels();
    }
  });
  source.addEventListener("broker", (m) => {
    const b = JSON.parse(m.data);
    showBroker({ ...lastStats, broker: { ...(state.broker || {}), ...b } }); // connected, last_error
  });
}

let lastStats = {};

async function reload() {
  const [stats, devices, events, near, commands, reviews] = await Promise.all([
    api("/api/stats"), api("/api/devices"), api(`/api/events?limit=${MAX_EVENTS}`),
    api(`/api/near_misses?limit=${MAX_NEAR}`), api("/api/commands?limit=20"), api("/api/reviews?limit=50"),
  ]);
  state.reviews = reviews.reviews;
  renderReviews();
  lastStats = stats;
  showBroker(stats);
  state.devices = new Map(devices.devices.map((d) => [d.device, d]));
  state.events = events.events;
  state.near = near.near_misses;
  state.commands = [];
  for (const r of commands.results.reverse()) addCommandResult(r);
  renderEvents();
  renderNear();
  renderDevices();
  if (state.selected) await loadTimeline(state.selected);
  document.body.dataset.loaded = "true";
}

function start() {
  const name = document.getElementById("reviewer");
  name.value = window.localStorage.getItem("edgesiam-reviewer") || "";
  name.addEventListener("change", () => window.localStorage.setItem("edgesiam-reviewer", name.value.trim()));
  document.getElementById("enroll-form").addEventListener("submit", enroll);
  document.getElementById("refresh-labels").addEventListener("click", () => {
    if (state.managed) command(state.managed, "list", {}, "list labels");
  });
  document.getElementById("timeline-device").addEventListener("change", (e) => selectTimeline(e.target.value));
  document.getElementById("enroll-device").addEventListener("change", (e) => selectManaged(e.target.value));
  renderTimeline();
  reload().then(connect, (error) => {
    setPill("live-state", "pill-offline", `error: ${error.message}`);
  });
  setInterval(refreshAges, 1000);
}

document.addEventListener("DOMContentLoaded", start);
