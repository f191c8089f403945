// nbflow dashboard: one page, hash routes, a view per route. Each view is
// `mount(root, route) -> {destroy()}`; the router destroys the old view (stopping its polls)
// before it mounts the next one, so only the visible page talks to the server.

import { EMBEDDED, onConnection } from "./js/api.js";
import { h, fill } from "./js/dom.js";
import { mountRuns } from "./js/runs.js";
import { mountRunDetail } from "./js/run_detail.js";
import { mountFlows, mountWorkers } from "./js/lists.js";
import { mountDeployments } from "./js/deployments.js";
import { mountRunForm } from "./js/run_form.js";
import { loadPlotly } from "./js/run_charts.js";

/** ms after the page loaded before plotly.js is parsed in idle time, for the first run detail. */
const PLOTLY_IDLE_MS = 2000;

/** [pattern over the hash path, nav section, view]; the first match wins. */
const ROUTES = [
  [/^\/?$/, "runs", mountRuns],
  [/^\/runs\/?$/, "runs", mountRuns],
  [/^\/runs\/([^/]+)\/?$/, "runs", mountRunDetail],
  [/^\/flows\/?$/, "flows", mountFlows],
  [/^\/deployments\/?$/, "deployments", mountDeployments],
  [/^\/deployments\/([^/]+)\/run\/?$/, "deployments", mountRunForm],
  [/^\/workers\/?$/, "workers", mountWorkers],
];

let current = null;

/** The hash as {path, params, query}: "#/runs?state=Failed" -> path "/runs", query {state}. */
export function parseHash(hash = window.location.hash) {
  const raw = hash.replace(/^#/, "");
  const at = raw.indexOf("?");
  const path = at >= 0 ? raw.slice(0, at) : raw;
  const query = Object.fromEntries(new URLSearchParams(at >= 0 ? raw.slice(at + 1) : ""));
  return { path, query };
}

function notFoundView(root, path) {
  fill(root, h("section", { class: "not-found", "data-testid": "not-found" },
    h("h1", null, "Page not found"),
    h("p", null, `There is no dashboard page at "${path}". `, h("a", { href: "#/runs" }, "See all flow runs."))));
  return { destroy() {} };
}

function route() {
  const { path, query } = parseHash();
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch (_) { /* keep it raw */ }
  if (current) {
    current.destroy();
    current = null;
  }
  const root = document.getElementById("view");
  root.replaceChildren();
  let section = null;
  for (const [pattern, nav, mount] of ROUTES) {
    const match = decoded.match(pattern);
    if (match) {
      section = nav;
      current = mount(root, { params: match.slice(1), query });
      break;
    }
  }
  if (!current) current = notFoundView(root, decoded);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === section);
  }
  window.scrollTo(0, 0);
}

function start() {
  document.body.classList.toggle("embedded", EMBEDDED);
  const banner = document.querySelector('[data-testid="offline-banner"]');
  onConnection((online) => {
    banner.hidden = online;
  });
  window.addEventListener("hashchange", route);
  route();
  // plotly.js (4.8 MB) takes a second to parse on a slow machine: do it once the first page is up and
  // the browser is idle, so the first run detail opened draws its graph at once (later loads of the
  // same script are served from the browser's code cache)
  window.addEventListener("load", () => {
    setTimeout(() => {
      const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 0));
      idle(() => loadPlotly().catch(() => {}), { timeout: 5000 });
    }, PLOTLY_IDLE_MS);
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
