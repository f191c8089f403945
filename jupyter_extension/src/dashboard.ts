// The dashboard's own modules (nbflow/server/static/js), bundled into the extension so that the
// parameter form and the state palette are one code base in both places. They are plain ES
// modules without type declarations; these are the types the extension relies on.
// `src/` and `lib/` are both one level below jupyter_extension/, so the relative path holds for
// tsc's output, the lab builder (webpack) and vitest alike.

// @ts-ignore: a plain ES module of the dashboard
import * as paramsModule from '../../nbflow/server/static/js/params.js';
// @ts-ignore: a plain ES module of the dashboard
import * as domModule from '../../nbflow/server/static/js/dom.js';

/** One parameter of a deployment's target, as GET deployments/{id} and GET targets describe it. */
export interface IParameterSpec {
  type: string;
  default?: unknown;
  required?: boolean;
  help?: string;
}

/** A parameter's input row (label, input, help, error line), from the dashboard's params.js. */
export interface IParameterField {
  name: string;
  row: HTMLElement;
  input: HTMLInputElement | HTMLTextAreaElement;
  read(): { value?: unknown; omit?: boolean; error?: string };
  showError(message: string): void;
}

export const fieldsFor: (deployment: {
  parameter_schema?: Record<string, IParameterSpec>;
  parameters?: Record<string, unknown>;
}) => IParameterField[] = paramsModule.fieldsFor;

export const collect: (fields: IParameterField[]) => {
  parameters?: Record<string, unknown>;
  errors?: Record<string, string>;
} = paramsModule.collect;

/** state name -> colour, the palette of the notebook widgets and the dashboard. */
export const STATE_COLOURS: Record<string, string> = domModule.STATE_COLOURS;
export const FINAL_STATES: Set<string> = domModule.FINAL_STATES;
export const stateColour: (state: string) => string = domModule.stateColour;

/** An element from a tag, attributes (class, style object, on* handlers, data-*) and children. */
export const h: (tag: string, attrs?: Record<string, unknown> | null, ...children: unknown[]) => HTMLElement = domModule.h;
