// The nbflow REST API (GET/POST/PATCH under <base_url>nbflow/api/), called through Jupyter's own
// ServerConnection: its token, XSRF cookie and base URL. The extension has no other channel.

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A failed call: `status` 0 when the server could not be reached; `field` names the field at fault. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field: string | null = null,
    readonly parameter: string | null = null
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface IFlowRun {
  id: string;
  flow_name: string;
  deployment_id: string | null;
  state: string;
  state_message?: string | null;
  parameters?: Record<string, unknown> | null;
  scheduled_time?: string | null;
  start_time: string | null;
  end_time: string | null;
  output_notebook?: string | null;
}

export interface IDeployment {
  id: string;
  name: string;
  flow_name: string;
  kind: 'notebook' | 'flow';
  notebook: string | null;
  entrypoint: string | null;
  parameters: Record<string, unknown>;
  schedule: Record<string, unknown> | null;
  schedule_description: string | null;
  paused: boolean;
  work_pool: string;
  timeout_seconds: number | null;
  next_run_time: string | null;
  parameter_schema?: Record<string, { type: string; default?: unknown; required?: boolean; help?: string }>;
}

export interface IWorker {
  id: string;
  work_pool: string;
  host?: string;
  pid?: number;
  heartbeat: string | null;
  online: boolean;
}

type Query = Record<string, string | number | boolean | null | undefined>;

let settings: ServerConnection.ISettings | null = null;

function serverSettings(): ServerConnection.ISettings {
  if (settings === null) settings = ServerConnection.makeSettings();
  return settings;
}

/** The absolute URL of an API path with its query (empty values left out). */
export function apiUrl(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') params.set(key, String(value));
  }
  const search = params.toString();
  return URLExt.join(serverSettings().baseUrl, 'nbflow/api', path) + (search ? `?${search}` : '');
}

/** The URL of a page of the server (the dashboard), under Jupyter's base URL. */
export function pageUrl(path: string): string {
  return URLExt.join(serverSettings().baseUrl, path);
}

/** The parsed JSON answer of a call, or an ApiError with the server's message and field. */
export async function request<T>(method: string, path: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
  const init: RequestInit = { method, cache: 'no-store' };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(apiUrl(path, options.query), init, serverSettings());
  } catch (exc) {
    throw new ApiError(0, 'Cannot reach the nbflow server.');
  }
  let data: any = null;
  try {
    data = await response.json();
  } catch (exc) {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.message === 'string' ? data.message : `${method} ${path} answered ${response.status}.`;
    throw new ApiError(response.status, message, data?.field ?? null, data?.parameter ?? null);
  }
  return data as T;
}

export const get = <T>(path: string, query?: Query): Promise<T> => request<T>('GET', path, { query });
export const post = <T>(path: string, body: unknown = {}): Promise<T> => request<T>('POST', path, { body });
export const patch = <T>(path: string, body: unknown): Promise<T> => request<T>('PATCH', path, { body });
