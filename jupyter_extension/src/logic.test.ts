import { describe, expect, it } from 'vitest';

import { deploymentBody, duration, endedRuns, IDeployForm, notebookFlowName, notificationType, relativeTime, scheduleBody, slotOf, suggestName } from './logic';

const FORM: IDeployForm = { name: 'nightly', schedule: 'none', cron: '', timezone: 'UTC', interval: '1', intervalUnit: 'hours', workPool: 'default', timeout: '' };

describe('suggestName', () => {
  it.each([
    ['reports/Daily sales.ipynb', undefined, 'daily-sales'],
    ['etl.py', 'load_all', 'etl-load_all'],
    ['__init__.py', undefined, 'init__'],
    ['ünïcode.ipynb', undefined, 'n-code'],
    ['!!!.ipynb', undefined, 'deployment']
  ])('%s (%s) -> %s', (path, flow, expected) => {
    expect(suggestName(path, flow)).toBe(expected);
  });
});

describe('scheduleBody', () => {
  it('is null without a schedule', () => expect(scheduleBody(FORM)).toEqual({ schedule: null }));
  it('takes cron with its time zone, UTC when blank', () => {
    expect(scheduleBody({ ...FORM, schedule: 'cron', cron: ' 0 2 * * * ', timezone: 'Europe/Paris' })).toEqual({ schedule: { cron: '0 2 * * *', timezone: 'Europe/Paris' } });
    expect(scheduleBody({ ...FORM, schedule: 'cron', cron: '0 2 * * *', timezone: ' ' })).toEqual({ schedule: { cron: '0 2 * * *', timezone: 'UTC' } });
  });
  it('names the cron field when it is empty', () => {
    expect(scheduleBody({ ...FORM, schedule: 'cron', cron: '  ' })).toMatchObject({ field: 'schedule.cron' });
  });
  it.each([
    ['1', 'hours', 3600],
    ['1.5', 'minutes', 90],
    ['2', 'days', 172800],
    ['30', 'seconds', 30]
  ])('interval %s %s is %d s', (interval, unit, seconds) => {
    expect(scheduleBody({ ...FORM, schedule: 'interval', interval, intervalUnit: unit })).toEqual({ schedule: { interval: seconds } });
  });
  it.each([['0'], ['-3'], ['abc'], [''], ['0.5']])('refuses interval %s seconds', (interval) => {
    expect(scheduleBody({ ...FORM, schedule: 'interval', interval, intervalUnit: 'seconds' })).toMatchObject({ field: 'schedule.interval' });
  });
  it('refuses an interval over 366 days', () => {
    expect(scheduleBody({ ...FORM, schedule: 'interval', interval: '367', intervalUnit: 'days' })).toMatchObject({ field: 'schedule.interval' });
  });
});

describe('deploymentBody', () => {
  it('builds the body the API takes', () => {
    expect(deploymentBody({ ...FORM, name: ' nightly ', timeout: '60', workPool: '' })).toEqual({
      body: { name: 'nightly', schedule: null, work_pool: 'default', timeout_seconds: 60 }
    });
  });
  it('reports every bad field at once, before anything is sent', () => {
    const result = deploymentBody({ ...FORM, name: '-bad', timeout: '0', workPool: 'a b', schedule: 'cron', cron: '' });
    expect('errors' in result && result.errors.map((e) => e.field)).toEqual(['name', 'schedule.cron', 'work_pool', 'timeout_seconds']);
  });
  it('refuses a timeout over a week', () => {
    expect(deploymentBody({ ...FORM, timeout: '604801' })).toMatchObject({ errors: [{ field: 'timeout_seconds' }] });
  });
});

describe('slotOf: where a server error is shown', () => {
  const params = ['n', 'region'];
  it.each([
    [{ field: 'parameters', parameter: 'n' }, 'param:n'],
    [{ field: 'parameters.region' }, 'param:region'],
    [{ field: 'parameters', parameter: 'other' }, 'parameters'],
    [{ field: 'schedule.cron' }, 'schedule.cron'],
    [{ field: 'schedule' }, 'schedule.cron'],
    [{ field: 'schedule.timezone' }, 'schedule.timezone'],
    [{ field: 'schedule.interval' }, 'schedule.interval'],
    [{ field: 'notebook' }, 'target'],
    [{ field: 'name' }, 'name'],
    [{ field: 'timeout_seconds' }, 'timeout_seconds'],
    [{ field: 'triggers' }, 'form'],
    [{}, 'form']
  ])('%j -> %s', (error, slot) => expect(slotOf(error, params)).toBe(slot));
});

describe('endedRuns', () => {
  const run = (id: string, state: string, end: string | null = null) => ({ id, state, end_time: end });
  it('reports a run once, when it turns final after being seen running', () => {
    const known = new Map<string, string>();
    const since = Date.parse('2026-01-01T00:00:00Z');
    expect(endedRuns(known, [run('a', 'Running')], since)).toEqual([]);
    expect(endedRuns(known, [run('a', 'Completed', '2025-01-01T00:00:00Z')], since).map((r) => r.id)).toEqual(['a']);
    expect(endedRuns(known, [run('a', 'Completed', '2025-01-01T00:00:00Z')], since)).toEqual([]);
  });
  it('reports a run first seen final only if it ended after `since`', () => {
    const since = Date.parse('2026-01-01T00:00:00Z');
    const ended = endedRuns(new Map(), [run('old', 'Failed', '2025-12-31T23:59:59Z'), run('new', 'Failed', '2026-01-01T00:00:01Z')], since);
    expect(ended.map((r) => r.id)).toEqual(['new']);
  });
  it('ignores runs that are not final', () => {
    expect(endedRuns(new Map([['s', 'Scheduled']]), [run('s', 'Pending'), run('r', 'Retrying')], 0)).toEqual([]);
  });
});

describe('notificationType', () => {
  it.each([
    ['Completed', 'success'],
    ['Cached', 'success'],
    ['Failed', 'error'],
    ['TimedOut', 'error'],
    ['Crashed', 'error'],
    ['Cancelled', 'warning'],
    ['Other', 'info']
  ])('%s -> %s', (state, type) => expect(notificationType(state)).toBe(type));
});

describe('times', () => {
  const now = Date.parse('2026-06-01T12:00:00Z');
  it.each([
    ['2026-06-01T11:59:50Z', 'just now'],
    ['2026-06-01T11:55:00Z', '5 min ago'],
    ['2026-06-01T15:00:00Z', 'in 3 h'],
    ['2026-05-30T12:00:00Z', '2 d ago'],
    [null, ''],
    ['garbage', '']
  ])('relativeTime(%s) = %s', (iso, text) => expect(relativeTime(iso, now)).toBe(text));
  it.each([
    ['2026-06-01T12:00:00Z', '2026-06-01T12:00:00.400Z', '0.4 s'],
    ['2026-06-01T12:00:00Z', '2026-06-01T12:00:12Z', '12 s'],
    ['2026-06-01T12:00:00Z', '2026-06-01T12:03:05Z', '3 min 5 s'],
    ['2026-06-01T12:00:00Z', '2026-06-01T14:10:00Z', '2 h 10 min'],
    [null, null, '']
  ])('duration(%s, %s) = %s', (start, end, text) => expect(duration(start, end, now)).toBe(text));
});

describe('notebookFlowName', () => {
  it('is the file name without .ipynb, as the kernel names its session flow', () => {
    expect(notebookFlowName('work/reports/daily.ipynb')).toBe('daily');
    expect(notebookFlowName('flows.py')).toBe('flows.py');
  });
});
