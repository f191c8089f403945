// A read-only drive of run output notebooks: "nbflow-run:<run id>/<file>.ipynb" is the executed
// notebook of that flow run, fetched through GET flow_runs/{id}/output_notebook?format=ipynb. Lab
// opens it in its own notebook viewer as a copy that cannot be saved over the run's artifact (Save
// As puts a copy among the user's files). Runs' artifacts never change (DESIGN: never modify them).

import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { apiUrl, get } from './api';

export const DRIVE_NAME = 'nbflow-run';

const READ_ONLY = 'This is a read-only copy of a run\'s output notebook: use "Save Notebook As…" to keep your own copy.';

/** The drive path of a run's output notebook, opened with the document manager. */
export function outputNotebookPath(runId: string, outputNotebook: string): string {
  const file = outputNotebook.split(/[\\/]/).pop() || 'output.ipynb';
  return `${DRIVE_NAME}:${runId}/${file}`;
}

export class OutputNotebookDrive implements Contents.IDrive {
  readonly name = DRIVE_NAME;
  readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings();
  private _fileChanged = new Signal<Contents.IDrive, Contents.IChangedArgs>(this);
  private _disposed = false;

  get fileChanged(): ISignal<Contents.IDrive, Contents.IChangedArgs> {
    return this._fileChanged;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this._disposed = true;
    Signal.clearData(this);
  }

  async get(localPath: string, options?: Contents.IFetchOptions): Promise<Contents.IModel> {
    const [runId, file] = localPath.split('/');
    const now = new Date().toISOString();
    if (!file) {
      return { name: runId, path: localPath, type: 'directory', writable: false, created: now, last_modified: now, mimetype: '', content: [], format: 'json' };
    }
    const content = options?.content === false ? null : await get<unknown>(`flow_runs/${runId}/output_notebook`, { format: 'ipynb' });
    return { name: file, path: localPath, type: 'notebook', writable: false, created: now, last_modified: now, mimetype: 'application/x-ipynb+json', content, format: 'json' };
  }

  async getDownloadUrl(localPath: string): Promise<string> {
    return apiUrl(`flow_runs/${localPath.split('/')[0]}/output_notebook`, { format: 'ipynb' });
  }

  newUntitled(): Promise<Contents.IModel> {
    return Promise.reject(new Error(READ_ONLY));
  }

  delete(): Promise<void> {
    return Promise.reject(new Error(READ_ONLY));
  }

  rename(): Promise<Contents.IModel> {
    return Promise.reject(new Error(READ_ONLY));
  }

  save(): Promise<Contents.IModel> {
    return Promise.reject(new Error(READ_ONLY));
  }

  copy(): Promise<Contents.IModel> {
    return Promise.reject(new Error(READ_ONLY));
  }

  async createCheckpoint(): Promise<Contents.ICheckpointModel> {
    return { id: 'run', last_modified: new Date().toISOString() };
  }

  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> {
    return [];
  }

  restoreCheckpoint(): Promise<void> {
    return Promise.reject(new Error(READ_ONLY));
  }

  deleteCheckpoint(): Promise<void> {
    return Promise.resolve();
  }
}
