// The extension's pure logic, without DOM or server: what the deploy form sends and where a
// server error goes, which runs just ended, and how times read. Unit-tested in logic.test.ts.

/** The final states of a flow run (the dashboard's FINAL_STATES). */
export const FINAL = new Set(['Completed', 'Cached', 'Failed', 'TimedOut', 'Crashed', 'Cancelled']);
/** States a run ends in that the user must look at: their notification stays until dismissed. */
export const BAD = new Set(['Failed', 'TimedOut', 'Crashed']);
/** A deployment name the server takes (definitions._NAME). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$/;
const MAX_TIMEOUT_S = 7 * 86400;
const MAX_INTERVAL_S = 366 * 86400;
export const INTERVAL_UNITS: Record<string, number> = { seconds: 1, minutes: 60, hours: 3600, days: 86400 };

/** A deployment name from a file path: "reports/Daily sales.ipynb" -> "daily-sales". */
export function suggestName(path: string, flow?: string): string {
  const file = path.split('/').pop() || path;
  const stem = file.replace(/\.(ipynb|py)$/i, '');
  const base = flow ? `${stem}-${flow}` : stem;
  const name = base
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .replace(/-+$/, '')
    .slice(0, 100);
  return name || 'deployment';
}

export type ScheduleKind = 'none' | 'cron' | 'interval';

/** What the form holds, as text (inputs give text). */
export interface IDeployForm {
  name: string;
  schedule: ScheduleKind;
  cron: string;
  timezone: string;
  interval: string;
  intervalUnit: string;
  workPool: string;
  timeout: string;
}

/** A problem with one field: `field` as the server names it (name, schedule.cron, timeout_seconds...). */
export interface IFieldError {
  field: string;
  message: string;
}

/** The schedule body the API takes, or an error naming the field. */
export function scheduleBody(form: IDeployForm): { schedule: Record<string, unknown> | null } | IFieldError {
  if (form.schedule === 'none') return { schedule: null };
  if (form.schedule === 'cron') {
    const cron = form.cron.trim();
    if (!cron) return { field: 'schedule.cron', message: 'Give a cron expression, e.g. "30 6 * * 1-5" (06:30 on weekdays).' };
    const timezone = form.timezone.trim() || 'UTC';
    return { schedule: { cron, timezone } };
  }
  const text = form.interval.trim();
  const amount = Number(text);
  const unit = INTERVAL_UNITS[form.intervalUnit] ?? 1;
  if (!text || !Number.isFinite(amount) || amount <= 0) {
    return { field: 'schedule.interval', message: `The interval must be a number above 0; got "${text}".` };
  }
  const seconds = Math.round(amount * unit);
  if (seconds < 1 || seconds > MAX_INTERVAL_S || Math.abs(seconds - amount * unit) > 1e-6) {
    return { field: 'schedule.interval', message: 'The interval must be whole seconds, from 1 second to 366 days.' };
  }
  return { schedule: { interval: seconds } };
}

/** The deployment body of a form (target and parameters added by the caller), or the errors found before sending. */
export function deploymentBody(form: IDeployForm): { body: Record<string, unknown> } | { errors: IFieldError[] } {
  const errors: IFieldError[] = [];
  const name = form.name.trim();
  if (!NAME.test(name)) {
    errors.push({ field: 'name', message: "A name is 1-100 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit." });
  }
  const schedule = scheduleBody(form);
  if ('field' in schedule) errors.push(schedule);
  const pool = form.workPool.trim() || 'default';
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(pool)) {
    errors.push({ field: 'work_pool', message: "A work pool is named with letters, digits, '_' or '-'." });
  }
  let timeout: number | null = null;
  if (form.timeout.trim()) {
    timeout = Number(form.timeout.trim());
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > MAX_TIMEOUT_S) {
      errors.push({ field: 'timeout_seconds', message: 'The timeout is a number of seconds above 0, at most a week (604800).' });
    }
  }
  if (errors.length) return { errors };
  return {
    body: { name, schedule: (schedule as { schedule: unknown }).schedule, work_pool: pool, timeout_seconds: timeout }
  };
}

/** The form slot of a server error: a parameter's name ("param:x"), a field, or "form" for the rest. */
export function slotOf(error: { field?: string | null; parameter?: string | null }, parameters: string[]): string {
  const field = error.field || '';
  const named = error.parameter || (field.startsWith('parameters.') ? field.slice('parameters.'.length) : '');
  if (named && parameters.includes(named)) return `param:${named}`;
  if (field.startsWith('parameters')) return 'parameters';
  if (field === 'notebook' || field === 'entrypoint' || field === 'path') return 'target';
  if (field.startsWith('schedule')) return field === 'schedule.timezone' ? 'schedule.timezone' : field === 'schedule.interval' ? 'schedule.interval' : 'schedule.cron';
  if (['name', 'work_pool', 'timeout_seconds'].includes(field)) return field;
  return 'form';
}

/**
 * The runs that ended since the last look: `known` holds the last state seen per run id (updated
 * here); a run is reported once, when it is first seen final after having been seen not final, or
 * when it ended after `since` (a run that started and ended between two looks).
 */
export function endedRuns<T extends { id: string; state: string; end_time: string | null }>(
  known: Map<string, string>,
  runs: T[],
  since: number
): T[] {
  const ended: T[] = [];
  for (const run of runs) {
    const before = known.get(run.id);
    known.set(run.id, run.state);
    if (!FINAL.has(run.state)) continue;
    if (before !== undefined && !FINAL.has(before)) ended.push(run);
    else if (before === undefined && run.end_time && Date.parse(run.end_time) >= since) ended.push(run);
  }
  return ended;
}

/** The kind of notification a final state gets. */
export function notificationType(state: string): 'success' | 'error' | 'warning' | 'info' {
  if (state === 'Completed' || state === 'Cached') return 'success';
  if (BAD.has(state)) return 'error';
  if (state === 'Cancelled') return 'warning';
  return 'info';
}

/** "just now", "5 min ago", "in 3 h", "2 d ago": a time relative to `now` (ms). */
export function relativeTime(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return '';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '';
  const delta = Math.round((then - now) / 1000);
  const size = Math.abs(delta);
  if (size < 45) return delta > 0 ? 'in a moment' : 'just now';
  const [amount, unit] =
    size < 3600 ? [Math.round(size / 60), 'min'] : size < 86400 ? [Math.round(size / 3600), 'h'] : [Math.round(size / 86400), 'd'];
  return delta > 0 ? `in ${amount} ${unit}` : `${amount} ${unit} ago`;
}

/** A run's duration in words: "0.4 s", "12 s", "3 min 5 s", "2 h 10 min". */
export function duration(start: string | null, end: string | null, now: number = Date.now()): string {
  if (!start) return '';
  const seconds = ((end ? Date.parse(end) : now) - Date.parse(start)) / 1000;
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** The flow name a notebook's runs carry: its file name without .ipynb (notebook/session.py). */
export function notebookFlowName(path: string): string {
  const file = path.split('/').pop() || path;
  return file.endsWith('.ipynb') ? file.slice(0, -'.ipynb'.length) : file;
}
