// The Flows and Workers pages: small tables, re-polled and updated row by row.

import { get, poll } from "./api.js";
import { h, KeyedRows, badge, cells, fmtRelative, setBadge, setText, table, timeCell } from "./dom.js";

const FLOWS_POLL_MS = 5000;
const WORKERS_POLL_MS = 2000;

export function mountFlows(root) {
  const [flowsTable, tbody] = table("flows-table", ["Flow", "Runs", "Last run", "Last state"]);
  root.append(h("section", null,
    h("div", { class: "page-head" }, h("h1", null, "Flows")),
    h("p", { class: "muted" }, "Every flow that has run. Click one to see its runs."),
    h("div", { class: "table-wrap" }, flowsTable)));

  const rows = new KeyedRows(tbody, {
    key: (flow) => flow.flow_name,
    build(flow) {
      const [tr, tds] = cells(4, { class: "clickable", "data-testid": "flow-row", "data-name": flow.flow_name });
      const href = `#/runs?flow_name=${encodeURIComponent(flow.flow_name)}`;
      tds[0].append(h("a", { href }));
      tds[1].className = "num";
      tds[3].append(badge(flow.last_state));
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("a")) window.location.hash = href;
      });
      return tr;
    },
    update(tr, flow) {
      const td = tr.children;
      setText(td[0].firstChild, flow.flow_name);
      setText(td[1], flow.runs);
      timeCell(td[2], flow.last_run_start);
      setBadge(td[3].firstChild, flow.last_state);
    },
    empty: "No flow has run yet.",
  });

  const flowsPoll = poll(async () => rows.set(await get("flows")), FLOWS_POLL_MS);
  return { destroy: () => flowsPoll.stop() };
}

/** Pools list their workers as a count or as a list, depending on the server. */
function workerCount(pool) {
  if (Array.isArray(pool.workers)) return pool.workers.length;
  return pool.workers ?? "";
}

export function mountWorkers(root) {
  const [workersTable, workerBody] = table("workers-table",
    ["Worker", "Work pool", "Host", "PID", "Started", "Last heartbeat", "Status"]);
  const [poolsTable, poolBody] = table("pools-table", ["Work pool", "Concurrency limit", "Workers", "Created"]);
  root.append(h("section", null,
    h("div", { class: "page-head" }, h("h1", null, "Workers")),
    h("div", { class: "table-wrap" }, workersTable),
    h("h2", null, "Work pools"),
    h("div", { class: "table-wrap" }, poolsTable)));

  const workers = new KeyedRows(workerBody, {
    key: (w) => w.id,
    build(w) {
      const [tr, tds] = cells(7, { "data-testid": "worker-row", "data-worker-id": w.id });
      tds[0].className = "mono";
      tds[3].className = "num";
      tds[6].append(h("span", { class: "pill", "data-testid": "worker-online" }));
      return tr;
    },
    update(tr, w) {
      const td = tr.children;
      setText(td[0], w.id);
      setText(td[1], w.work_pool);
      setText(td[2], w.host);
      setText(td[3], w.pid ?? "");
      timeCell(td[4], w.started);
      setText(td[5], fmtRelative(w.heartbeat));
      td[5].title = w.heartbeat || "";
      const pill = td[6].firstChild;
      setText(pill, w.online ? "online" : "offline");
      pill.className = `pill ${w.online ? "online" : "offline"}`;
    },
    // the heartbeat's "n s ago" changes every second
    signature: (w) => JSON.stringify([w, fmtRelative(w.heartbeat)]),
    empty: "No worker has checked in.",
  });
  const pools = new KeyedRows(poolBody, {
    key: (p) => p.name,
    build(p) {
      const [tr, tds] = cells(4, { "data-testid": "pool-row", "data-name": p.name });
      tds[1].className = "num";
      tds[2].className = "num";
      return tr;
    },
    update(tr, p) {
      const td = tr.children;
      setText(td[0], p.name);
      setText(td[1], p.concurrency_limit ?? "no limit");
      setText(td[2], workerCount(p));
      if (Array.isArray(p.workers)) td[2].title = p.workers.map((w) => (typeof w === "string" ? w : w.id)).join(", ");
      timeCell(td[3], p.created);
    },
    empty: "No work pools.",
  });

  const workersPoll = poll(async () => {
    const [w, p] = await Promise.all([get("workers"), get("work_pools")]);
    workers.set(w);
    pools.set(p);
  }, WORKERS_POLL_MS);
  return { destroy: () => workersPoll.stop() };
}
