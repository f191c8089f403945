// "#/deployments/<id>/run": a form generated from the deployment's parameter_schema. Values are
// type-checked in the page first (nothing is sent while one is wrong); the server's own 422 is
// shown on its field. A started run opens its detail page, which follows it live.

import { ApiError, get, poll, post } from "./api.js";
import { h, KeyedRows, badge, cells, fill, fmtRelative, runHref, setText, shortId, table, timeCell } from "./dom.js";
import { scheduleText, target } from "./deployments.js";
import { collect, fieldsFor } from "./params.js";

const POLL_MS = 3000;

export function mountRunForm(root, { params }) {
  const ref = params[0];
  const head = h("div", { class: "page-head" }, h("h1", null, "Run deployment"));
  const summary = h("dl", { class: "facts" });
  const body = h("div", { class: "loading" }, "Loading…");
  const [scheduledTable, scheduledBody] = table("scheduled-runs", ["Flow run", "Scheduled for", "State"]);
  const scheduledSection = h("section", { hidden: true },
    h("h2", null, "Next scheduled runs"), h("div", { class: "table-wrap" }, scheduledTable));
  const page = h("section", null,
    h("p", null, h("a", { href: "#/deployments" }, "‹ Deployments")), head, summary, body, scheduledSection);
  root.append(page);

  let fields = null;
  let deployment = null;
  let submitting = false;

  const scheduled = new KeyedRows(scheduledBody, {
    key: (run) => run.id,
    build(run) {
      const [tr, tds] = cells(3, { "data-testid": "scheduled-run", "data-run-id": run.id });
      tds[0].className = "mono";
      tds[0].append(h("a", { href: runHref(run.id) }, shortId(run.id)));
      tds[2].append(badge(run.state));
      return tr;
    },
    update(tr, run) {
      timeCell(tr.children[1], run.scheduled_time);
      setText(tr.children[1], `${tr.children[1].textContent} (${fmtRelative(run.scheduled_time)})`);
    },
    signature: (run) => JSON.stringify([run.scheduled_time, fmtRelative(run.scheduled_time)]),
    empty: "No scheduled runs.",
  });

  function showSummary(d) {
    const [short, full] = target(d);
    const facts = [
      ["Deployment", d.name], ["Flow", d.flow_name], ["Kind", d.kind], ["Runs", full || short],
      ["Schedule", scheduleText(d)], ["Work pool", d.work_pool],
      ["Status", d.paused ? "paused (runs started here still run)" : "active"],
      ["Timeout", d.timeout_seconds ? `${d.timeout_seconds} s` : "none"],
    ];
    fill(summary, facts.map(([k, v]) => [h("dt", null, k), h("dd", null, v ?? "")]));
    setText(head.firstChild, `Run ${d.name}`);
  }

  function buildForm(d) {
    fields = fieldsFor(d);
    const formError = h("div", { class: "form-error", "data-testid": "form-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "submit-run" }, "Run now");
    const form = h("form", { class: "run-form", "data-testid": "run-form", novalidate: true },
      fields.length ? fields.map((f) => f.row) : h("p", { class: "muted" }, "This deployment takes no parameters."),
      h("div", { class: "form-actions" }, submit, formError));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      start(submit, formError);
    });
    for (const field of fields) field.input.addEventListener("input", () => field.showError(""));
    fill(body, h("h2", null, "Parameters"), form);
    body.className = "";
  }

  async function start(submit, formError) {
    if (submitting) return;
    setText(formError, "");
    for (const field of fields) field.showError("");
    const { parameters, errors } = collect(fields);
    if (errors) {
      for (const field of fields) field.showError(errors[field.name]);
      fields.find((f) => errors[f.name]).input.focus();
      return; // nothing is sent
    }
    submitting = true;
    submit.disabled = true;
    try {
      const run = await post(`deployments/${encodeURIComponent(deployment.id)}/runs`, { parameters });
      window.location.hash = runHref(run.id);
    } catch (exc) {
      showServerError(exc, formError);
    } finally {
      submitting = false;
      submit.disabled = false;
    }
  }

  /** The field a server error is about: its `field`, or ("parameters") the parameter its message names. */
  function fieldOf(exc) {
    if (!(exc instanceof ApiError)) return null;
    const named = String(exc.field || "").replace(/^parameters\.?/, "");
    if (named) return fields.find((f) => f.name === named) || null;
    const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return fields.find((f) => new RegExp(`(^|[^\\w])${escape(f.name)}([^\\w]|$)`).test(exc.message)) || null;
  }

  function showServerError(exc, formError) {
    const field = fieldOf(exc);
    if (field) {
      field.showError(exc.message);
      field.input.focus();
    } else if (!(exc instanceof ApiError && exc.offline)) {
      setText(formError, exc.message);
    } else {
      setText(formError, "The run was not started: the server cannot be reached. Try again when it is back.");
    }
  }

  function notFound() {
    fill(page, h("div", { class: "not-found", "data-testid": "not-found" },
      h("h1", null, `Deployment ${ref} not found`),
      h("p", null, "It may have been deleted. ", h("a", { href: "#/deployments" }, "See all deployments."))));
  }

  const deploymentPoll = poll(async () => {
    let d;
    try {
      d = await get(`deployments/${encodeURIComponent(ref)}`);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 404) {
        notFound();
        return false;
      }
      throw exc;
    }
    deployment = d;
    showSummary(d);
    if (!fields) buildForm(d);
    const runs = await get("flow_runs", { deployment_id: d.id, state: "Scheduled", limit: 5 });
    // the list is newest first; the next run is the earliest scheduled time
    runs.sort((a, b) => String(a.scheduled_time).localeCompare(String(b.scheduled_time)));
    scheduled.set(runs);
    scheduledSection.hidden = false;
    return true;
  }, POLL_MS);

  return { destroy: () => deploymentPoll.stop() };
}
