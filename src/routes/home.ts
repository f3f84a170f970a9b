import type { Request } from 'express';
import type { Deps } from '../deps.ts';
import { readOriginalRequest } from '../forward/original.ts';
import { CONFLICT } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';
import { html, join, type SafeHtml } from '../http/views.ts';
import type { Resolution } from '../session/sessions.ts';
import { VERSION } from '../version.ts';

type ValidSession = Extract<Resolution, { kind: 'valid' }>;

function signedIn(deps: Deps, session: ValidSession): SafeHtml {
  const { identity } = session.record;
  const ends = new Date(session.sessionEnd);
  const email = identity.email && identity.email !== identity.user ? html` (${identity.email})` : '';
  const groups =
    identity.groups.length === 0
      ? html`<p>None.</p>`
      : html`<ul class="groups">${join(identity.groups.map((g) => html`<li>${g}</li>`))}</ul>`;
  const links = [
    html`<li><a href="/oauth2/userinfo">Who am I</a>: your identity as JSON (never a token)</li>`,
    ...(deps.config.kubeClusters.length > 0
      ? [html`<li><a href="/kubeconfig">Kubeconfig</a>: files for kubectl, signed in as you</li>`]
      : []),
    html`<li><a href="/oauth2/sign_out">Sign out</a>: end this session</li>`,
  ];
  return html`<p id="sign-in-state">You are signed in as <strong>${identity.user || identity.sub}</strong>${email}, until <time datetime="${ends.toISOString()}">${ends.toUTCString()}</time>.</p>
<h2>Your groups (${identity.groups.length})</h2>
${groups}
<h2>Links</h2>
<ul>${join(links)}</ul>`;
}

function signedOut(deps: Deps): SafeHtml {
  // With one central callback (REDIRECT_URL) a sign-in can start here; otherwise on a dashboard.
  const start =
    deps.config.redirectUrl === undefined
      ? ''
      : html`<p class="actions"><a class="button" href="/oauth2/start">Sign in</a></p>`;
  return html`<p id="sign-in-state">You are not signed in here. Open one of the protected dashboards: signing in starts there and brings you back.</p>${start}`;
}

/**
 * `GET /`: what this service is, whether this browser is signed in, and where to go (a page for
 * browsers, JSON otherwise). Reached on a direct route: a central auth host, or the service itself.
 */
export async function homeReply(deps: Deps, req: Request): Promise<Reply> {
  // Read as /auth reads it: two session cookies are a conflict, and a host-only session is one
  // only on the host it was made for.
  const original = readOriginalRequest(req, deps.trust);
  const cookie = deps.cookies.readSession(req.headers.cookie);
  if (cookie === CONFLICT) throw deps.cookies.conflict(original);
  const resolved = cookie ? await deps.sessions.resolve(cookie, original.host) : undefined;
  const session = resolved?.kind === 'valid' ? resolved : undefined;
  const maxAge = session ? (session.sessionEnd - deps.clock.now()) / 1000 : 0;
  const cookies =
    session?.setCookie === undefined
      ? []
      : [deps.cookies.set(deps.cookies.session, session.setCookie, maxAge)];
  return {
    status: 200,
    cookies,
    page: {
      view: 'home',
      title: 'Single sign-on gate',
      data: { state: session ? signedIn(deps, session) : signedOut(deps), version: VERSION },
    },
    json: {
      service: 'dex-forward-auth',
      version: VERSION,
      signedIn: session !== undefined,
      ...(session ? { user: session.record.identity.user } : {}),
    },
  };
}
