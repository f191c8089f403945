// "Debug in a notebook" inside JupyterLab: the notebook that brings a failed run's failing moment back
// (GET flow_runs/{id}/debug_notebook) saved among the user's files and opened in Lab, ready to run.
// A notebook made for the run before is opened as it is: the user may have edited it.

import { Notification } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';

import { get } from './api';

export const DEBUG_FOLDER = 'nbflow-debug';
/** The run states whose failed task may have kept its inputs (the dashboard's list too). */
export const DEBUGGABLE = new Set(['Failed', 'TimedOut']);

/** Where a run's debug notebook goes, relative to the server's root folder. */
export function debugNotebookPath(runId: string): string {
  return `${DEBUG_FOLDER}/debug-${runId.slice(0, 8)}.ipynb`;
}

/** Save (once) and open the debug notebook of a failed run; say in a notification why when there is none. */
export async function openDebugNotebook(runId: string, docManager: IDocumentManager): Promise<string | null> {
  const contents = docManager.services.contents;
  const path = debugNotebookPath(runId);
  try {
    const exists = await contents.get(path, { content: false }).then(() => true, () => false);
    if (!exists) {
      const notebook = await get<Record<string, unknown>>(`flow_runs/${runId}/debug_notebook`);
      await contents.get(DEBUG_FOLDER, { content: false }).catch(() => contents.save(DEBUG_FOLDER, { type: 'directory' }));
      await contents.save(path, { type: 'notebook', format: 'json', content: notebook });
    }
  } catch (exc) {
    Notification.error(`No debug notebook for run ${runId.slice(0, 8)}: ${(exc as Error).message}`, { autoClose: false });
    return null;
  }
  docManager.openOrReveal(path);
  return path;
}
