import type { IncomingHttpHeaders } from 'node:http';
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { CONFLICT } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';
import { html, join, type SafeHtml } from '../http/views.ts';
import type { SessionSummary, Valid } from '../session/sessions.ts';
import { afterSignOut, fromOwnOrigin } from './signOut.ts';

/**
 * `/oauth2/sessions` (issue 16 item 2): the signed-in user's sessions — created, last seen, user
 * agent, client address as the trusted proxy saw it, host, this one marked — as a page, or JSON
 * (`Accept: application/json` without text/html, or `?format=json`). Two POST forms, CSRF-safe as
 * sign-out is (Origin / Sec-Fetch-Site must say this very origin):
 *   `POST /oauth2/sessions?end=<session>`  ends that one session of this user;
 *   `POST /oauth2/sessions?end=all`        ends every session of this user ("sign out everywhere").
 * Ending this browser's session (alone or everywhere) goes on as sign-out does: to the provider's
 * end_session_endpoint where it has one, else the signed-out page (signOut.ts afterSignOut).
 * The parameters are in the query, so the forms work where the page is served through ForwardAuth
 * (the proxy forwards no body to the check). A session reference only ever ends a session of the
 * user whose cookie asks (SessionService.end looks it up among that user's sessions).
 */
export async function sessionsPage(
  deps: Deps,
  original: OriginalRequest,
  headers: IncomingHttpHeaders,
  options: { viaForwardAuth: boolean },
): Promise<Reply> {
  const method = original.method;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    return {
      status: 405,
      headers: { Allow: 'GET, POST' },
      json: { error: 'method_not_allowed', message: 'Use GET to list, POST to end.' },
    };
  }
  const cookie = deps.cookies.readSession(headers.cookie);
  if (cookie === CONFLICT) throw deps.cookies.conflict(original);
  const session = cookie ? await deps.sessions.resolve(cookie, original.host) : undefined;
  const sub = session?.kind === 'valid' ? (session.record.u ?? session.record.identity.sub) : undefined;
  if (session?.kind !== 'valid' || sub === undefined || cookie === undefined) {
    const back = `${original.proto}://${original.host}/oauth2/sessions`;
    throw new AppError('unauthenticated', 'Sign in to see your sessions.', {
      headers: { 'WWW-Authenticate': 'Bearer realm="dex-forward-auth"' },
      action: { href: `/oauth2/start?rd=${encodeURIComponent(back)}`, label: 'Sign in' },
    });
  }
  const query = new URLSearchParams(original.query);
  if (method === 'POST') {
    return endFromForm(deps, original, headers, { cookie, session, sub, query }, options.viaForwardAuth);
  }
  const listed = await deps.sessions.listForUser(sub, session.ref, scopeOf(deps, original));
  const status = options.viaForwardAuth ? 401 : 200;
  const json = { user: session.record.identity.user, sessions: listed.map(toJson) };
  const cookies = renewed(deps, session);
  if (query.get('format') === 'json') return { status, cookies, json };
  // The forms may lead on to the provider's end_session_endpoint (CSP form-action covers redirects).
  const endSession = deps.oidc.endSessionEndpoint();
  return {
    status,
    cookies,
    json,
    page: { view: 'sessions', title: 'Your sessions', data: pageData(deps, original, listed, session) },
    ...(endSession ? { formAction: [new URL(endSession).origin] } : {}),
  };
}

/**
 * Host-only cookies (no COOKIE_DOMAIN): each host is its own session, so a host's page lists and
 * ends only that host's — a dashboard's script must not see or end the user's other hosts.
 * With COOKIE_DOMAIN one session spans the hosts: all of them.
 */
function scopeOf(deps: Deps, original: OriginalRequest): string | undefined {
  return deps.cookies.hostOnly ? original.host : undefined;
}

interface Asker {
  readonly cookie: string;
  readonly session: Valid;
  readonly sub: string;
  readonly query: URLSearchParams;
}

async function endFromForm(
  deps: Deps,
  original: OriginalRequest,
  headers: IncomingHttpHeaders,
  asker: Asker,
  viaForwardAuth: boolean,
): Promise<Reply> {
  if (!fromOwnOrigin(headers, original, viaForwardAuth)) {
    deps.log.info(
      { host: original.host, origin: String(headers.origin ?? '') },
      'ending sessions from another origin refused',
    );
    return { status: 403, json: { error: 'forbidden', message: 'This must come from a page of this site.' } };
  }
  const target = asker.query.get('end');
  const user = asker.session.record.identity.user;
  const signedOut = () =>
    afterSignOut(deps, original, {
      cookies: [...deps.cookies.clear(deps.cookies.session)],
      idToken: asker.session.record.idToken,
      rd: undefined,
      pageStatus: viaForwardAuth ? 401 : 200,
    });
  if (target === 'all') {
    const ended = await deps.sessions.endAllForUser(asker.sub, 'user', scopeOf(deps, original));
    deps.log.info({ user, host: original.host, sessions: ended }, 'signed out everywhere');
    return signedOut();
  }
  if (!target) {
    return {
      status: 400,
      json: { error: 'bad_request', message: 'Say which session: ?end=<session> or ?end=all.' },
    };
  }
  if (target === asker.session.ref) {
    await deps.sessions.destroy(asker.cookie);
    deps.log.info({ user, host: original.host }, 'signed out');
    return signedOut();
  }
  if (!(await deps.sessions.end({ sub: asker.sub, session: target }, scopeOf(deps, original)))) {
    throw new AppError('not_found', 'You have no such session (it may have ended already).');
  }
  deps.log.info({ user, host: original.host }, 'one of the user’s other sessions ended');
  return {
    status: 303,
    location: `${original.proto}://${original.host}/oauth2/sessions`,
    cookies: renewed(deps, asker.session),
    json: { ended: 1 },
  };
}

/** The session's rotated cookie when resolving it refreshed the session (else the browser falls behind). */
function renewed(deps: Deps, session: Valid): string[] {
  if (session.setCookie === undefined) return [];
  const maxAge = (session.sessionEnd - deps.clock.now()) / 1000;
  return [deps.cookies.set(deps.cookies.session, session.setCookie, maxAge)];
}

/** A session as JSON, for its user (the sessions page) and for the admin API. */
export function sessionJson(s: SessionSummary) {
  return {
    id: s.ref,
    createdAt: new Date(s.created).toISOString(),
    lastSeenAt: new Date(s.lastSeen).toISOString(),
    endsAt: new Date(s.sessionEnd).toISOString(),
    userAgent: s.userAgent ?? null,
    clientAddress: s.clientAddress ?? null,
    host: s.host ?? null,
  };
}

function toJson(s: SessionSummary & { current: boolean }) {
  return { ...sessionJson(s), current: s.current };
}

const when = (ms: number): string =>
  new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');

function row(s: SessionSummary & { current: boolean }): SafeHtml {
  const action = `/oauth2/sessions?end=${encodeURIComponent(s.ref)}`;
  return html`<section class="session"${s.current ? html` aria-current="true"` : html``}>
<h2>${s.current ? 'This browser' : (s.host ?? 'A session')}</h2>
<dl>
<dt>Signed in</dt><dd>${when(s.created)}</dd>
<dt>Last seen</dt><dd>${when(s.lastSeen)}</dd>
<dt>Browser</dt><dd>${s.userAgent ?? 'unknown'}</dd>
<dt>Address</dt><dd><code>${s.clientAddress ?? 'unknown'}</code></dd>
<dt>Site</dt><dd><code>${s.host ?? 'every site of this sign-in'}</code></dd>
</dl>
<form method="post" action="${action}"><button class="button secondary" type="submit">${s.current ? 'Sign out this browser' : 'Sign out this one'}</button></form>
</section>`;
}

function pageData(
  deps: Deps,
  original: OriginalRequest,
  listed: (SessionSummary & { current: boolean })[],
  session: Valid,
) {
  return {
    user: session.record.identity.user,
    scope: deps.cookies.hostOnly
      ? 'Each session is one browser signed in to one site.'
      : `Each session is one browser signed in to every site that shares this sign-in (${deps.config.cookieDomain}).`,
    rows: join(listed.map(row)),
    everywhereAction: '/oauth2/sessions?end=all',
    backUrl: `${original.proto}://${original.host}/`,
  };
}
