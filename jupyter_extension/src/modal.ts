// A modal form in JupyterLab's dialog look that stays open until its action succeeds: the deploy
// and run-now forms show server errors next to their fields instead of closing on "OK".

import { h } from './dashboard';

export class Modal {
  readonly node: HTMLElement;
  readonly body: HTMLElement;
  readonly error: HTMLElement;
  readonly accept: HTMLButtonElement;
  private _busy = false;
  private _done: () => void = () => undefined;
  private _keys: (event: KeyboardEvent) => void;

  constructor(title: string, acceptLabel: string, private _onAccept: () => Promise<boolean>, testid: string) {
    this.body = h('div', { class: 'jp-Dialog-body nbflow-Form' });
    this.error = h('div', { class: 'nbflow-FieldError nbflow-FormError', role: 'alert', 'data-testid': 'nbflow-form-error' });
    this.accept = h('button', { type: 'button', class: 'jp-Dialog-button jp-mod-accept jp-mod-styled', 'data-testid': `${testid}-submit` },
      h('div', { class: 'jp-Dialog-buttonLabel' }, acceptLabel)) as HTMLButtonElement;
    const cancel = h('button', { type: 'button', class: 'jp-Dialog-button jp-mod-reject jp-mod-styled' },
      h('div', { class: 'jp-Dialog-buttonLabel' }, 'Cancel'));
    cancel.addEventListener('click', () => this.close());
    this.accept.addEventListener('click', () => void this.submit());
    this.node = h('div', { class: 'jp-Dialog jp-ThemedContainer nbflow-Modal', 'data-testid': testid },
      h('div', { class: 'jp-Dialog-content', role: 'dialog', 'aria-modal': 'true', 'aria-label': title },
        h('div', { class: 'jp-Dialog-header' }, title),
        this.body,
        h('div', { class: 'jp-Dialog-footer' }, this.error, h('span', { class: 'nbflow-spacer' }), cancel, this.accept)));
    this._keys = (event: KeyboardEvent) => {
      if (event.key === 'Escape') {
        event.stopPropagation();
        this.close();
      } else if (event.key === 'Enter' && (event.target as HTMLElement)?.tagName === 'INPUT') {
        event.preventDefault();
        void this.submit();
      }
    };
    this.node.addEventListener('keydown', this._keys);
  }

  /** Show the modal; resolves when it closes (after a successful accept or a cancel). */
  open(): Promise<void> {
    document.body.append(this.node);
    const first = this.body.querySelector('input, select, textarea') as HTMLElement | null;
    first?.focus();
    return new Promise((resolve) => (this._done = resolve));
  }

  close(): void {
    this.node.remove();
    this._done();
  }

  async submit(): Promise<void> {
    if (this._busy) return;
    this._busy = true;
    this.accept.disabled = true;
    this.error.textContent = '';
    let ok = false;
    try {
      ok = await this._onAccept();
    } catch (exc) {
      this.error.textContent = (exc as Error).message;
    } finally {
      this._busy = false;
      this.accept.disabled = false;
    }
    if (ok) this.close();
  }
}

/** A labelled field row with its error line; `input` may be any control or a group of them. */
export function fieldRow(label: string, input: HTMLElement, help?: string, testid?: string): { row: HTMLElement; error: HTMLElement } {
  const error = h('div', { class: 'nbflow-FieldError', role: 'alert', 'data-testid': testid ? `error-${testid}` : null });
  const row = h('div', { class: 'field nbflow-Field' }, h('label', null, label), input, help ? h('div', { class: 'help' }, help) : null, error);
  return { row, error };
}
