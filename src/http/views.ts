import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * HTML pages with mandatory escaping: every `{{name}}` is HTML-escaped unless its value is a
 * SafeHtml produced here. Templates live in views/; no external assets, no scripts.
 */

export class SafeHtml {
  readonly html: string;
  constructor(html: string) {
    this.html = html;
  }
}

export type ViewName = 'error' | 'denied' | 'signed-out';
export type ViewValue = string | number | SafeHtml | undefined;

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}

/** Builds HTML from a template of literal parts and escaped values. */
export function html(strings: TemplateStringsArray, ...values: ViewValue[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += value instanceof SafeHtml ? value.html : escapeHtml(String(value ?? ''));
    out += strings[i + 1] ?? '';
  });
  return new SafeHtml(out);
}

export function join(parts: readonly SafeHtml[]): SafeHtml {
  return new SafeHtml(parts.map((p) => p.html).join(''));
}

const viewsDir = new URL('../../views/', import.meta.url);
const viewsDirFromDist = new URL('../../../views/', import.meta.url);

function load(name: string): string {
  try {
    return readFileSync(new URL(name, viewsDir), 'utf8');
  } catch {
    return readFileSync(new URL(name, viewsDirFromDist), 'utf8');
  }
}

function fill(template: string, data: Readonly<Record<string, ViewValue>>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = data[key];
    return value instanceof SafeHtml ? value.html : escapeHtml(String(value ?? ''));
  });
}

export class Views {
  readonly #layout: string;
  readonly #views: Record<ViewName, string>;
  readonly #style: string;
  /** CSP source for the one inline stylesheet. */
  readonly styleHash: string;

  constructor() {
    this.#layout = load('layout.html');
    this.#style = load('style.css').trim();
    this.#views = {
      error: load('error.html'),
      denied: load('denied.html'),
      'signed-out': load('signed-out.html'),
    };
    this.styleHash = `'sha256-${hash('sha256', this.#style, 'base64')}'`;
  }

  render(
    view: ViewName,
    title: string,
    data: Readonly<Record<string, ViewValue>>,
    requestId: string,
  ): string {
    const content = new SafeHtml(fill(this.#views[view], data));
    return this.page(title, content, requestId);
  }

  /** A page around already-safe content (for views built in code, such as the kubeconfig page). */
  page(title: string, content: SafeHtml, requestId: string): string {
    return fill(this.#layout, { title, content, requestId, style: new SafeHtml(this.#style) });
  }

  /** The Content-Security-Policy for every page: nothing but our inline stylesheet. */
  get contentSecurityPolicy(): string {
    return `default-src 'none'; style-src ${this.styleHash}; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;
  }
}
