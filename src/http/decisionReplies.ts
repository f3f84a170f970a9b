import type { ServerResponse } from 'node:http';
import type { OriginalRequest } from '../forward/original.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import type { Reply } from './reply.ts';
import { html, join } from './views.ts';

/**
 * The forward-auth answers other than "allowed" (DESIGN §4): 403 with the denial page, 401 for
 * API clients, and the last resort when a bug got past every guard. Pure: they build replies.
 */

/** "What would have allowed it", as the policy reports it (at most a handful of names per kind). */
export interface WouldAllow {
  readonly groups: readonly string[];
  readonly users: readonly string[];
  readonly emails: readonly string[];
  readonly emailDomains: readonly string[];
}

/** A refusal as the authorizer words it. */
export interface Denial {
  readonly code: string;
  readonly reason: string;
  readonly wouldAllow?: WouldAllow;
}

/**
 * What a denied user is told would have allowed it: groups and email domains by name, but other
 * people's identities (user names, email addresses) only as a count — the page must not tell one
 * user who else has access.
 */
function shownWouldAllow(would: WouldAllow): WouldAllow & { readonly namedUsers: number } {
  return {
    groups: would.groups,
    users: [],
    emails: [],
    emailDomains: would.emailDomains,
    namedUsers: new Set([...would.users, ...would.emails]).size,
  };
}

function wouldAllowHtml(would: WouldAllow | undefined) {
  if (!would) return undefined;
  const shown = shownWouldAllow(would);
  const named = shown.namedUsers;
  const items = [
    ...shown.groups.map((g) => html`<li>the group <code>${g}</code></li>`),
    ...shown.emailDomains.map((d) => html`<li>an email address at <code>${d}</code></li>`),
    ...(named > 0
      ? [html`<li>${String(named)} named user${named === 1 ? '' : 's'} (not listed here)</li>`]
      : []),
  ].slice(0, 25);
  if (items.length === 0) {
    return html`<h2>What would have allowed it</h2><p>Nobody is allowed here at the moment.</p>`;
  }
  return html`<h2>What would have allowed it</h2><ul class="would-allow">${join(items)}</ul>`;
}

/**
 * 403: a page for navigations, JSON otherwise; never a redirect to log in again. `formAction`: the
 * provider's end-session origin, where the page's sign-out form may lead.
 */
export function deniedReply(
  identity: Identity,
  original: OriginalRequest,
  denial: Denial,
  formAction: { formAction?: string[] },
): Reply {
  const groups =
    identity.groups.length === 0
      ? html`<p>None.</p>`
      : html`<ul class="groups">${join(identity.groups.map((g) => html`<li>${g}</li>`))}</ul>`;
  return {
    status: 403,
    page: {
      view: 'denied',
      title: 'Access denied',
      data: {
        user: identity.user || identity.sub,
        target: original.url,
        groups,
        reason: denial.reason,
        allowedBy: wouldAllowHtml(denial.wouldAllow),
        signOutUrl: `${original.proto}://${original.host}/oauth2/sign_out`,
      },
    },
    ...formAction,
    json: {
      error: denial.code,
      message: denial.reason,
      user: identity.user,
      groups: identity.groups,
      ...(denial.wouldAllow ? { allowedBy: shownWouldAllow(denial.wouldAllow) } : {}),
    },
  };
}

/** 401 for API clients and nginx's auth_request (which turns a 302 into a 500). */
export function unauthenticatedReply(cookies: readonly string[]): Reply {
  return {
    status: 401,
    headers: { 'WWW-Authenticate': 'Bearer realm="dex-forward-auth"' },
    cookies,
    json: { error: 'unauthenticated', message: 'Sign-in required.' },
  };
}

/** A bug got past every guard: log it, and answer 500 if nothing was sent yet. */
export function lastResort(log: Logger, res: ServerResponse, error: unknown, requestId: string): void {
  log.error(
    { requestId, err: { message: (error as Error)?.message, stack: (error as Error)?.stack } },
    'forward-auth request failed',
  );
  try {
    if (!res.headersSent) {
      res.writeHead(500, { 'Cache-Control': 'no-store', 'Content-Length': '0' });
    }
    res.end();
  } catch {
    res.destroy();
  }
}
