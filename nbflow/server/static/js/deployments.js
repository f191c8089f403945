// The Deployments page: schedule in words, next run, paused or not, with Pause/Resume (PATCH) and a
// Run button that opens the deployment's parameter form.

import { get, patch, poll } from "./api.js";
import { h, KeyedRows, cells, fmtRelative, setText, table, timeCell } from "./dom.js";

const POLL_MS = 3000;

/** What a deployment runs, short (the file name) and in full. */
export function target(d) {
  const full = d.kind === "flow" ? d.entrypoint : d.notebook;
  if (!full) return ["", ""];
  const short = full.split(/[\\/]/).pop();
  return [short, full];
}

export function scheduleText(d) {
  if (d.schedule_description) return d.schedule_description;
  return d.schedule ? JSON.stringify(d.schedule) : "no schedule";
}

export function mountDeployments(root) {
  const [deploymentsTable, tbody] = table("deployments-table",
    ["Deployment", "Kind", "Target", "Schedule", "Next run", "Status", "Work pool", ""]);
  const note = h("div", { class: "action-error", role: "alert" });
  root.append(h("section", null,
    h("div", { class: "page-head" }, h("h1", null, "Deployments")),
    note,
    h("div", { class: "table-wrap" }, deploymentsTable)));

  const rows = new KeyedRows(tbody, {
    key: (d) => d.id,
    build(d) {
      const [tr, tds] = cells(8, { "data-testid": "deployment-row", "data-name": d.name, "data-id": d.id });
      tds[0].append(h("a", { href: `#/runs?deployment_id=${encodeURIComponent(d.id)}` }));
      tds[2].className = "mono";
      tds[5].append(h("span", { class: "pill" }));
      const toggle = h("button", { type: "button", class: "small" });
      toggle.addEventListener("click", () => setPaused(tr._deployment, toggle));
      const run = h("button", { type: "button", class: "small primary", "data-testid": "run-button" }, "Run");
      run.addEventListener("click", () => {
        window.location.hash = `#/deployments/${encodeURIComponent(d.id)}/run`;
      });
      tds[7].append(h("span", { class: "actions" }, toggle, " ", run));
      return tr;
    },
    update(tr, d) {
      tr._deployment = d;
      const td = tr.children;
      setText(td[0].firstChild, d.name);
      setText(td[1], d.kind);
      const [short, full] = target(d);
      setText(td[2], short);
      td[2].title = full;
      setText(td[3], scheduleText(d));
      timeCell(td[4], d.next_run_time);
      if (d.next_run_time) td[4].title = `${d.next_run_time} (${fmtRelative(d.next_run_time)})`;
      const pill = td[5].firstChild;
      setText(pill, d.paused ? "paused" : "active");
      pill.className = `pill ${d.paused ? "paused" : "active"}`;
      setText(td[6], d.work_pool);
      const toggle = td[7].querySelector("button");
      setText(toggle, d.paused ? "Resume" : "Pause");
      toggle.setAttribute("data-testid", d.paused ? "resume-button" : "pause-button");
      toggle.disabled = false;
    },
    empty: "No deployments yet: create one with `nbflow deploy`.",
  });

  async function setPaused(d, button) {
    button.disabled = true;
    setText(note, "");
    try {
      const changed = await patch(`deployments/${encodeURIComponent(d.id)}`, { paused: !d.paused });
      const current = [...rows.rows.values()].map((tr) => (tr._deployment.id === changed.id ? changed : tr._deployment));
      rows.set(current);
    } catch (exc) {
      setText(note, `Could not ${d.paused ? "resume" : "pause"} ${d.name}: ${exc.message}`);
      button.disabled = false;
    }
    deploymentsPoll.refresh();
  }

  const deploymentsPoll = poll(async () => rows.set(await get("deployments", { limit: 1000 })), POLL_MS);
  return { destroy: () => deploymentsPoll.stop() };
}
