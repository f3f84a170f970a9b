import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { type AppError, toAppError } from '../errors.ts';
import { wantsHtml } from '../forward/navigation.ts';
import type { Logger } from '../log.ts';
import { encodeHeaderText, isWritableHeaderValue } from './headerValues.ts';
import {
  errorHint,
  errorView,
  html,
  type SafeHtml,
  type ViewName,
  type Views,
  type ViewValue,
} from './views.ts';

/**
 * What a handler answers, independent of Express or the raw fast path: a status, headers,
 * cookies, and either a redirect, a page (for browsers) and/or JSON (for everything else).
 */
export interface Reply {
  readonly status: number;
  /** A list sends one header line per value (e.g. Impersonate-Group). */
  readonly headers?: Readonly<Record<string, string | readonly string[]>>;
  readonly cookies?: readonly string[];
  readonly location?: string;
  readonly page?: {
    readonly view: ViewName;
    readonly title: string;
    readonly data: Readonly<Record<string, ViewValue>>;
  };
  /** A page built in code (already escaped). */
  readonly html?: { readonly title: string; readonly content: SafeHtml };
  readonly json?: unknown;
  readonly text?: string;
  /**
   * Origins a form on the page may lead to besides its own (CSP `form-action` also governs the
   * redirect after a form's POST: a sign-out's `rd`, the provider's end-session endpoint).
   */
  readonly formAction?: readonly string[];
  /**
   * The page gets `Content-Security-Policy: sandbox` (scripts and downloads allowed, never
   * allow-same-origin): an opaque origin, so no other page of the host, opener or popup, reads it.
   */
  readonly sandbox?: boolean;
}

/** The sandbox a page holding a token is served in (Reply.sandbox). */
export const PAGE_SANDBOX =
  'sandbox allow-scripts allow-downloads allow-popups allow-popups-to-escape-sandbox';

export interface ReplyContext {
  readonly views: Views;
  readonly pageHeaders: Readonly<Record<string, string>>;
  readonly requestId: string;
  /** Told about a header value that had to be encoded or emptied to be written. */
  readonly log?: Pick<Logger, 'warn'>;
}

/**
 * Sets a header without ever throwing: a value Node refuses (a character above U+00FF, a control
 * character) is written percent-encoded instead (see headerValues.ts), and should even that fail,
 * empty, so that a configured upstream header is never left for a client to fill.
 */
export function setHeaderSafely(
  res: ServerResponse,
  name: string,
  value: string | number | readonly string[],
  log?: Pick<Logger, 'warn'>,
): void {
  try {
    res.setHeader(name, value);
    return;
  } catch {
    // below
  }
  const encode = (v: string) => (isWritableHeaderValue(v) ? v : encodeHeaderText(v));
  log?.warn({ header: name }, 'header value not writable as it was: percent-encoded');
  try {
    res.setHeader(name, typeof value === 'object' ? value.map(encode) : encode(String(value)));
  } catch {
    try {
      res.setHeader(name, '');
    } catch {
      // an invalid name: nothing can be written under it
    }
  }
}

function pageCsp(csp: string, reply: Reply): string {
  let out = csp;
  if (reply.formAction && reply.formAction.length > 0) {
    const extra = reply.formAction.filter((o) => /^https?:\/\/[\w.:[\]-]+$/.test(o)).join(' ');
    out = out.replace("form-action 'self'", `form-action 'self' ${extra}`);
  }
  return reply.sandbox ? `${out}; ${PAGE_SANDBOX}` : out;
}

/** Writes a reply. Every answer carries Cache-Control: no-store (DESIGN §4.7). */
export function writeReply(
  res: ServerResponse,
  reply: Reply,
  requestHeaders: IncomingHttpHeaders,
  ctx: ReplyContext,
  method = 'GET',
): void {
  res.statusCode = reply.status;
  res.setHeader('Cache-Control', 'no-store');
  if (reply.headers) {
    for (const [name, value] of Object.entries(reply.headers)) setHeaderSafely(res, name, value, ctx.log);
  }
  if (reply.cookies && reply.cookies.length > 0) setHeaderSafely(res, 'Set-Cookie', reply.cookies, ctx.log);
  if (reply.location) setHeaderSafely(res, 'Location', reply.location, ctx.log);

  let body: string | undefined;
  const browser = wantsHtml(requestHeaders);
  if ((reply.page || reply.html) && (browser || reply.json === undefined)) {
    for (const [name, value] of Object.entries(ctx.pageHeaders)) res.setHeader(name, value);
    const csp = ctx.pageHeaders['Content-Security-Policy'];
    if (csp) res.setHeader('Content-Security-Policy', pageCsp(csp, reply));
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    body = reply.page
      ? ctx.views.render(reply.page.view, reply.page.title, reply.page.data, ctx.requestId)
      : ctx.views.page(reply.html!.title, reply.html!.content, ctx.requestId);
  } else if (reply.json !== undefined) {
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    body = JSON.stringify(reply.json);
  } else if (reply.text !== undefined) {
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    body = reply.text;
  }
  if (body === undefined) {
    res.setHeader('Content-Length', '0');
    res.end();
    return;
  }
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(method === 'HEAD' ? undefined : body);
}

const TITLES: Partial<Record<AppError['code'], string>> = {
  unauthenticated: 'Sign-in required',
  forbidden: 'Access denied',
  email_not_verified: 'Email address not verified',
  login_state_missing: 'Sign-in could not be completed',
  login_state_invalid: 'Sign-in could not be completed',
  provider_denied: 'Sign-in was refused',
  claims_missing: 'Sign-in incomplete',
  provider_error: 'Identity provider error',
  provider_unavailable: 'Identity provider unavailable',
  session_unavailable: 'Session temporarily unavailable',
  policy_unavailable: 'Access rules temporarily unavailable',
  rate_limited: 'Too many sign-in attempts',
  redirect_loop: 'Sign-in keeps looping',
  header_too_large: 'Request headers too large',
  cookie_conflict: 'Conflicting sign-in cookies',
  uri_too_long: 'Address too long',
  not_found: 'Not found',
  invalid_forwarded_request: 'Bad request',
  not_a_forward_auth_request: 'Not for browsers',
  bad_request: 'Bad request',
};

/** An error as a reply: a page for browsers, JSON otherwise; never internal detail. */
export function errorReply(error: unknown, requestId: string): Reply {
  const e = toAppError(error);
  const action = e.action;
  return {
    status: e.status,
    headers: e.headers,
    cookies: e.cookies,
    page: {
      view: errorView(e.code),
      title: TITLES[e.code] ?? 'Something went wrong',
      data: {
        message: e.publicMessage,
        hint: errorHint(e.code),
        status: e.status,
        code: e.code,
        action: action
          ? html`<p class="actions"><a class="button" href="${action.href}">${action.label}</a></p>`
          : undefined,
      },
    },
    json: { error: e.code, message: e.publicMessage, status: e.status, requestId },
  };
}
