// The "Deploy" dialog: a notebook (or a flow of a .py file) becomes a deployment. Its parameter
// form is the dashboard's (params.js, from the same parameter schema); the schedule is previewed
// by the server in words with its next fire times; every value is checked before anything is sent,
// and the server's own errors are shown next to the field they name.

import { Notification } from '@jupyterlab/apputils';

import { ApiError, get, IDeployment, IFlowRun, post } from './api';
import { collect, fieldsFor, h, IParameterField, IParameterSpec } from './dashboard';
import { deploymentBody, IDeployForm, IFieldError, ScheduleKind, slotOf, suggestName } from './logic';
import { fieldRow, Modal } from './modal';
import { RunWatcher } from './watcher';

interface IFlowTarget {
  function: string;
  flow_name: string;
  entrypoint: string;
  parameter_schema: Record<string, IParameterSpec>;
}

interface ITarget {
  kind: 'notebook' | 'flow';
  notebook?: string;
  flow_name?: string;
  parameter_schema?: Record<string, IParameterSpec>;
  flows?: IFlowTarget[];
}

interface IPreview {
  description: string;
  next_times: string[];
}

export interface IDeployActions {
  watcher: RunWatcher;
  openRun(runId: string): void;
  showSidebar(): void;
}

const PREVIEW_DELAY_MS = 250;

function localZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch (exc) {
    return 'UTC';
  }
}

function zones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (key: string) => string[] };
  try {
    return intl.supportedValuesOf ? intl.supportedValuesOf('timeZone') : [];
  } catch (exc) {
    return [];
  }
}

/** A fire time as the user reads it: in the schedule's time zone (a cron's wall clock), else local. */
function when(iso: string, zone?: string): string {
  const format: Intl.DateTimeFormatOptions = { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hour12: false };
  try {
    return new Date(iso).toLocaleString(undefined, zone ? { ...format, timeZone: zone } : format);
  } catch (exc) {
    return new Date(iso).toLocaleString(undefined, format); // a zone this browser does not know
  }
}

function input(attrs: Record<string, unknown>): HTMLInputElement {
  return h('input', { class: 'jp-mod-styled', ...attrs }) as HTMLInputElement;
}

/** Open the deploy dialog for a .ipynb or .py file (a path relative to the server's root dir). */
export async function openDeployDialog(path: string, actions: IDeployActions): Promise<void> {
  let target: ITarget;
  try {
    target = await get<ITarget>('targets', { path });
  } catch (exc) {
    Notification.error(`nbflow cannot deploy ${path}: ${(exc as Error).message}`, { autoClose: false });
    return;
  }
  if (target.kind === 'flow' && !target.flows?.length) {
    Notification.warning(`${path} defines no @flow function at module level, so there is nothing to deploy. ` +
      'Decorate a function with @flow (from nbflow import flow) and try again.', { autoClose: false });
    return;
  }
  await new DeployDialog(path, target, actions).open();
}

class DeployDialog {
  private _modal: Modal;
  private _errors = new Map<string, HTMLElement>();
  private _fields: IParameterField[] = [];
  private _params: HTMLElement;
  private _flow: HTMLSelectElement | null = null;
  private _name: HTMLInputElement;
  private _kind: HTMLSelectElement;
  private _cron: HTMLInputElement;
  private _zone: HTMLInputElement;
  private _interval: HTMLInputElement;
  private _unit: HTMLSelectElement;
  private _pool: HTMLInputElement;
  private _timeout: HTMLInputElement;
  private _runNow: HTMLInputElement;
  private _watch: HTMLInputElement;
  private _preview: HTMLElement;
  private _cronRow: HTMLElement;
  private _intervalRow: HTMLElement;
  private _previewTimer: number | null = null;
  private _previewSeq = 0;

  constructor(private _path: string, private _target: ITarget, private _actions: IDeployActions) {
    this._modal = new Modal(`Deploy ${_path.split('/').pop()}`, 'Deploy', () => this._submit(), 'nbflow-deploy-dialog');
    const body = this._modal.body;

    if (_target.kind === 'flow') {
      this._flow = h('select', { class: 'jp-mod-styled', 'data-testid': 'nbflow-flow' },
        _target.flows!.map((f) => h('option', { value: f.function }, f.function === f.flow_name ? f.function : `${f.function} (flow "${f.flow_name}")`))) as HTMLSelectElement;
      this._flow.addEventListener('change', () => {
        this._name.value = suggestName(this._path, this._flow!.value);
        this._showParameters();
      });
      this._add('target', 'Flow', this._flow, `The @flow functions of ${_path}`);
    } else {
      this._add('target', 'Notebook', h('div', { class: 'nbflow-Mono' }, _path), 'Runs with papermill on a worker; its output notebook is kept with each run.');
    }

    this._name = input({ type: 'text', 'data-testid': 'nbflow-name', value: suggestName(_path, _target.flows?.[0]?.function), maxlength: 100 });
    this._add('name', 'Deployment name', this._name);

    this._params = h('div', { class: 'nbflow-Params', 'data-testid': 'nbflow-params' });
    this._add('parameters', 'Parameters', this._params, _target.kind === 'notebook' ? "From the notebook's cell tagged \"parameters\"; these are the deployment's defaults." : "From the flow's signature; these are the deployment's defaults.");
    this._showParameters();

    this._kind = h('select', { class: 'jp-mod-styled', 'data-testid': 'nbflow-schedule-kind' },
      h('option', { value: 'none' }, 'No schedule (run it by hand)'),
      h('option', { value: 'cron' }, 'Cron (wall-clock times)'),
      h('option', { value: 'interval' }, 'Every … (an interval)')) as HTMLSelectElement;
    this._kind.addEventListener('change', () => this._scheduleChanged());
    this._add('schedule', 'Schedule', this._kind);

    this._cron = input({ type: 'text', 'data-testid': 'nbflow-cron', placeholder: '30 6 * * 1-5', spellcheck: false });
    const zoneList = h('datalist', { id: 'nbflow-zones' }, zones().map((z) => h('option', { value: z })));
    this._zone = input({ type: 'text', 'data-testid': 'nbflow-timezone', value: localZone(), list: 'nbflow-zones' });
    this._cronRow = h('div', { class: 'nbflow-Group' },
      this._add('schedule.cron', 'Cron expression', this._cron, 'minute hour day-of-month month day-of-week, e.g. "0 2 * * *" is every day at 02:00.'),
      this._add('schedule.timezone', 'Time zone', h('div', null, this._zone, zoneList)));
    this._interval = input({ type: 'number', min: 1, step: 'any', value: '1', 'data-testid': 'nbflow-interval' });
    this._unit = h('select', { class: 'jp-mod-styled', 'data-testid': 'nbflow-interval-unit' },
      ['minutes', 'hours', 'days', 'seconds'].map((u) => h('option', { value: u, selected: u === 'hours' }, u))) as HTMLSelectElement;
    this._intervalRow = this._add('schedule.interval', 'Every', h('div', { class: 'nbflow-Inline' }, this._interval, this._unit));
    this._preview = h('div', { class: 'nbflow-Preview', 'data-testid': 'nbflow-schedule-preview', 'aria-live': 'polite' });
    body.append(this._cronRow, this._intervalRow, this._preview);
    for (const el of [this._cron, this._zone, this._interval, this._unit]) el.addEventListener('input', () => this._schedulePreview());
    this._unit.addEventListener('change', () => this._schedulePreview());

    this._pool = input({ type: 'text', value: 'default', list: 'nbflow-pools', 'data-testid': 'nbflow-work-pool' });
    const pools = h('datalist', { id: 'nbflow-pools' });
    void get<{ name: string }[]>('work_pools').then((found) => pools.replaceChildren(...found.map((p) => h('option', { value: p.name })))).catch(() => undefined);
    this._add('work_pool', 'Work pool', h('div', null, this._pool, pools), 'Workers of this pool run it (the server runs the "default" pool itself).');
    this._timeout = input({ type: 'number', min: 1, step: 'any', placeholder: 'no limit', 'data-testid': 'nbflow-timeout' });
    this._add('timeout_seconds', 'Timeout (seconds)', this._timeout, 'A run still going after this long is stopped and marked TimedOut.');

    this._runNow = input({ type: 'checkbox', checked: true, 'data-testid': 'nbflow-run-once' });
    this._watch = input({ type: 'checkbox', checked: true, 'data-testid': 'nbflow-watch-new' });
    body.append(h('div', { class: 'nbflow-Checks' },
      h('label', null, this._runNow, ' Run once now'),
      h('label', null, this._watch, ' Notify me when its runs end')));
    this._scheduleChanged();
  }

  open(): Promise<void> {
    return this._modal.open();
  }

  /** A labelled row with its error line, kept under the name the server uses for the field. */
  private _add(field: string, label: string, control: HTMLElement, help?: string): HTMLElement {
    const { row, error } = fieldRow(label, control, help, field);
    this._errors.set(field, error);
    row.dataset.field = field;
    this._modal.body.append(row);
    return row;
  }

  private _flowTarget(): IFlowTarget | null {
    if (!this._flow) return null;
    return this._target.flows!.find((f) => f.function === this._flow!.value) || this._target.flows![0];
  }

  private _showParameters(): void {
    const schema = this._flowTarget()?.parameter_schema ?? this._target.parameter_schema ?? {};
    this._fields = fieldsFor({ parameter_schema: schema, parameters: {} });
    for (const field of this._fields) field.input.addEventListener('input', () => field.showError(''));
    this._params.replaceChildren(...(this._fields.length ? this._fields.map((f) => f.row)
      : [h('div', { class: 'nbflow-muted' }, this._target.kind === 'notebook'
        ? 'This notebook takes no parameters (tag a cell "parameters" to give it some).' : 'This flow takes no parameters.')]));
  }

  private _scheduleChanged(): void {
    const kind = this._kind.value as ScheduleKind;
    this._cronRow.hidden = kind !== 'cron';
    this._intervalRow.hidden = kind !== 'interval';
    this._schedulePreview();
  }

  private _form(): IDeployForm {
    return {
      name: this._name.value, schedule: this._kind.value as ScheduleKind, cron: this._cron.value, timezone: this._zone.value,
      interval: this._interval.value, intervalUnit: this._unit.value, workPool: this._pool.value, timeout: this._timeout.value
    };
  }

  /** Ask the server what the schedule means (debounced): its words and next three fire times. */
  private _schedulePreview(): void {
    if (this._previewTimer !== null) window.clearTimeout(this._previewTimer);
    for (const key of ['schedule.cron', 'schedule.timezone', 'schedule.interval']) this._showError(key, '');
    const result = deploymentBody({ ...this._form(), name: 'x', workPool: 'default', timeout: '' });
    const schedule = 'body' in result ? (result.body.schedule as Record<string, string | number> | null) : null;
    if (!schedule) {
      this._preview.textContent = this._kind.value === 'none' ? 'Runs only when started by hand (or by "Run once now").' : '';
      return;
    }
    const seq = ++this._previewSeq;
    this._previewTimer = window.setTimeout(async () => {
      try {
        const preview = await get<IPreview>('schedule_preview', { ...schedule, limit: 3 });
        if (seq !== this._previewSeq) return;
        const zone = typeof schedule.timezone === 'string' ? schedule.timezone : undefined;
        const times = preview.next_times.map((t) => when(t, zone));
        this._preview.replaceChildren(h('strong', null, preview.description[0].toUpperCase() + preview.description.slice(1)),
          h('div', null, `Next: ${times.join(' · ')}`));
      } catch (exc) {
        if (seq !== this._previewSeq) return;
        this._preview.textContent = '';
        if (exc instanceof ApiError) this._showServerError(exc);
      }
    }, PREVIEW_DELAY_MS);
  }

  private _showError(slot: string, message: string): void {
    if (slot.startsWith('param:')) {
      this._fields.find((f) => f.name === slot.slice(6))?.showError(message);
      return;
    }
    const line = this._errors.get(slot);
    if (line) line.textContent = message;
    else if (message) this._modal.error.textContent = message;
  }

  private _clearErrors(): void {
    for (const line of this._errors.values()) line.textContent = '';
    for (const field of this._fields) field.showError('');
    this._modal.error.textContent = '';
  }

  /** A server error next to the field it names (the form's own error line when it names none). */
  private _showServerError(exc: ApiError): void {
    this._showError(slotOf(exc, this._fields.map((f) => f.name)), exc.message);
  }

  private async _submit(): Promise<boolean> {
    this._clearErrors();
    const form = deploymentBody(this._form());
    const values = collect(this._fields);
    const errors: IFieldError[] = 'errors' in form ? form.errors : [];
    for (const [name, message] of Object.entries(values.errors || {})) errors.push({ field: `param:${name}`, message });
    if (errors.length) {
      for (const error of errors) this._showError(error.field, error.message);
      return false; // nothing is sent while a value is wrong
    }
    const flow = this._flowTarget();
    const body = {
      ...(form as { body: Record<string, unknown> }).body,
      ...(flow ? { entrypoint: flow.entrypoint } : { notebook: this._path }),
      parameters: values.parameters || {}
    };
    let deployment: IDeployment;
    try {
      deployment = await post<IDeployment>('deployments', body);
    } catch (exc) {
      if (!(exc instanceof ApiError)) throw exc;
      this._showServerError(exc);
      return false;
    }
    this._actions.watcher.setWatched(deployment.id, this._watch.checked);
    let run: IFlowRun | null = null;
    if (this._runNow.checked) {
      try {
        run = await post<IFlowRun>(`deployments/${encodeURIComponent(deployment.id)}/runs`, {});
        this._actions.watcher.track(run);
      } catch (exc) {
        Notification.error(`Deployment ${deployment.name} was created, but its first run did not start: ${(exc as Error).message}`, { autoClose: false });
      }
    }
    const started = run;
    Notification.success(`Deployment ${deployment.name} created${deployment.schedule_description ? ` (${deployment.schedule_description})` : ''}` +
      (started ? '; its first run started.' : '.'), {
      autoClose: 6000,
      actions: [
        ...(started ? [{ label: 'Open run', callback: () => this._actions.openRun(started.id) }] : []),
        { label: 'Show in nbflow panel', callback: () => this._actions.showSidebar() }
      ]
    });
    this._actions.showSidebar();
    return true;
  }
}

/** "Run now" of a deployment: its parameter form (the dashboard's), checked, then POST .../runs. */
export async function openRunDialog(ref: IDeployment, actions: IDeployActions): Promise<void> {
  let deployment: IDeployment;
  try {
    deployment = await get<IDeployment>(`deployments/${encodeURIComponent(ref.id)}`);
  } catch (exc) {
    Notification.error(`nbflow: ${(exc as Error).message}`);
    return;
  }
  const fields = fieldsFor(deployment);
  const modal = new Modal(`Run ${deployment.name} now`, 'Run', async () => {
    for (const field of fields) field.showError('');
    const values = collect(fields);
    if (values.errors) {
      for (const field of fields) field.showError(values.errors[field.name] || '');
      return false;
    }
    let run: IFlowRun;
    try {
      run = await post<IFlowRun>(`deployments/${encodeURIComponent(deployment.id)}/runs`, { parameters: values.parameters });
    } catch (exc) {
      if (!(exc instanceof ApiError)) throw exc;
      const slot = slotOf(exc, fields.map((f) => f.name));
      const field = slot.startsWith('param:') ? fields.find((f) => f.name === slot.slice(6)) : undefined;
      if (field) field.showError(exc.message);
      else modal.error.textContent = exc.message;
      return false;
    }
    actions.watcher.track(run);
    Notification.info(`nbflow: ${deployment.name} started; you will be told when it ends.`, {
      autoClose: 5000,
      actions: [{ label: 'Open run', callback: () => actions.openRun(run.id) }]
    });
    return true;
  }, 'nbflow-run-dialog');
  modal.body.append(fields.length ? h('div', { class: 'nbflow-Params' }, fields.map((f) => f.row))
    : h('p', { class: 'nbflow-muted' }, 'This deployment takes no parameters.'));
  await modal.open();
}
