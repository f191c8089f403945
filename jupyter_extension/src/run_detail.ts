// A flow run's detail in a main-area tab: the dashboard's own run page (state, graph, timeline,
// task runs, logs, cancel/retry) in a same-origin frame, so one piece of code draws run graphs,
// under a Lab toolbar with what only Lab can do: open the output notebook in Lab's viewer, and open
// the notebook that brings a failed task's inputs back as a notebook of the user's.

import { IFrame, MainAreaWidget, ToolbarButton } from '@jupyterlab/apputils';
import { bugIcon, launchIcon, notebookIcon, refreshIcon } from '@jupyterlab/ui-components';

import { get, IFlowRun, pageUrl } from './api';
import { DEBUGGABLE } from './debug_notebook';
import { nbflowIcon } from './icon';
import { FINAL } from './logic';

/** The dashboard page of a run, embedded (no top bar; "Open in JupyterLab" for its notebook). */
export function runPageUrl(runId: string): string {
  return `${pageUrl('nbflow/')}?embed=lab#/runs/${encodeURIComponent(runId)}`;
}

/** What a run's tab asks of the rest of the extension. */
export interface IRunDetailActions {
  openOutputNotebook(run: IFlowRun): void;
  openDebugNotebook(runId: string): void;
  /** A run was started from the embedded page (Retry): open it in its own tab and say when it ends. */
  runStarted(run: IFlowRun): void;
}

export class RunDetail extends MainAreaWidget<IFrame> {
  readonly runId: string;
  private _run: IFlowRun | null = null;
  private _openNotebook: ToolbarButton;
  private _debug: ToolbarButton;
  private _onMessage: (event: MessageEvent) => void;

  constructor(runId: string, actions: IRunDetailActions) {
    const { openOutputNotebook, openDebugNotebook } = actions;
    const content = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-popups'] });
    super({ content });
    this.runId = runId;
    this.id = `nbflow-run-${runId}`;
    this.addClass('nbflow-RunDetail');
    this.title.label = `Run ${runId.slice(0, 8)}`;
    this.title.icon = nbflowIcon;
    this.title.closable = true;
    content.url = runPageUrl(runId);
    this._openNotebook = new ToolbarButton({
      icon: notebookIcon,
      label: 'Open output notebook',
      tooltip: "Open the run's executed notebook in JupyterLab (a read-only copy)",
      onClick: () => this._run && openOutputNotebook(this._run),
      enabled: false
    });
    this._openNotebook.node.dataset.testid = 'nbflow-open-output';
    this.toolbar.addItem('output-notebook', this._openNotebook);
    this._debug = new ToolbarButton({
      icon: bugIcon,
      label: 'Debug in a notebook',
      tooltip: 'Open a notebook that restores what the failed task saw and holds its failing code',
      onClick: () => openDebugNotebook(runId)
    });
    this._debug.node.dataset.testid = 'nbflow-debug-notebook';
    this._debug.hide();
    this.toolbar.addItem('debug-notebook', this._debug);
    this.toolbar.addItem('refresh', new ToolbarButton({
      icon: refreshIcon,
      tooltip: 'Reload the run',
      onClick: () => {
        content.url = '';
        content.url = runPageUrl(runId);
        void this.refresh();
      }
    }));
    this.toolbar.addItem('dashboard', new ToolbarButton({
      icon: launchIcon,
      label: 'Dashboard',
      tooltip: 'Open this run in the nbflow dashboard, in a browser tab',
      onClick: () => window.open(pageUrl(`nbflow/#/runs/${encodeURIComponent(runId)}`), '_blank', 'noopener')
    }));
    this._onMessage = (event: MessageEvent) => {
      const frame = content.node.querySelector('iframe');
      if (event.origin !== window.location.origin || !frame || event.source !== frame.contentWindow) return;
      const data = event.data;
      if (data && data.nbflow === 'open-output-notebook' && typeof data.run_id === 'string') {
        void get<IFlowRun>(`flow_runs/${data.run_id}`).then(openOutputNotebook);
      } else if (data && data.nbflow === 'open-debug-notebook' && typeof data.run_id === 'string') {
        openDebugNotebook(data.run_id);
      } else if (data && data.nbflow === 'run-started' && typeof data.run?.id === 'string') {
        actions.runStarted(data.run as IFlowRun);
      }
    };
    window.addEventListener('message', this._onMessage);
    void this.refresh();
  }

  /** Read the run for the title and the output-notebook and debug buttons (again until it ends). */
  async refresh(): Promise<void> {
    try {
      this._run = await get<IFlowRun>(`flow_runs/${this.runId}`);
    } catch (exc) {
      return;
    }
    this.title.label = `${this._run.flow_name} · ${this.runId.slice(0, 8)}`;
    this.title.caption = `nbflow flow run ${this._run.id}: ${this._run.state}`;
    this._openNotebook.enabled = Boolean(this._run.output_notebook);
    this._debug.setHidden(!DEBUGGABLE.has(this._run.state));
    if (!FINAL.has(this._run.state) && !this.isDisposed) {
      setTimeout(() => !this.isDisposed && void this.refresh(), 3000);
    }
  }

  dispose(): void {
    window.removeEventListener('message', this._onMessage);
    super.dispose();
  }
}
