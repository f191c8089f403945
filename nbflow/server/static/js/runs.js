// The Runs page: flow runs newest first, filtered by flow, state, deployment and time, a page of
// 50 at a time, re-polled every 2 s and updated row by row (filters, scroll and focus survive).

import { get, poll } from "./api.js";
import {
  h, KeyedRows, STATES, badge, cells, clip, durationOf, fmtDuration, fmtParameters, runHref, setBadge, setText,
  shortId, table, timeCell,
} from "./dom.js";

const PAGE_SIZE = 50;
const POLL_MS = 2000;
const OPTIONS_POLL_MS = 10000;
const FILTERS = ["flow_name", "state", "deployment_id", "since", "until"];

/** The value of a datetime-local input ("2024-05-01T12:30", local time) as ISO 8601 UTC. */
function isoFromLocal(value) {
  if (!value) return "";
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? "" : new Date(ms).toISOString();
}

/** Put `options` ([{value, label}]) into a <select> after its "all" option, keeping the choice. */
export function syncOptions(select, options, allLabel) {
  const chosen = select.value;
  const list = [...options];
  if (chosen && !list.some((o) => o.value === chosen)) list.push({ value: chosen, label: chosen });
  const signature = JSON.stringify(list);
  if (select._sig === signature) return;
  select._sig = signature;
  select.replaceChildren(h("option", { value: "" }, allLabel),
    ...list.map((o) => h("option", { value: o.value }, o.label)));
  select.value = chosen;
}

export function mountRuns(root, { query }) {
  const filters = Object.fromEntries(FILTERS.map((k) => [k, query[k] || ""]));
  let offset = Math.max(0, parseInt(query.offset || "0", 10) || 0);
  let deploymentNames = new Map();
  let lastRuns = [];

  const flowSelect = h("select", { "data-testid": "filter-flow", "aria-label": "Flow" });
  const stateSelect = h("select", { "data-testid": "filter-state", "aria-label": "State" },
    h("option", { value: "" }, "All states"), STATES.map((s) => h("option", { value: s }, s)));
  const deploymentSelect = h("select", { "data-testid": "filter-deployment", "aria-label": "Deployment" });
  const since = h("input", { type: "datetime-local", "data-testid": "filter-since", "aria-label": "Since" });
  const until = h("input", { type: "datetime-local", "data-testid": "filter-until", "aria-label": "Until" });
  syncOptions(flowSelect, filters.flow_name ? [{ value: filters.flow_name, label: filters.flow_name }] : [], "All flows");
  syncOptions(deploymentSelect, filters.deployment_id
    ? [{ value: filters.deployment_id, label: shortId(filters.deployment_id) }] : [], "All deployments");
  flowSelect.value = filters.flow_name;
  stateSelect.value = STATES.includes(filters.state) ? filters.state : "";
  deploymentSelect.value = filters.deployment_id;
  since.value = filters.since;
  until.value = filters.until;

  const [runsTable, tbody] = table("runs-table",
    ["Flow run", "Flow", "State", "Start", "Duration", "Deployment", "Parameters"]);
  const prev = h("button", { "data-testid": "page-prev", type: "button" }, "‹ Newer");
  const next = h("button", { "data-testid": "page-next", type: "button" }, "Older ›");
  const pageLabel = h("span", { class: "page-label" });
  const updated = h("span", { class: "faint" });
  const ignoredNote = h("div", { class: "action-error", "data-testid": "filter-ignored", hidden: true },
    "This server did not apply the deployment or time filter: only the matching runs of this page are shown.");

  root.append(h("section", { class: "runs-page" },
    h("div", { class: "page-head" }, h("h1", null, "Flow runs"), h("span", { class: "spacer" }), updated),
    h("div", { class: "filters" },
      h("label", null, "Flow", flowSelect),
      h("label", null, "State", stateSelect),
      h("label", null, "Deployment", deploymentSelect),
      h("label", null, "Since", since),
      h("label", null, "Until", until),
      h("button", { type: "button", onclick: clearFilters }, "Clear")),
    ignoredNote,
    h("div", { class: "table-wrap" }, runsTable),
    h("div", { class: "pager" }, prev, pageLabel, next)));

  const rows = new KeyedRows(tbody, {
    key: (run) => run.id,
    build: buildRow,
    update: updateRow,
    signature: (run) => JSON.stringify([run, deploymentLabel(run), fmtDuration(durationOf(run))]),
    empty: "No flow runs match these filters.",
  });

  function deploymentLabel(run) {
    return run.deployment_id ? deploymentNames.get(run.deployment_id) || shortId(run.deployment_id) : "";
  }

  function buildRow(run) {
    const [tr, tds] = cells(7, { class: "clickable", "data-testid": "run-row", "data-run-id": run.id });
    tds[0].className = "mono";
    tds[0].append(h("a", { href: runHref(run.id) }));
    tds[2].setAttribute("data-testid", "run-state");
    tds[2].append(badge(run.state));
    tds[4].className = "num";
    tds[5].append(h("a"));
    tds[6].className = "params";
    tr.addEventListener("click", (event) => {
      if (event.target.closest("a") || window.getSelection().toString()) return;
      window.location.hash = runHref(run.id);
    });
    return tr;
  }

  function updateRow(tr, run) {
    const td = tr.children;
    setText(td[0].firstChild, shortId(run.id));
    td[0].title = run.id;
    setText(td[1], run.flow_name);
    setBadge(td[2].firstChild, run.state);
    td[2].title = run.state_message || "";
    const started = run.start_time || run.scheduled_time;
    timeCell(td[3], started);
    if (!run.start_time && run.scheduled_time) setText(td[3], `scheduled ${td[3].textContent}`);
    setText(td[4], fmtDuration(durationOf(run)));
    const link = td[5].firstChild;
    setText(link, deploymentLabel(run));
    if (run.deployment_id) link.href = `#/runs?deployment_id=${encodeURIComponent(run.deployment_id)}`;
    else link.removeAttribute("href");
    const parameters = fmtParameters(run.parameters);
    setText(td[6], clip(parameters, 200));
    td[6].title = parameters;
  }

  function apiQuery() {
    return {
      flow_name: filters.flow_name,
      state: filters.state,
      deployment_id: filters.deployment_id,
      since: isoFromLocal(filters.since),
      until: isoFromLocal(filters.until),
      limit: PAGE_SIZE + 1,
      offset,
    };
  }

  /** Keep the filters in the URL (no hashchange, so the page is not re-mounted). */
  function writeHash() {
    const params = new URLSearchParams();
    for (const key of FILTERS) if (filters[key]) params.set(key, filters[key]);
    if (offset) params.set("offset", String(offset));
    const search = params.toString();
    window.history.replaceState(null, "", `#/runs${search ? `?${search}` : ""}`);
  }

  /**
   * Whether a run matches the deployment and time filters. The server applies them; a server that
   * ignores one (an older nbflow) would list runs that do not match, so those are left out and the
   * page says so rather than showing them as matches.
   */
  function matches(run, q) {
    if (q.deployment_id && run.deployment_id !== q.deployment_id) return false;
    const when = Date.parse(run.start_time || run.scheduled_time || "");
    if (q.since && !(when >= Date.parse(q.since))) return false;
    if (q.until && !(when <= Date.parse(q.until))) return false;
    return true;
  }

  async function refresh() {
    const q = apiQuery();
    const key = JSON.stringify(q);
    const answer = await get("flow_runs", q);
    if (key !== JSON.stringify(apiQuery())) return; // the filters changed while it was in flight
    const runs = answer.filter((run) => matches(run, q));
    ignoredNote.hidden = runs.length === answer.length;
    lastRuns = runs.slice(0, PAGE_SIZE);
    rows.set(lastRuns);
    prev.disabled = offset === 0;
    next.disabled = answer.length <= PAGE_SIZE;
    setText(pageLabel, lastRuns.length ? `${offset + 1}–${offset + lastRuns.length}` : "");
    setText(updated, `updated ${new Date().toLocaleTimeString()}`);
  }

  async function refreshOptions() {
    const [flows, deployments] = await Promise.all([get("flows"), get("deployments", { limit: 1000 })]);
    syncOptions(flowSelect, flows.map((f) => ({ value: f.flow_name, label: f.flow_name })), "All flows");
    deploymentNames = new Map(deployments.map((d) => [d.id, d.name]));
    syncOptions(deploymentSelect, deployments.map((d) => ({ value: d.id, label: d.name })), "All deployments");
    rows.set(lastRuns);
  }

  function applyFilters() {
    filters.flow_name = flowSelect.value;
    filters.state = stateSelect.value;
    filters.deployment_id = deploymentSelect.value;
    filters.since = since.value;
    filters.until = until.value;
    offset = 0;
    writeHash();
    runsPoll.refresh();
  }

  function clearFilters() {
    for (const input of [flowSelect, stateSelect, deploymentSelect, since, until]) input.value = "";
    applyFilters();
  }

  for (const input of [flowSelect, stateSelect, deploymentSelect, since, until]) {
    input.addEventListener("change", applyFilters);
  }
  prev.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    writeHash();
    runsPoll.refresh();
  });
  next.addEventListener("click", () => {
    offset += PAGE_SIZE;
    writeHash();
    runsPoll.refresh();
  });
  prev.disabled = offset === 0;
  next.disabled = true;

  const runsPoll = poll(refresh, POLL_MS);
  const optionsPoll = poll(refreshOptions, OPTIONS_POLL_MS);
  return {
    destroy() {
      runsPoll.stop();
      optionsPoll.stop();
    },
  };
}
