// The nbflow panel of the left sidebar: recent flow runs (live, coloured by state, optionally of
// the current notebook only), deployments (next run, run now, pause/resume, watch) and the workers
// online. It polls only while it is visible, and asks for one page of runs: its first paint does
// not depend on how many runs the store holds.

import { Widget } from '@lumino/widgets';

import { ApiError, get, IDeployment, IFlowRun, IWorker, patch } from './api';
import { h, stateColour } from './dashboard';
import { duration, notebookFlowName, relativeTime } from './logic';
import { RunWatcher } from './watcher';

const POLL_MS = 3000;
const PAGE = 25;
const MAX_RUNS = 200;

export interface ISidebarActions {
  openRun(runId: string): void;
  runNow(deployment: IDeployment): void;
  currentNotebook(): string | null;
  openDashboard(): void;
}

export class NbflowSidebar extends Widget {
  private _runsList: HTMLElement;
  private _deploymentsList: HTMLElement;
  private _workersList: HTMLElement;
  private _status: HTMLElement;
  private _onlyNotebook: HTMLInputElement;
  private _notebookLabel: HTMLElement;
  private _more: HTMLButtonElement;
  private _limit = PAGE;
  private _timer: number | null = null;
  private _busy = false;
  private _again = false;
  private _signatures = new Map<HTMLElement, string>();

  constructor(private _actions: ISidebarActions, private _watcher: RunWatcher) {
    super();
    this.id = 'nbflow-sidebar';
    this.addClass('nbflow-Sidebar');
    this._onlyNotebook = h('input', { type: 'checkbox', 'data-testid': 'nbflow-only-notebook' }) as HTMLInputElement;
    this._notebookLabel = h('span', { class: 'nbflow-muted' });
    this._runsList = h('ul', { class: 'nbflow-List', 'data-testid': 'nbflow-runs' }, h('li', { class: 'nbflow-muted' }, 'Loading…'));
    this._deploymentsList = h('ul', { class: 'nbflow-List', 'data-testid': 'nbflow-deployments' });
    this._workersList = h('ul', { class: 'nbflow-List', 'data-testid': 'nbflow-workers' });
    this._status = h('div', { class: 'nbflow-Status', role: 'status' });
    this._more = h('button', { class: 'jp-mod-styled nbflow-More', type: 'button' }, 'Show more') as HTMLButtonElement;
    this._more.addEventListener('click', () => {
      this._limit = Math.min(this._limit + PAGE, MAX_RUNS);
      this.refresh();
    });
    this._onlyNotebook.addEventListener('change', () => {
      this._limit = PAGE;
      this.refresh();
    });
    const dashboard = h('button', { class: 'jp-mod-styled nbflow-Link', type: 'button', title: 'Open the nbflow dashboard in a browser tab' }, 'Dashboard ↗');
    dashboard.addEventListener('click', () => this._actions.openDashboard());
    this.node.append(
      h('header', { class: 'nbflow-Header' }, h('h2', null, 'nbflow'), h('span', { class: 'nbflow-spacer' }), dashboard),
      this._status,
      h('section', { class: 'nbflow-Section' },
        h('h3', null, 'Flow runs'),
        h('label', { class: 'nbflow-Filter' }, this._onlyNotebook, ' This notebook only ', this._notebookLabel),
        this._runsList, this._more),
      h('section', { class: 'nbflow-Section' }, h('h3', null, 'Deployments'), this._deploymentsList),
      h('section', { class: 'nbflow-Section' }, h('h3', null, 'Workers online'), this._workersList)
    );
    this._watcher.watchChanged.connect(() => this.refresh());
  }

  /** The current notebook changed: the filter follows it. */
  notebookChanged(): void {
    const path = this._actions.currentNotebook();
    this._onlyNotebook.disabled = !path;
    this._notebookLabel.textContent = path ? notebookFlowName(path) : '(no notebook open)';
    if (this._onlyNotebook.checked && this.isVisible) this.refresh();
  }

  protected onAfterShow(): void {
    this.notebookChanged();
    this.refresh();
  }

  protected onAfterHide(): void {
    if (this._timer !== null) window.clearTimeout(this._timer);
    this._timer = null;
  }

  /** Read everything again now (and then every few seconds while visible). */
  refresh(): void {
    if (this._busy) {
      this._again = true;
      return;
    }
    if (this._timer !== null) window.clearTimeout(this._timer);
    this._timer = null;
    void this._load();
  }

  private async _load(): Promise<void> {
    this._busy = true;
    const notebook = this._onlyNotebook.checked ? this._actions.currentNotebook() : null;
    // The same query every time (the server answers a repeated page fast); twice the page, as the
    // slots scheduled ahead are left out below (the deployments' "next" shows them).
    const runs = get<IFlowRun[]>('flow_runs', { limit: 2 * this._limit + 1, flow_name: notebook ? notebookFlowName(notebook) : null });
    const deployments = get<IDeployment[]>('deployments', { limit: 100 });
    const workers = get<IWorker[]>('workers');
    try {
      this._showRuns(await runs);
      this._showDeployments(await deployments);
      this._showWorkers(await workers);
      this._status.textContent = '';
      this._status.hidden = true;
    } catch (exc) {
      this._status.hidden = false;
      this._status.textContent = exc instanceof ApiError && exc.status === 0
        ? 'Cannot reach the nbflow server — retrying…'
        : `nbflow: ${(exc as Error).message}`;
    }
    this._busy = false;
    if (this._again) {
      this._again = false;
      return this.refresh();
    }
    if (this.isVisible && !this.isDisposed) {
      this._timer = window.setTimeout(() => this.refresh(), document.hidden ? POLL_MS * 5 : POLL_MS);
    }
  }

  /** Replace a list's items only when what it shows changed (no flicker, no lost focus). */
  private _fill(list: HTMLElement, signature: string, items: () => HTMLElement[]): void {
    if (this._signatures.get(list) === signature) return;
    this._signatures.set(list, signature);
    list.replaceChildren(...items());
  }

  private _showRuns(page: IFlowRun[]): void {
    const now = Date.now();
    const runs = page.filter((r) => !(r.state === 'Scheduled' && r.scheduled_time && Date.parse(r.scheduled_time) > now));
    const shown = runs.slice(0, this._limit);
    this._more.hidden = (runs.length <= this._limit && page.length <= 2 * this._limit) || this._limit >= MAX_RUNS;
    const signature = JSON.stringify(shown.map((r) => [r.id, r.state, relativeTime(r.start_time || r.scheduled_time, now), r.end_time]));
    this._fill(this._runsList, signature, () => {
      if (!shown.length) return [h('li', { class: 'nbflow-muted' }, this._onlyNotebook.checked ? 'No runs of this notebook yet.' : 'No flow runs yet.')];
      return shown.map((run) => {
        const when = run.start_time || run.scheduled_time;
        const took = run.start_time ? duration(run.start_time, run.end_time, now) : '';
        const item = h('li', { class: 'nbflow-Run', 'data-testid': 'nbflow-run', 'data-run-id': run.id, 'data-state': run.state, title: `${run.flow_name} — ${run.state}${run.state_message ? `: ${run.state_message}` : ''}\nClick to open` },
          h('span', { class: 'nbflow-Dot', style: { background: stateColour(run.state) } }),
          h('span', { class: 'nbflow-Name' }, run.flow_name),
          h('span', { class: 'nbflow-State', style: { color: stateColour(run.state) } }, run.state),
          h('span', { class: 'nbflow-When' }, [relativeTime(when, now), took].filter(Boolean).join(' · ')));
        item.addEventListener('click', () => this._actions.openRun(run.id));
        return item;
      });
    });
  }

  private _showDeployments(deployments: IDeployment[]): void {
    const now = Date.now();
    const signature = JSON.stringify(deployments.map((d) => [d.id, d.name, d.paused, d.schedule_description, relativeTime(d.next_run_time, now), this._watcher.isWatched(d.id)]));
    this._fill(this._deploymentsList, signature, () => {
      if (!deployments.length) return [h('li', { class: 'nbflow-muted' }, 'No deployments yet: use "Deploy" on a notebook\'s toolbar.')];
      return deployments.map((d) => this._deploymentItem(d, now));
    });
  }

  private _deploymentItem(d: IDeployment, now: number): HTMLElement {
    const next = d.paused ? 'paused' : d.next_run_time ? `next ${relativeTime(d.next_run_time, now)}` : d.schedule ? '' : 'no schedule';
    const runNow = h('button', { class: 'jp-mod-styled jp-mod-accept', type: 'button', 'data-testid': 'nbflow-run-now', title: 'Run it now (with a parameter form)' }, 'Run');
    runNow.addEventListener('click', (event: Event) => {
      event.stopPropagation();
      this._actions.runNow(d);
    });
    const pause = h('button', { class: 'jp-mod-styled', type: 'button', 'data-testid': 'nbflow-pause', title: d.paused ? 'Resume its schedule' : 'Pause its schedule (runs started by hand still run)' }, d.paused ? 'Resume' : 'Pause');
    pause.addEventListener('click', async (event: Event) => {
      event.stopPropagation();
      (pause as HTMLButtonElement).disabled = true;
      try {
        await patch(`deployments/${encodeURIComponent(d.id)}`, { paused: !d.paused });
      } finally {
        this.refresh();
      }
    });
    const watched = this._watcher.isWatched(d.id);
    const watch = h('button', { class: `jp-mod-styled nbflow-Watch${watched ? ' nbflow-mod-on' : ''}`, type: 'button', 'data-testid': 'nbflow-watch', 'aria-pressed': String(watched), title: watched ? 'You are told when its runs end. Click to stop.' : 'Tell me when its runs end' }, watched ? 'Watching' : 'Watch');
    watch.addEventListener('click', (event: Event) => {
      event.stopPropagation();
      this._watcher.setWatched(d.id, !watched);
    });
    return h('li', { class: 'nbflow-Deployment', 'data-testid': 'nbflow-deployment', 'data-name': d.name, title: d.notebook || d.entrypoint || '' },
      h('div', { class: 'nbflow-Row' }, h('span', { class: 'nbflow-Name' }, d.name), h('span', { class: 'nbflow-spacer' }), runNow),
      h('div', { class: 'nbflow-Row' },
        h('span', { class: 'nbflow-When nbflow-spacer' }, [d.schedule_description || (d.schedule ? 'scheduled' : ''), next].filter(Boolean).join(' · ')),
        watch, pause));
  }

  private _showWorkers(workers: IWorker[]): void {
    const online = workers.filter((w) => w.online);
    this._fill(this._workersList, JSON.stringify(online.map((w) => [w.id, w.work_pool])), () => {
      if (!online.length) return [h('li', { class: 'nbflow-muted' }, 'No worker online: deployment runs wait until one starts (nbflow worker start).')];
      return online.map((w) => h('li', { class: 'nbflow-Worker', 'data-testid': 'nbflow-worker' },
        h('span', { class: 'nbflow-Dot', style: { background: stateColour('Completed') } }),
        h('span', { class: 'nbflow-Name' }, w.id), h('span', { class: 'nbflow-When' }, `pool ${w.work_pool}`)));
    });
  }
}
