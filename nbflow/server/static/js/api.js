// Talking to the nbflow REST API: same-origin fetch with Jupyter's login cookie and XSRF header,
// errors as ApiError, the offline banner while the server cannot be reached, and the way back to
// Jupyter's login page when the login has expired.

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  const value = el ? el.getAttribute("content") : "";
  return value && !value.includes("{{") ? value : null;
}

function withSlash(path) {
  return path.endsWith("/") ? path : `${path}/`;
}

/** The page lives at <base_url>nbflow/: without the server's values, derive them from the URL. */
function guessBase() {
  const path = window.location.pathname;
  const at = path.lastIndexOf("/nbflow/");
  return at >= 0 ? path.slice(0, at + 1) : "/";
}

/** Shown inside JupyterLab's nbflow tab (`?embed=lab`): no top bar; the output notebook opens in Lab. */
export const EMBEDDED = new URLSearchParams(window.location.search).get("embed") === "lab";

/** Ask the JupyterLab page around this one to open the run's output notebook in Lab's own viewer. */
export function openInLab(runId) {
  window.parent.postMessage({ nbflow: "open-output-notebook", run_id: runId }, window.location.origin);
}

/** Ask the JupyterLab page around this one to save a failed run's debug notebook and open it in Lab. */
export function openDebugInLab(runId) {
  window.parent.postMessage({ nbflow: "open-debug-notebook", run_id: runId }, window.location.origin);
}

/** Tell the JupyterLab page around this one that a run was started here: it opens the run in a tab of
 * its own and says when the run ends. */
export function startedInLab(run) {
  window.parent.postMessage({ nbflow: "run-started", run }, window.location.origin);
}

/** Jupyter's base_url, ending with "/". */
export const BASE_URL = withSlash(meta("nbflow-base-url") || guessBase());
/** Absolute path of the API, ending with "/". */
export const API_URL = withSlash(meta("nbflow-api") || `${BASE_URL}nbflow/api/`);

/** A failed API call: `status` 0 means the server could not be reached. */
export class ApiError extends Error {
  constructor(status, message, field = null, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.field = field;
    this.body = body;
  }

  get offline() {
    return this.status === 0 || this.status >= 500;
  }
}

// -- the connection: up or down, shown by the offline banner -----------------------------------

const HEALTH_POLL_MS = 2000;
const listeners = new Set();
let online = true;
let healthTimer = null;

/** Call `fn(online)` whenever the server goes away or comes back. */
export function onConnection(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function setOnline(value) {
  if (value === online) return;
  online = value;
  for (const fn of listeners) fn(online);
  if (!online) scheduleHealthCheck();
}

/** While down, ask `health` (public) until it answers, so the banner goes even on a quiet page. */
function scheduleHealthCheck() {
  if (healthTimer !== null) return;
  healthTimer = setTimeout(async () => {
    healthTimer = null;
    if (online) return;
    try {
      const response = await fetch(`${API_URL}health`, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) setOnline(true);
    } catch (_) { /* still down */ }
    if (!online) scheduleHealthCheck();
  }, HEALTH_POLL_MS);
}

// -- auth ----------------------------------------------------------------------------------------

let leaving = false;

/** The login has expired (or never was): go to Jupyter's login page, coming back here after. */
export function toLogin() {
  if (leaving) return;
  leaving = true;
  const here = window.location.pathname + window.location.search + window.location.hash;
  window.location.assign(`${BASE_URL}login?next=${encodeURIComponent(here)}`);
}

function xsrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : null;
}

// -- requests ------------------------------------------------------------------------------------

/** `path?query` under the API, skipping empty query values. */
export function apiUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const search = params.toString();
  return `${API_URL}${path}${search ? `?${search}` : ""}`;
}

/** The answer of an API call: fetch with the login cookie and XSRF header, the banner, the login. */
async function send(method, path, { query, body, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  const xsrf = xsrfToken();
  if (xsrf) headers["X-XSRFToken"] = xsrf;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch (exc) {
    setOnline(false);
    throw new ApiError(0, "Cannot reach the nbflow server.");
  }
  if (response.status >= 500) {
    setOnline(false);
    throw new ApiError(response.status, `The nbflow server answered ${response.status}.`);
  }
  setOnline(true);
  if (response.status === 401 || response.status === 403) {
    toLogin();
    throw new ApiError(response.status, "Not logged in.");
  }
  return response;
}

async function readBody(response, asText) {
  try {
    if (asText) return await response.text();
    return (response.headers.get("Content-Type") || "").includes("json") ? await response.json() : await response.text();
  } catch (_) {
    setOnline(false); // the answer was cut off
    throw new ApiError(0, "The nbflow server's answer was cut off.");
  }
}

function failure(method, path, response, data) {
  const message = data && typeof data === "object" && data.message ? data.message
    : `${method} ${path} answered ${response.status}.`;
  return new ApiError(response.status, message, data && typeof data === "object" ? data.field || null : null, data);
}

/**
 * The parsed JSON answer of an API call, or an ApiError. A network error or 5xx shows the
 * offline banner (any answer hides it); 401/403 go to the login page.
 */
export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  const data = await readBody(response, false);
  if (!response.ok) throw failure(method, path, response, data);
  return data;
}

/** A GET whose answer is not JSON (a page): {text, type}; errors as request(). */
export async function getText(path, query) {
  const response = await send("GET", path, { query, accept: "text/html, */*" });
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch (_) { /* not JSON */ }
    throw failure("GET", path, response, data);
  }
  return { text: await readBody(response, true), type: response.headers.get("Content-Type") || "" };
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body) => request("POST", path, { body: body === undefined ? {} : body });
export const patch = (path, body) => request("PATCH", path, { body });

// -- polling -------------------------------------------------------------------------------------

/**
 * Run `fn` now and then every `intervalMs` after it finishes (slower while the tab is hidden),
 * until stop(). Errors are shown by the banner, never thrown: the next tick tries again.
 * `refresh()` runs it again at once (after the current run, if one is in flight).
 */
export function poll(fn, intervalMs) {
  let timer = null;
  let stopped = false;
  let running = false;
  let again = false;

  async function tick() {
    timer = null;
    if (stopped) return;
    running = true;
    let keepGoing = true;
    try {
      keepGoing = (await fn()) !== false;
    } catch (exc) {
      if (!(exc instanceof ApiError)) console.error(exc);
    }
    running = false;
    if (stopped) return;
    if (again) {
      again = false;
      tick();
    } else if (keepGoing) {
      timer = setTimeout(tick, document.hidden ? intervalMs * 5 : intervalMs);
    }
  }

  tick();
  return {
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
    refresh() {
      if (stopped) return;
      if (running) {
        again = true;
        return;
      }
      if (timer !== null) clearTimeout(timer);
      tick();
    },
  };
}
