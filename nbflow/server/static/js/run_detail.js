// "#/runs/<id>": one flow run, live. Its header (state, times, parameters, message, where it
// ran), state history, run graph and timeline, task runs, logs and, for notebook deployments, the
// executed output notebook. Polled every 1.5 s until the run is final; the charts are redrawn only
// when the graph changed. Cancel and Retry are the API's cancel and "start a deployment run" calls;
// "Debug in a notebook" downloads the notebook that brings a failed task run's inputs back.

import { ApiError, EMBEDDED, apiUrl, get, getText, openDebugInLab, openInLab, poll, post, startedInLab } from "./api.js";
import {
  FINAL_STATES, KeyedRows, RUNNING_STATES, badge, cells, durationOf, fill, fmtDuration, h, runHref, setBadge,
  setText, shortId, stateCounts, table, timeCell,
} from "./dom.js";
import { draw, graphFigure, label as nodeLabel, loadPlotly, purge, timelineFigure } from "./run_charts.js";
import { LogList, TaskTable } from "./run_parts.js";

const POLL_MS = 1500;
/** polls after the run turned final: its last task runs and log lines may still be arriving. */
const SETTLE_POLLS = 3;
const CANCELLABLE = new Set(["Scheduled", "Pending", "Running"]);
const BAD_STATES = new Set(["Failed", "Crashed", "TimedOut"]);
/** states whose failed task runs may have kept their inputs. */
const DEBUGGABLE = new Set(["Failed", "TimedOut"]);
const CANCEL_REQUESTED = "Cancel requested: the worker is stopping the run.";
const RUN_ID = /^[0-9a-fA-F]{4,64}$/;
/** what an output notebook may load: nothing but inline styles and data: images and fonts. */
const NOTEBOOK_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:";

/** An HTML page without its scripts (the sandbox would block them anyway), NOTEBOOK_POLICY first in
 * its <head>. DOMParser builds an inert document: nothing in it runs or loads. */
function withPolicy(page) {
  const doc = new DOMParser().parseFromString(page, "text/html");
  for (const script of doc.querySelectorAll("script")) script.remove();
  const policy = doc.createElement("meta");
  policy.httpEquiv = "Content-Security-Policy";
  policy.content = NOTEBOOK_POLICY;
  doc.head.prepend(policy);
  return `<!DOCTYPE html>\n${doc.documentElement.outerHTML}`;
}

function notFound(root, id) {
  fill(root, h("section", { class: "not-found", "data-testid": "not-found" },
    h("h1", null, `Flow run ${id} not found`),
    h("p", null, "No flow run has this id in this server's store. ",
      h("a", { href: "#/runs" }, "See all flow runs."))));
  return { destroy() {} };
}

/** An action's failed fetch: the banner shows a lost server; the next poll asks again. */
function reportLater(exc) {
  if (!(exc instanceof ApiError)) console.error(exc);
}

function totalOf(graph) {
  return Object.values(graph.counts || {}).reduce((a, b) => a + b, 0);
}

function fact(label, value) {
  const dd = h("dd");
  if (value !== undefined) dd.append(value);
  return [h("dt", null, label), dd];
}

export function mountRunDetail(root, { params }) {
  const id = params[0];
  if (!RUN_ID.test(id)) return notFound(root, id);

  const loading = h("div", { class: "loading" }, "Loading flow run…");
  root.append(loading);

  // -- the page's parts, built once ---------------------------------------------------------
  const title = h("h1");
  const idText = h("span", { class: "id" });
  const stateBadge = badge("Pending", { "data-testid": "run-state" });
  const cancel = h("button", { type: "button", class: "danger", "data-testid": "cancel-button", hidden: true }, "Cancel");
  const retry = h("button", { type: "button", "data-testid": "retry-button", hidden: true }, "Retry");
  const retryFailed = h("button", { type: "button", "data-testid": "retry-failed-button", hidden: true,
    title: "Run again from the failed task, with what it saw restored instead of recomputed" }, "Retry from failed");
  const debugButton = h("button", { type: "button", "data-testid": "debug-button", hidden: true,
    title: `${EMBEDDED ? "Open a notebook in JupyterLab" : "Download a notebook"} that restores what the failed task ` +
      "saw and holds its failing code" },
  "Debug in a notebook");
  const actionNote = h("span", { class: "action-note", role: "status" });
  const factsEl = h("dl", { class: "facts" });
  const message = h("div", { class: "message", "data-testid": "run-message", hidden: true });
  const parametersEl = h("pre", { class: "message", "data-testid": "run-parameters" });
  const [historyTable, historyBody] = table("state-history", ["#", "State", "Time", "Message"]);
  const counts = h("div", { class: "counts", "data-testid": "task-counts" });
  const graphEl = h("div", { class: "chart", "data-testid": "run-graph" });
  const timelineEl = h("div", { class: "chart", "data-testid": "run-timeline" });
  const nodeDetail = h("div", { class: "node-detail", "data-testid": "node-detail" });
  const noTasks = h("p", { class: "muted" }, "This run has recorded no task runs (yet).");
  const notebookSection = h("section", { hidden: true });
  // a new page of task runs or another log level: fetch just that part, at once
  const tasks = new TaskTable(id, () => tasks.fetch().then((page) => alive && tasks.show(page)).catch(reportLater));
  const logs = new LogList(id, () => logs.fetch().then((page) => alive && logs.show(page)).catch(reportLater));

  const factCells = {};
  const facts = ["Flow run", "Scheduled", "Started", "Ended", "Duration", "Deployment", "Work pool", "Worker",
    "Triggered by", "Parent run", "Tags", "Attempts"];

  function buildPage(run) {
    for (const name of facts) {
      const [dt, dd] = fact(name);
      factCells[name] = dd;
      factsEl.append(dt, dd);
    }
    const page = h("section", { class: "run-detail", "data-testid": "run-detail", "data-run-id": run.id },
      h("p", null, h("a", { href: "#/runs" }, "‹ Flow runs")),
      h("div", { class: "run-head" }, title, idText, stateBadge, h("span", { class: "spacer" }), actionNote, debugButton, cancel, retryFailed, retry),
      factsEl,
      message,
      h("h2", null, "Parameters"), parametersEl,
      h("h2", null, "State history"), h("div", { class: "table-wrap" }, historyTable),
      h("h2", null, "Tasks"), counts, noTasks,
      h("div", { class: "task-area", hidden: true }, h("h3", null, "Graph"), graphEl, nodeDetail,
        h("h3", null, "Timeline"), timelineEl, h("h3", null, "Task runs"), tasks.el),
      h("div", { class: "page-head" }, h("h2", null, "Logs"), h("span", { class: "spacer" }), logs.controls),
      logs.el,
      notebookSection);
    fill(root, page);
  }

  const history = new KeyedRows(historyBody, {
    key: (s) => String(s.seq ?? s.timestamp),
    build(s) {
      const [tr, tds] = cells(4, { "data-testid": "state-row" });
      tds[0].className = "num";
      tds[1].append(badge(s.state));
      tds[3].className = "error";
      return tr;
    },
    update(tr, s) {
      const td = tr.children;
      setText(td[0], s.seq ?? "");
      setBadge(td[1].firstChild, s.state);
      timeCell(td[2], s.timestamp);
      setText(td[3], s.message || "");
      td[3].className = BAD_STATES.has(s.state) ? "error" : "";
    },
    empty: "No state changes recorded.",
  });

  // -- state ------------------------------------------------------------------------------------
  let run = null;
  let deploymentName = null;
  let graph = null;
  let graphSignature = null;
  let timelineDrawn = 0;
  let settle = SETTLE_POLLS;
  let notebookVersion = null;
  let notebookFrame = null;
  let notebookNote = null;
  let alive = true;

  function showHeader() {
    setText(title, run.flow_name || "flow run");
    setText(idText, shortId(run.id));
    idText.title = run.id;
    setBadge(stateBadge, run.state);
    document.title = `${run.flow_name} · ${run.state} · nbflow`;
    const f = factCells;
    setText(f["Flow run"], run.id);
    f["Flow run"].className = "mono";
    timeCell(f.Scheduled, run.scheduled_time);
    timeCell(f.Started, run.start_time);
    timeCell(f.Ended, run.end_time);
    setText(f.Duration, fmtDuration(durationOf(run)));
    if (run.deployment_id) {
      const key = `${run.deployment_id}|${deploymentName}`;
      if (f.Deployment._key !== key) {
        f.Deployment._key = key;
        const deployment = encodeURIComponent(run.deployment_id);
        fill(f.Deployment,
          h("a", { href: `#/runs?deployment_id=${deployment}` }, deploymentName || shortId(run.deployment_id)),
          " · ", h("a", { href: `#/deployments/${deployment}/run` }, "run with other parameters"));
      }
    } else {
      setText(f.Deployment, "—");
    }
    setText(f["Work pool"], run.work_pool || "—");
    if (f.Worker._key !== run.worker_id) {
      f.Worker._key = run.worker_id;
      fill(f.Worker, run.worker_id ? h("a", { href: "#/workers", class: "mono" }, run.worker_id) : "—");
    }
    if (f["Triggered by"]._key !== run.triggered_by) {
      f["Triggered by"]._key = run.triggered_by;
      fill(f["Triggered by"], triggeredBy(run.triggered_by));
    }
    if (f["Parent run"]._key !== run.parent_flow_run_id) {
      f["Parent run"]._key = run.parent_flow_run_id;
      fill(f["Parent run"], run.parent_flow_run_id
        ? h("a", { href: runHref(run.parent_flow_run_id), class: "mono" }, shortId(run.parent_flow_run_id)) : "—");
    }
    setText(f.Tags, (run.tags || []).join(", ") || "—");
    setText(f.Attempts, run.run_count ?? "");

    setText(message, run.state_message || "");
    message.hidden = !run.state_message;
    message.classList.toggle("bad", BAD_STATES.has(run.state));
    setText(parametersEl, JSON.stringify(run.parameters ?? {}, null, 2));

    const isDeploymentRun = Boolean(run.deployment_id);
    cancel.hidden = !(isDeploymentRun && CANCELLABLE.has(run.state));
    cancel.disabled = Boolean(run.cancel_requested);
    setText(cancel, run.cancel_requested ? "Cancelling…" : "Cancel");
    retry.hidden = !(isDeploymentRun && FINAL_STATES.has(run.state));
    debugButton.hidden = !DEBUGGABLE.has(run.state);
    retryFailed.hidden = !(isDeploymentRun && DEBUGGABLE.has(run.state));
    if (FINAL_STATES.has(run.state) && actionNote.textContent === CANCEL_REQUESTED) setText(actionNote, "");
  }

  /** "webhook:x", "schedule", a run id…: a link when it names a flow run. */
  function triggeredBy(value) {
    if (!value) return "—";
    const text = String(value);
    const match = text.match(/[0-9a-f]{32}/i);
    if (!match) return text;
    const [before, after] = [text.slice(0, match.index), text.slice(match.index + match[0].length)];
    return [before, h("a", { href: runHref(match[0]), class: "mono" }, shortId(match[0])), after];
  }

  /**
   * The executed notebook in a sandboxed iframe (no scripts, an opaque origin): loaded once it
   * exists, and again when the run ends (its last cells are written then). The page is fetched
   * first: a run without its notebook yet gets a line of text, not an error page in the frame, and
   * a page not sent as text/html is shown through srcdoc under the same policy the route sets.
   */
  async function showNotebook() {
    if (!run.output_notebook) {
      notebookSection.hidden = true;
      return;
    }
    const version = FINAL_STATES.has(run.state) ? "final" : "live";
    if (notebookVersion === version) return;
    if (!notebookFrame) {
      notebookNote = h("p", { class: "muted" });
      notebookFrame = h("iframe", { class: "notebook", "data-testid": "output-notebook", sandbox: "", title: "Output notebook" });
      fill(notebookSection,
        h("div", { class: "page-head" }, h("h2", null, "Output notebook"), h("span", { class: "spacer" }),
          EMBEDDED ? h("button", { type: "button", class: "primary", "data-testid": "open-in-lab",
            onclick: () => openInLab(run.id) }, "Open in JupyterLab") : null,
          h("a", { href: apiUrl(`flow_runs/${run.id}/output_notebook`), target: "_blank", rel: "noopener" },
            "open in a new tab")),
        h("p", { class: "muted mono" }, run.output_notebook), notebookNote, notebookFrame);
      notebookSection.hidden = false;
    }
    const path = `flow_runs/${run.id}/output_notebook`;
    let page;
    try {
      page = await getText(path);
    } catch (exc) {
      if (!(exc instanceof ApiError) || exc.offline) throw exc;
      setText(notebookNote, exc.message);
      notebookFrame.hidden = true;
      if (version === "final") notebookVersion = version; // it will not appear any more
      return;
    }
    notebookVersion = version;
    setText(notebookNote, "");
    notebookFrame.hidden = false;
    const src = apiUrl(path, version === "final" ? { v: Date.now() } : {});
    if (/text\/html/i.test(page.type)) {
      notebookFrame.removeAttribute("srcdoc");
      notebookFrame.src = src;
    } else {
      notebookFrame.setAttribute("src", src);
      notebookFrame.srcdoc = withPolicy(page.text);
    }
  }

  function taskNameIndex() {
    for (const node of graph.nodes || []) {
      if (!(node.count > 1)) logs.taskNames.set(node.id, node.name);
    }
  }

  async function showGraph() {
    const signature = JSON.stringify(graph);
    const running = (graph.nodes || []).some((n) => RUNNING_STATES.has(n.state));
    const changed = signature !== graphSignature;
    graphSignature = signature;
    const total = totalOf(graph);
    const hasTasks = (graph.nodes || []).length > 0;
    if (changed) {
      const collapsed = graph.collapsed ? " (a mapped task of many runs is drawn as one node)" : "";
      const summary = `${total.toLocaleString()} task run${total === 1 ? "" : "s"}${collapsed}: `;
      fill(counts, hasTasks ? [h("span", { class: "muted" }, summary), stateCounts(graph.counts || {})] : null);
      taskNameIndex();
    }
    noTasks.hidden = hasTasks;
    graphEl.parentElement.hidden = !hasTasks;
    if (!hasTasks) return;
    if (changed) await draw(graphEl, graphFigure(graph, graphEl.clientWidth), selectNode);
    // running bars grow with time: redraw the timeline at most once a second while something runs
    if (changed || (running && Date.now() - timelineDrawn > 1000)) {
      timelineDrawn = Date.now();
      const figure = timelineFigure(graph, run.start_time);
      if (figure) {
        if (timelineEl.querySelector(".chart-note")) timelineEl.replaceChildren();
        await draw(timelineEl, figure, selectNode);
      } else if (changed) {
        purge(timelineEl);
        fill(timelineEl, h("div", { class: "chart-note" }, "Nothing has started yet."));
      }
    }
  }

  function selectNode(index) {
    const node = (graph.nodes || [])[index];
    if (!node) return;
    const parts = [h("b", null, nodeLabel(node)), " ", badge(node.state)];
    const duration = node.duration_s ?? null;
    if (duration !== null) parts.push(` ${fmtDuration(duration)}`);
    if (node.count > 1) parts.push(h("div", { class: "counts" }, stateCounts(node.counts || {})));
    if (node.error) parts.push(h("pre", { class: "message bad" }, node.error));
    fill(nodeDetail, parts);
  }

  async function loadDeploymentName() {
    if (!run.deployment_id || deploymentName) return;
    try {
      deploymentName = (await get(`deployments/${encodeURIComponent(run.deployment_id)}`)).name;
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 404) deploymentName = `${shortId(run.deployment_id)} (deleted)`;
      else throw exc;
    }
  }

  /** One poll: every part is asked for at once (one round trip, not a chain) and drawn as it comes. */
  async function refresh() {
    const quiet = (promise) => {
      promise.catch(() => {}); // handled below; never an "unhandled rejection"
      return promise;
    };
    const asked = {
      run: quiet(get(`flow_runs/${id}`)),
      states: quiet(get(`flow_runs/${id}/states`)),
      graph: quiet(get(`flow_runs/${id}/graph`)),
      tasks: quiet(tasks.fetch()),
      logs: quiet(logs.fetch()),
    };
    try {
      run = await asked.run;
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 404) {
        notFound(root, id);
        return false;
      }
      if (exc instanceof ApiError && exc.status >= 400 && exc.status < 500 && !factsEl.isConnected) {
        fill(root, h("section", { class: "not-found", "data-testid": "run-error" },
          h("h1", null, `Flow run ${id} cannot be shown`), h("p", { class: "error-text" }, exc.message)));
        return false; // e.g. an id prefix that several runs share
      }
      throw exc;
    }
    if (!alive) return false;
    if (!factsEl.isConnected) buildPage(run);
    await loadDeploymentName().catch(() => {});
    showHeader();
    // each part is drawn when it arrives; one that failed is asked for again at the next poll
    const drawn = await Promise.allSettled([
      asked.states.then((states) => alive && history.set(states)),
      asked.graph.then((fresh) => {
        graph = fresh;
        return alive && showGraph();
      }),
      asked.tasks.then((page) => alive && tasks.show(page, run.start_time, graph ? totalOf(graph) : 0)),
      asked.logs.then((page) => alive && logs.show(page)),
      showNotebook(),
    ]);
    const failed = drawn.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    if (!FINAL_STATES.has(run.state)) {
      settle = SETTLE_POLLS;
      return true;
    }
    settle -= 1;
    return settle > 0;
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    setText(actionNote, "");
    try {
      await post(`flow_runs/${run.id}/cancel`);
      setText(actionNote, CANCEL_REQUESTED);
    } catch (exc) {
      setText(actionNote, exc.status === 409 ? "The run has already finished." : `Could not cancel: ${exc.message}`);
      cancel.disabled = false;
    }
    settle = SETTLE_POLLS;
    detailPoll.refresh();
  });

  /** A run started here (Retry): its page; inside JupyterLab, a tab of its own that Lab follows to its end. */
  function showStarted(again) {
    if (!EMBEDDED) {
      window.location.hash = runHref(again.id);
      return;
    }
    startedInLab(again);
    setText(actionNote, `Started run ${shortId(again.id)} (in a tab of its own).`);
    retry.disabled = false;
  }

  debugButton.addEventListener("click", async () => {
    if (EMBEDDED) {  // inside JupyterLab: Lab saves the notebook among the user's files and opens it
      openDebugInLab(run.id);
      return;
    }
    debugButton.disabled = true;
    setText(actionNote, "");
    try {
      const notebook = await getText(`flow_runs/${run.id}/debug_notebook`);
      const link = h("a", { href: URL.createObjectURL(new Blob([notebook.text], { type: "application/x-ipynb+json" })),
        download: `debug-${shortId(run.id)}.ipynb` });
      document.body.append(link);
      link.click();
      link.remove();
      setText(actionNote, `Downloaded debug-${shortId(run.id)}.ipynb: open it in Jupyter and run it.`);
    } catch (exc) {
      setText(actionNote, `No debug notebook: ${exc.message}`);
    }
    debugButton.disabled = false;
  });

  retryFailed.addEventListener("click", async () => {
    retryFailed.disabled = true;
    setText(actionNote, "");
    try {
      const again = await post(`flow_runs/${run.id}/retry`, { from_failed: true });
      showStarted(again);
    } catch (exc) {
      setText(actionNote, `Could not retry from the failed task: ${exc.message}`);
    }
    retryFailed.disabled = false;
  });

  retry.addEventListener("click", async () => {
    retry.disabled = true;
    setText(actionNote, "");
    try {
      const again = await post(`deployments/${encodeURIComponent(run.deployment_id)}/runs`, { parameters: run.parameters || {} });
      showStarted(again);
    } catch (exc) {
      setText(actionNote, `Could not retry: ${exc.message}`);
      retry.disabled = false;
    }
  });

  // plotly.js takes ~1 s to parse on a slow machine: load it while the run is being fetched
  loadPlotly().catch(() => {});
  const detailPoll = poll(async () => {
    const more = await refresh();
    loading.remove();
    return more;
  }, POLL_MS);

  return {
    destroy() {
      alive = false;
      detailPoll.stop();
      purge(graphEl);
      purge(timelineEl);
      document.title = "nbflow";
    },
  };
}
