// Building the page from server data without ever parsing it as HTML, and the shared
// visual language of the notebook widgets (nbflow/notebook/run_graph.py, static_html.py).

/** state name -> colour: the palette of run_graph.STATE_COLOURS (the graph route also sends it). */
export const STATE_COLOURS = {
  Completed: "#2ca02c",
  Cached: "#17a2a0",
  Running: "#1f6fe5",
  Retrying: "#6aa8f7",
  Pending: "#a9afb7",
  Scheduled: "#cfd4da",
  Failed: "#d62728",
  TimedOut: "#f08a0c",
  Crashed: "#7b1f62",
  Cancelled: "#4f555c",
  NotReady: "#c7b8a0",
  Paused: "#e8c547",
  Suspended: "#d4a017",
  Cancelling: "#7d848c",
  AwaitingRetry: "#b7d3f7",
  AwaitingConcurrencySlot: "#dde3ea",
  Late: "#e0b4b4",
  Submitting: "#bcc2c9",
  InfrastructurePending: "#959ca5",
};
export const UNKNOWN_COLOUR = "#8c8c8c";
export const STATES = Object.keys(STATE_COLOURS);
export const FINAL_STATES = new Set(["Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"]);
export const RUNNING_STATES = new Set(["Running", "Retrying"]);
/** light states whose badge text is dark, so it stays readable. */
const LIGHT = new Set(["Scheduled", "Pending"]);

export function stateColour(state) {
  return STATE_COLOURS[state] || UNKNOWN_COLOUR;
}

/**
 * An element: h("a", {href, class: "x", "data-testid": "y", onclick: fn}, "text", child, ...).
 * Strings become text nodes; null/undefined/false children and attributes are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (name in PROPERTIES) {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}
const PROPERTIES = { value: 1, checked: 1, disabled: 1, selected: 1, hidden: 1, textContent: 1 };

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el` (one DOM operation, so nothing flickers). */
export function fill(el, ...children) {
  const fragment = document.createDocumentFragment();
  append(fragment, children);
  el.replaceChildren(fragment);
  return el;
}

/** Set an element's text only when it differs (no needless layout). */
export function setText(el, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function badge(state, attrs = {}) {
  const el = h("span", { class: "badge", ...attrs });
  setBadge(el, state);
  return el;
}

export function setBadge(el, state) {
  const name = state || "Unknown";
  setText(el, name);
  el.style.background = stateColour(state);
  el.classList.toggle("badge-light", LIGHT.has(state));
  el.dataset.state = name;
}

export function swatch(state) {
  return h("span", { class: "swatch", style: { background: stateColour(state) } });
}

/** "3 Completed · 1 Failed" as swatches, in palette order. */
export function stateCounts(counts) {
  const known = STATES.filter((s) => counts[s]);
  const other = Object.keys(counts).filter((s) => !(s in STATE_COLOURS) && counts[s]).sort();
  return [...known, ...other].map((s) => h("span", { class: "count" }, swatch(s), ` ${s} ${counts[s]}`));
}

// -- formatting (as static_html.fmt_duration) ----------------------------------------------------

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return seconds >= 0.001 ? `${(seconds * 1000).toFixed(0)} ms` : `${(seconds * 1000).toFixed(2)} ms`;
  if (seconds < 60) return `${seconds.toFixed(2)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} m ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")} m`;
}

/** Epoch milliseconds of an ISO time from the API (or null). */
export function epochMs(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

/** Seconds a run or task took: its duration_s, or start to end (to now while it runs). */
export function durationOf(item) {
  if (item.duration_s !== null && item.duration_s !== undefined && item.end_time) return item.duration_s;
  const start = epochMs(item.start_time);
  if (start === null) return null;
  const end = epochMs(item.end_time);
  if (end !== null) return (end - start) / 1000;
  return RUNNING_STATES.has(item.state) ? Math.max(0, (Date.now() - start) / 1000) : null;
}

const pad = (n) => String(n).padStart(2, "0");

/** A time in the browser's zone: "2024-05-01 14:03:07". */
export function fmtTime(iso) {
  const ms = epochMs(iso);
  if (ms === null) return "";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A time of day in the browser's zone, to the millisecond: "14:03:07.125". */
export function fmtClock(iso) {
  const ms = epochMs(iso);
  if (ms === null) return "";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/** "12 s ago", "in 3 min". */
export function fmtRelative(iso) {
  const ms = epochMs(iso);
  if (ms === null) return "";
  const delta = (ms - Date.now()) / 1000;
  const size = Math.abs(delta);
  const text = size < 60 ? `${Math.round(size)} s` : size < 3600 ? `${Math.round(size / 60)} min`
    : size < 86400 ? `${Math.round(size / 3600)} h` : `${Math.round(size / 86400)} d`;
  return delta < 0 ? `${text} ago` : `in ${text}`;
}

/** A time cell: local time, the UTC ISO string as its tooltip. */
export function timeCell(el, iso) {
  setText(el, fmtTime(iso));
  if (iso) el.title = iso; else el.removeAttribute("title");
}

export function clip(text, limit) {
  const s = text === null || text === undefined ? "" : String(text);
  return s.length <= limit ? s : `${s.slice(0, limit - 1)}…`;
}

/** Parameters in one line: `n=3, name="x"`. */
export function fmtParameters(parameters) {
  if (!parameters || typeof parameters !== "object") return "";
  return Object.entries(parameters).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

/** Text for plotly labels: plotly reads a few HTML-like tags, so server text is escaped. */
export function plotlyText(text) {
  return String(text ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function runHref(id) {
  return `#/runs/${encodeURIComponent(id)}`;
}

// -- tables whose rows are updated in place ----------------------------------------------------

/**
 * Keeps a <tbody>'s rows in step with a list of items, keyed by id: new rows are built, changed
 * rows updated (only when their signature changed), gone rows removed, and rows moved only when
 * out of order. Nothing is re-rendered wholesale, so scroll, focus and selection survive a poll.
 */
export class KeyedRows {
  constructor(tbody, { key, build, update, signature, empty }) {
    this.tbody = tbody;
    this.key = key;
    this.build = build;
    this.update = update;
    this.signature = signature || ((item) => JSON.stringify(item));
    this.emptyText = empty;
    this.rows = new Map();
    this.emptyRow = null;
  }

  set(items) {
    const seen = new Map();
    const ordered = [];
    for (const item of items) {
      const id = this.key(item);
      if (seen.has(id)) continue;
      let row = this.rows.get(id);
      const sig = this.signature(item);
      if (!row) {
        row = this.build(item);
        row._sig = null;
      }
      if (row._sig !== sig) {
        this.update(row, item);
        row._sig = sig;
      }
      seen.set(id, row);
      ordered.push(row);
    }
    for (const [id, row] of this.rows) if (!seen.has(id)) row.remove();
    this.rows = seen;
    this.setEmpty(ordered.length === 0);
    let cursor = this.emptyRow && ordered.length === 0 ? this.emptyRow.nextSibling : this.tbody.firstChild;
    for (const row of ordered) {
      if (row !== cursor) this.tbody.insertBefore(row, cursor);
      else cursor = cursor.nextSibling;
    }
  }

  setEmpty(isEmpty) {
    if (isEmpty && this.emptyText && !this.emptyRow) {
      const columns = this.tbody.closest("table")?.querySelectorAll("thead th").length || 1;
      this.emptyRow = h("tr", { class: "empty" }, h("td", { colspan: columns }, this.emptyText));
      this.tbody.prepend(this.emptyRow);
    } else if (!isEmpty && this.emptyRow) {
      this.emptyRow.remove();
      this.emptyRow = null;
    }
  }
}

/** A <table> with a header row; returns [table, tbody]. */
export function table(testid, headers, attrs = {}) {
  const tbody = h("tbody");
  const el = h("table", { class: "grid", "data-testid": testid, ...attrs },
    h("thead", null, h("tr", null, headers.map((t) => h("th", null, t)))), tbody);
  return [el, tbody];
}

/** A row of `n` empty cells; returns [tr, cells]. */
export function cells(n, attrs = {}) {
  const tds = Array.from({ length: n }, () => h("td"));
  return [h("tr", attrs, tds), tds];
}
