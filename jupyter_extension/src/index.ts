// nbflow's JupyterLab front-end: "Deploy" on the notebook toolbar and in the file browser, the
// nbflow panel in the left sidebar, run detail tabs, run output notebooks opened in Lab's own
// viewer, notifications when awaited runs end, and a status-bar count of running runs.
// Everything goes through nbflow's REST API under <base_url>nbflow/api/.

import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ToolbarButton, WidgetTracker } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { IDeployment, IFlowRun, pageUrl } from './api';
import { h } from './dashboard';
import { openDebugNotebook } from './debug_notebook';
import { IDeployActions, openDeployDialog, openRunDialog } from './deploy';
import { nbflowIcon } from './icon';
import { OutputNotebookDrive, outputNotebookPath } from './output_drive';
import { RunDetail } from './run_detail';
import { NbflowSidebar } from './sidebar';
import { RunWatcher } from './watcher';

const COMMANDS = {
  deploy: 'nbflow:deploy',
  openRun: 'nbflow:open-run',
  openOutput: 'nbflow:open-output-notebook',
  debugRun: 'nbflow:debug-run',
  showPanel: 'nbflow:show-panel'
};
const DEPLOYABLE = /\.(ipynb|py)$/i;

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbflow:plugin',
  description: 'Deploy notebooks, watch their runs and be told when they end, inside JupyterLab.',
  autoStart: true,
  requires: [IDocumentManager],
  optional: [ILabShell, ILayoutRestorer, INotebookTracker, IDefaultFileBrowser, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    docManager: IDocumentManager,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null,
    fileBrowser: IDefaultFileBrowser | null,
    statusBar: IStatusBar | null
  ) => {
    const started = performance.now(); // its cost on Lab's start-up: the 'nbflow:activate' measure
    const drive = new OutputNotebookDrive();
    app.serviceManager.contents.addDrive(drive);

    const openOutputNotebook = (run: IFlowRun): void => {
      if (!run.output_notebook) return;
      const widget = docManager.openOrReveal(outputNotebookPath(run.id, run.output_notebook), 'Notebook', undefined, undefined,
        { shouldStart: false, canStart: false, shutdownOnDispose: false });
      if (widget) {
        void widget.context.ready.then(() => {
          widget.context.model.readOnly = true;
          widget.title.label = `${run.flow_name} · ${run.id.slice(0, 8)} (run output)`;
        });
      }
    };

    const details = new WidgetTracker<RunDetail>({ namespace: 'nbflow-run' });
    // run tabs come back after a reload, as notebooks do (Lab saves the layout in its workspace)
    void restorer?.restore(details, { command: COMMANDS.openRun, args: (w) => ({ id: w.runId }), name: (w) => w.runId });
    const openRun = (runId: string): void => {
      const open = details.find((w) => w.runId === runId);
      if (open) {
        app.shell.activateById(open.id);
        return;
      }
      const widget = new RunDetail(runId, {
        openOutputNotebook,
        openDebugNotebook: (id) => void openDebugNotebook(id, docManager),
        runStarted: (run) => {
          watcher.track(run);
          openRun(run.id);
        }
      });
      void details.add(widget);
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    };

    const watcher = new RunWatcher({ openRun, openOutputNotebook });
    const sidebar = new NbflowSidebar({
      openRun,
      runNow: (d: IDeployment) => void openRunDialog(d, actions),
      currentNotebook: () => {
        const path = notebooks?.currentWidget?.context.path ?? null;
        return path && !path.startsWith(`${drive.name}:`) ? path : null;
      },
      openDashboard: () => window.open(pageUrl('nbflow/'), '_blank', 'noopener')
    }, watcher);
    sidebar.title.icon = nbflowIcon;
    sidebar.title.caption = 'nbflow: flow runs, deployments, workers';
    const showSidebar = (): void => {
      app.shell.activateById(sidebar.id);
      sidebar.refresh();
    };
    const actions: IDeployActions = { watcher, openRun, showSidebar };
    app.shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, 'nbflow-sidebar');
    notebooks?.currentChanged.connect(() => sidebar.notebookChanged());

    // The file the user right-clicked, read when the menu opens: Lab may select another file while the
    // menu is open (the active notebook, once its kernel is up), so the selection cannot be trusted.
    let rightClicked: string | null = null;
    const browser = fileBrowser;
    browser?.node.addEventListener('contextmenu', (event: MouseEvent) => {
      rightClicked = browser.modelForClick(event)?.path ?? null;
    }, true);
    app.commands.addCommand(COMMANDS.deploy, {
      label: 'Deploy with nbflow…',
      caption: 'Make this notebook (or a flow of this .py file) an nbflow deployment: parameters, schedule, work pool',
      icon: nbflowIcon,
      isVisible: (args) => !args.fromFileBrowser || (rightClicked !== null && DEPLOYABLE.test(rightClicked)),
      execute: (args) => {
        const path = (args.path as string | undefined) ??
          (args.fromFileBrowser ? rightClicked : notebooks?.currentWidget?.context.path);
        if (path) return openDeployDialog(path, actions);
      }
    });
    app.commands.addCommand(COMMANDS.debugRun, {
      label: 'Debug nbflow run in a notebook',
      caption: "Open a notebook that restores what a failed run's task saw and holds its failing code",
      execute: (args) => openDebugNotebook(String(args.id), docManager)
    });
    app.commands.addCommand(COMMANDS.openRun, {
      label: 'Open nbflow run',
      execute: (args) => openRun(String(args.id))
    });
    app.commands.addCommand(COMMANDS.showPanel, { label: 'Show the nbflow panel', execute: showSidebar });
    for (const type of ['notebook', 'python']) {
      app.contextMenu.addItem({ command: COMMANDS.deploy, args: { fromFileBrowser: true }, selector: `.jp-DirListing-item[data-file-type="${type}"]`, rank: 3 });
    }

    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: NotebookPanel) => {
        const button = new ToolbarButton({
          icon: nbflowIcon,
          label: 'Deploy',
          tooltip: 'Deploy this notebook with nbflow: schedule it, run it on a worker, be told when it ends',
          onClick: async () => {
            if (panel.context.model.dirty && !panel.context.model.readOnly) await panel.context.save(); // deploy what is shown
            await openDeployDialog(panel.context.path, actions);
          }
        });
        button.node.dataset.testid = 'nbflow-deploy-button';
        if (!panel.context.path.startsWith(`${drive.name}:`) && !panel.toolbar.insertAfter('cellType', 'nbflowDeploy', button)) {
          panel.toolbar.addItem('nbflowDeploy', button);
        }
        return button;
      }
    });

    if (statusBar) {
      const item = new Widget({ node: h('div', { class: 'nbflow-StatusItem', 'data-testid': 'nbflow-status', title: 'nbflow: runs running now — click for the nbflow panel' }) });
      const show = (count: number): void => {
        item.node.textContent = `nbflow: ${count} running`;
        item.node.classList.toggle('nbflow-mod-busy', count > 0);
      };
      show(0);
      item.node.addEventListener('click', showSidebar);
      watcher.runningChanged.connect((_, count) => show(count));
      statusBar.registerStatusItem('nbflow:running', { item, align: 'left', rank: 10 });
    }
    void app.restored.then(() => watcher.start());
    performance.measure('nbflow:activate', { start: started });
  }
};

export default plugin;
