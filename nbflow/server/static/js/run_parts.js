// Pieces of the run detail page that page through long lists: the task runs table (100 rows a
// page, so a 5,000-task run never has 5,000 rows in the DOM) and the logs with a level filter.

import { get } from "./api.js";
import {
  h, KeyedRows, badge, cells, clip, durationOf, epochMs, fill, fmtClock, fmtDuration, setBadge, setText, table,
} from "./dom.js";

const TASK_PAGE = 100;
const LOG_PAGE = 200;
const LEVELS = [["DEBUG", 10], ["INFO", 20], ["WARNING", 30], ["ERROR", 40]];

function pager(testid, onMove) {
  const prev = h("button", { type: "button", class: "small", "data-testid": `${testid}-prev` }, "‹ Prev");
  const next = h("button", { type: "button", class: "small", "data-testid": `${testid}-next` }, "Next ›");
  const text = h("span");
  prev.addEventListener("click", () => onMove(-1));
  next.addEventListener("click", () => onMove(1));
  return { el: h("div", { class: "pager" }, prev, text, next), prev, next, text };
}

function taskLabel(task) {
  return task.dynamic_key === null || task.dynamic_key === undefined ? task.task_name : `${task.task_name}[${task.dynamic_key}]`;
}

/** The task runs of a flow run, a page at a time: fetch() the current page, then show() it. */
export class TaskTable {
  constructor(runId, onChange) {
    this.runId = runId;
    this.offset = 0;
    const [el, tbody] = table("task-table", ["Task run", "State", "Start", "Duration", "Error"]);
    this.pager = pager("task-page", (step) => {
      this.offset = Math.max(0, this.offset + step * TASK_PAGE);
      onChange();
    });
    this.el = h("div", null, h("div", { class: "table-wrap" }, el), this.pager.el);
    this.rows = new KeyedRows(tbody, {
      key: (t) => t.id,
      build(t) {
        const [tr, tds] = cells(5, { "data-testid": "task-row", "data-task-run-id": t.id });
        tds[1].append(badge(t.state));
        tds[3].className = "num";
        tds[4].className = "error";
        return tr;
      },
      update: (tr, t) => {
        const td = tr.children;
        setText(td[0], taskLabel(t));
        td[0].title = t.id;
        setBadge(td[1].firstChild, t.state);
        const start = epochMs(t.start_time);
        setText(td[2], start !== null && this.t0 !== null ? `+${((start - this.t0) / 1000).toFixed(2)} s` : "");
        td[2].title = t.start_time || "";
        setText(td[3], fmtDuration(durationOf(t)));
        const error = t.error || (t.state !== "Completed" && t.state !== "Cached" ? t.state_message : "") || "";
        setText(td[4], clip(error, 400));
        td[4].title = error;
      },
      signature: (t) => JSON.stringify([t, fmtDuration(durationOf(t)), this.t0]),
      empty: "No task runs.",
    });
    this.t0 = null;
    this.total = 0;
  }

  /** The current page (one more row than shown: whether there is a next page). */
  fetch() {
    const { offset } = this;
    return get(`flow_runs/${this.runId}/task_runs`, { limit: TASK_PAGE + 1, offset }).then((tasks) => ({ offset, tasks }));
  }

  /** Show a page; `runStart` is where "+s" counts from, `total` (the graph's counts) labels the pager. */
  show({ offset, tasks }, runStart, total) {
    if (offset !== this.offset) return; // asked for before the pager moved
    if (runStart !== undefined) this.t0 = epochMs(runStart);
    if (total !== undefined) this.total = total;
    if (!tasks.length && this.offset > 0) {
      this.offset = Math.max(0, this.offset - TASK_PAGE); // the page emptied; step back next time
    }
    const shown = tasks.slice(0, TASK_PAGE);
    this.rows.set(shown);
    this.pager.prev.disabled = this.offset === 0;
    this.pager.next.disabled = tasks.length <= TASK_PAGE;
    const of = this.total ? ` of ${this.total.toLocaleString()}` : "";
    setText(this.pager.text, shown.length ? `${this.offset + 1}–${this.offset + shown.length}${of}` : "");
    this.pager.el.hidden = this.offset === 0 && tasks.length <= TASK_PAGE;
  }
}

/** A flow run's log lines, at or above the chosen level, the newest page shown oldest first. */
export class LogList {
  constructor(runId, onChange) {
    this.runId = runId;
    this.offset = 0;
    this.signature = null;
    this.taskNames = new Map();
    this.level = h("select", { "data-testid": "log-level", "aria-label": "Minimum log level" },
      LEVELS.map(([name, value]) => h("option", { value: String(value) }, name)));
    this.level.addEventListener("change", () => {
      this.offset = 0;
      onChange();
    });
    this.list = h("div", { class: "log-list", "data-testid": "log-list", role: "log" });
    this.pager = pager("log-page", (step) => {
      this.offset = Math.max(0, this.offset - step * LOG_PAGE); // "next" is newer
      onChange();
    });
    setText(this.pager.prev, "‹ Older");
    setText(this.pager.next, "Newer ›");
    this.controls = h("label", { class: "muted" }, "Level ", this.level);
    this.el = h("div", null, this.list, this.pager.el);
  }

  /** The current page at the chosen level, newest first (one more line: whether there are older). */
  fetch() {
    const level = Number(this.level.value);
    const query = { limit: LOG_PAGE + 1, offset: this.offset };
    if (level > 10) query.level = level;
    // an older server ignores `level`: the lines below it are left out here too
    const { offset } = this;
    return get(`flow_runs/${this.runId}/logs`, query)
      .then((lines) => ({ level, offset, lines: lines.filter((line) => !(line.level < level)) }));
  }

  show({ level, offset, lines }) {
    if (level !== Number(this.level.value) || offset !== this.offset) return; // asked for before a change
    const shown = lines.slice(0, LOG_PAGE).reverse(); // oldest first, as a log reads
    const signature = JSON.stringify([level, this.offset, lines.length, shown[0], shown[shown.length - 1]]);
    this.pager.prev.disabled = lines.length <= LOG_PAGE;
    this.pager.next.disabled = this.offset === 0;
    this.pager.el.hidden = this.offset === 0 && lines.length <= LOG_PAGE;
    if (signature === this.signature) return;
    this.signature = signature;
    const atBottom = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 4;
    if (!shown.length) {
      fill(this.list, h("div", { class: "log-empty" }, level > 10 ? "No log lines at this level." : "No log lines."));
      return;
    }
    fill(this.list, shown.map((line) => this.line(line)));
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  line(line) {
    const time = fmtClock(line.timestamp);
    const task = line.task_run_id ? this.taskNames.get(line.task_run_id) : null;
    const where = [line.logger, task || line.task_run_id].filter(Boolean).join(" · ");
    return h("div", { class: "log-line", "data-testid": "log-line", "data-level": line.level_name, title: where },
      h("span", { class: "faint", title: line.timestamp || "" }, time),
      h("span", { class: `level-${line.level_name}` }, line.level_name),
      h("span", { class: "message-text" }, task ? h("span", { class: "faint" }, `${task}: `) : null, line.message));
  }
}
