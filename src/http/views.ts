import { hash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

/**
 * HTML pages with mandatory escaping: every `{{name}}` is HTML-escaped unless its value is a
 * SafeHtml produced here. Templates live in views/; no external assets. One inline stylesheet and
 * one inline script (the copy buttons) are allowed by their hashes in the Content-Security-Policy;
 * every page works without the script.
 */

export class SafeHtml {
  readonly html: string;
  constructor(html: string) {
    this.html = html;
  }
}

export const VIEW_NAMES = [
  'error',
  'denied',
  'signed-out',
  'sign-out',
  'provider-unavailable',
  'rate-limited',
  'redirect-loop',
  'kubeconfig',
  'home',
  'proxy-only',
  'sessions',
] as const;
export type ViewName = (typeof VIEW_NAMES)[number];
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

/** Which page an error is shown on; everything without its own page uses the generic one. */
export function errorView(code: string): ViewName {
  switch (code) {
    case 'provider_unavailable':
    case 'session_unavailable':
      return 'provider-unavailable';
    case 'rate_limited':
      return 'rate-limited';
    case 'redirect_loop':
      return 'redirect-loop';
    default:
      return 'error';
  }
}

/** A plain-language "why did this happen and what now" for the generic error page. */
const ERROR_HINTS: Readonly<Record<string, string>> = {
  login_state_missing:
    'This happens when signing in took longer than ten minutes, when the browser did not keep our short-lived sign-in cookie, or when a sign-in page was reopened from the history. Starting again from the page you wanted usually fixes it.',
  login_state_invalid:
    'The answer from the identity provider did not match the sign-in this browser started, or it was used twice. Starting again from the page you wanted usually fixes it.',
  provider_denied:
    'The identity provider refused the sign-in. If you cancelled it, that is expected; otherwise your account may not be allowed to use this application.',
  claims_missing:
    'The identity provider signed you in, but its token does not name you the way this site is configured to read it. This is a configuration problem for your platform team, not something you did.',
  provider_error: 'The identity provider answered with something we could not use. Please try again.',
  invalid_forwarded_request:
    'The proxy in front of this site sent a request we cannot trust. This is a configuration problem, not something you did.',
  not_a_forward_auth_request:
    'The proxy asks this address whether a request may pass; it has nothing to show a browser. If you see this through the proxy, its forward-auth configuration or TRUSTED_PROXIES needs fixing.',
  bad_request: 'The request was not understood.',
  header_too_large:
    'Your browser sent more cookies or headers than this site accepts. Deleting the cookies of this site usually fixes it.',
  cookie_conflict:
    'This can happen when another site under the same parent domain sets cookies for it, on purpose or by mistake. Deleting the cookies of this site and signing in again fixes it.',
  not_found: 'Check the address, or go back to the dashboard you came from.',
  internal: 'Something failed on our side. It has been logged; please try again.',
};

export function errorHint(code: string): string | undefined {
  return ERROR_HINTS[code];
}

const viewsDir = new URL('../../views/', import.meta.url);
const viewsDirFromDist = new URL('../../../views/', import.meta.url);

function locate(name: string): URL | undefined {
  for (const dir of [viewsDir, viewsDirFromDist]) {
    const url = new URL(name, dir);
    if (existsSync(url)) return url;
  }
  return undefined;
}

function load(name: string): string {
  const url = locate(name);
  if (!url) throw new Error(`view ${name} not found in views/`);
  return readFileSync(url, 'utf8');
}

function fill(template: string, data: Readonly<Record<string, ViewValue>>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = data[key];
    return value instanceof SafeHtml ? value.html : escapeHtml(String(value ?? ''));
  });
}

const sha256 = (text: string): string => `'sha256-${hash('sha256', text, 'base64')}'`;

export class Views {
  readonly #layout: string;
  readonly #views: Partial<Record<ViewName, string>> = {};
  readonly #style: string;
  readonly #script: string;
  /** CSP source for the one inline stylesheet. */
  readonly styleHash: string;
  /** CSP source for the one inline script (copy buttons). */
  readonly scriptHash: string;
  /** Values every page may use (e.g. the provider's name once discovery knows it); data wins. */
  readonly #globals: () => Readonly<Record<string, ViewValue>>;

  constructor(options: { globals?: () => Readonly<Record<string, ViewValue>> } = {}) {
    this.#globals = options.globals ?? (() => ({}));
    this.#layout = load('layout.html');
    this.#style = load('style.css').trim();
    this.#script = load('copy.js').trim();
    for (const name of VIEW_NAMES) {
      // A page another change has not added yet falls back to the generic error page.
      if (locate(`${name}.html`) || name === 'error') this.#views[name] = load(`${name}.html`);
    }
    this.styleHash = sha256(this.#style);
    this.scriptHash = sha256(this.#script);
  }

  render(
    view: ViewName,
    title: string,
    data: Readonly<Record<string, ViewValue>>,
    requestId: string,
  ): string {
    const template = this.#views[view] ?? (this.#views.error as string);
    const content = new SafeHtml(fill(template, { ...this.#globals(), ...data }));
    return this.page(title, content, requestId);
  }

  /** A page around already-safe content (for views built in code). */
  page(title: string, content: SafeHtml, requestId: string): string {
    return fill(this.#layout, {
      title,
      content,
      requestId,
      style: new SafeHtml(this.#style),
      script: new SafeHtml(this.#script),
    });
  }

  /** The Content-Security-Policy for every page: nothing but our inline stylesheet and script. */
  get contentSecurityPolicy(): string {
    return `default-src 'none'; style-src ${this.styleHash}; script-src ${this.scriptHash}; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;
  }
}
