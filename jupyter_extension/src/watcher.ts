// Which runs the user waits for, and telling them when those end: runs started or scheduled from
// this Lab (kept in localStorage, so a reload keeps watching them) and every run of a "watched"
// deployment. One poll every few seconds also counts the running runs for the status bar.

import { Notification } from '@jupyterlab/apputils';
import { ISignal, Signal } from '@lumino/signaling';

import { get, IFlowRun } from './api';
import { BAD, endedRuns, FINAL, notificationType, duration } from './logic';

const POLL_MS = 3000;
/** How long after Lab's start the first poll waits: the page first finishes loading. */
const FIRST_POLL_MS = 1500;
const TRACKED_KEY = 'nbflow:tracked-runs';
const WATCHED_KEY = 'nbflow:watched-deployments';
const RUNNING_LIMIT = 1000;

function load<T>(key: string, fallback: T): T {
  try {
    const raw = window.localStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : fallback;
  } catch (exc) {
    return fallback;
  }
}

function save(key: string, value: unknown): void {
  try {
    window.localStorage.setItem(key, JSON.stringify(value));
  } catch (exc) {
    /* private mode or full: watching lasts for this page only */
  }
}

export interface IWatcherActions {
  openRun(runId: string): void;
  openOutputNotebook(run: IFlowRun): void;
}

export class RunWatcher {
  /** run id -> when it was tracked (ms); dropped once its end was announced. */
  private _tracked: Record<string, number> = load(TRACKED_KEY, {});
  /** deployment id -> since when (ms) its runs are announced. */
  private _watched: Record<string, number> = load(WATCHED_KEY, {});
  private _known = new Map<string, string>();
  private _announced = new Set<string>();
  private _running = 0;
  private _runningChanged = new Signal<this, number>(this);
  private _watchChanged = new Signal<this, void>(this);
  private _timer: number | null = null;
  private _stopped = false;

  constructor(private _actions: IWatcherActions) {}

  get running(): number {
    return this._running;
  }

  get runningChanged(): ISignal<this, number> {
    return this._runningChanged;
  }

  get watchChanged(): ISignal<this, void> {
    return this._watchChanged;
  }

  start(): void {
    this._timer = window.setTimeout(() => void this._tick(), FIRST_POLL_MS);
  }

  stop(): void {
    this._stopped = true;
    if (this._timer !== null) window.clearTimeout(this._timer);
  }

  /** Announce the end of this run (started from this Lab). */
  track(run: IFlowRun): void {
    this._tracked[run.id] = Date.now();
    this._known.set(run.id, run.state);
    save(TRACKED_KEY, this._tracked);
    this.poke();
  }

  isWatched(deploymentId: string): boolean {
    return deploymentId in this._watched;
  }

  /** Announce (or stop announcing) the end of every run of a deployment from now on. */
  setWatched(deploymentId: string, watched: boolean): void {
    if (watched) this._watched[deploymentId] = Date.now();
    else delete this._watched[deploymentId];
    save(WATCHED_KEY, this._watched);
    this._watchChanged.emit();
  }

  /** Look again at once (a run was just started). */
  poke(): void {
    if (this._timer !== null) window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this._tick(), 300);
  }

  private async _tick(): Promise<void> {
    this._timer = null;
    try {
      await this._look();
    } catch (exc) {
      /* the server is away: try again at the next tick */
    }
    if (!this._stopped && this._timer === null) {
      this._timer = window.setTimeout(() => void this._tick(), document.hidden ? POLL_MS * 5 : POLL_MS);
    }
  }

  private async _look(): Promise<void> {
    const running = await get<IFlowRun[]>('flow_runs', { state: 'Running', limit: RUNNING_LIMIT });
    if (running.length !== this._running) {
      this._running = running.length;
      this._runningChanged.emit(this._running);
    }
    const runs: IFlowRun[] = [];
    const trackedIds = Object.keys(this._tracked);
    const found = await Promise.all(trackedIds.map((id) => get<IFlowRun>(`flow_runs/${id}`).catch(() => null)));
    trackedIds.forEach((id, i) => {
      const run = found[i];
      if (run) runs.push(run);
      else if (Date.now() - this._tracked[id] > 86400_000) delete this._tracked[id]; // gone for a day: forget it
    });
    for (const [deploymentId, since] of Object.entries(this._watched)) {
      const recent = await get<IFlowRun[]>('flow_runs', { deployment_id: deploymentId, limit: 20 }).catch(() => []);
      for (const run of recent) {
        if (run.id in this._tracked) continue;
        if (FINAL.has(run.state) && !(run.end_time && Date.parse(run.end_time) >= since)) {
          this._known.set(run.id, run.state);
          continue;
        }
        runs.push(run);
      }
    }
    const since = Math.min(Date.now() - POLL_MS * 20, ...Object.values(this._tracked));
    for (const run of endedRuns(this._known, runs, since)) {
      if (this._announced.has(run.id)) continue;
      this._announced.add(run.id);
      this._announce(run);
    }
    let changed = false;
    for (const id of trackedIds) {
      if (this._announced.has(id) || FINAL.has(this._known.get(id) || '')) {
        delete this._tracked[id];
        changed = true;
      }
    }
    if (changed) save(TRACKED_KEY, this._tracked);
  }

  private _announce(run: IFlowRun): void {
    const took = duration(run.start_time, run.end_time);
    const message = `nbflow: ${run.flow_name} ended ${run.state}${took ? ` after ${took}` : ''}` +
      (run.state_message && BAD.has(run.state) ? ` — ${run.state_message.slice(0, 200)}` : '');
    const actions: Notification.IAction[] = [
      { label: 'Open run', caption: 'Open the run in a JupyterLab tab', callback: () => this._actions.openRun(run.id) }
    ];
    if (run.output_notebook) {
      actions.push({
        label: 'Open notebook',
        caption: "Open the run's output notebook in JupyterLab",
        callback: () => this._actions.openOutputNotebook(run)
      });
    }
    Notification.emit(message, notificationType(run.state), {
      autoClose: BAD.has(run.state) ? false : 10000,
      actions
    });
  }
}
