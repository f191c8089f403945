import { LabIcon } from '@jupyterlab/ui-components';

/** nbflow's mark: three task nodes joined by edges. */
export const nbflowIcon = new LabIcon({
  name: 'nbflow:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">' +
    '<g class="jp-icon3" fill="#616161"><circle cx="5" cy="6" r="3"/><circle cx="5" cy="18" r="3"/>' +
    '<circle cx="19" cy="12" r="3"/><path d="M7.5 7.3l9 3.6-.6 1.5-9-3.6zM7 16.6l9-3.8.6 1.5-9 3.8z"/></g></svg>'
});
