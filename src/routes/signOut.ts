import type { IncomingHttpHeaders } from 'node:http';
import type { Deps } from '../deps.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { CONFLICT, readCookie, readCookiesWithPrefix } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';
import { html } from '../http/views.ts';

/**
 * Sign-out (DESIGN §2, §10; issue 11 item 17). Only a POST from a page of the same origin signs
 * out; a GET (a link, a bookmark, a cross-site `<img>` or navigation) only shows a page with the
 * POST form (or, with no session, the signed-out page). Through ForwardAuth only non-2xx bodies
 * reach the browser, so there the pages are answered with 401.
 *
 * Signing out ends the session for good (SessionService.destroy: refresh token revoked at the
 * provider, tombstone, every replica told), clears the session and login cookies everywhere they
 * were set, then goes to the provider's end_session_endpoint when discovery offers one (with
 * id_token_hint, RP-Initiated Logout 1.0; released Dex has none), else to `rd` when allow-listed,
 * else shows the signed-out page.
 */
export async function signOut(
  deps: Deps,
  original: OriginalRequest,
  headers: IncomingHttpHeaders,
  options: { viaForwardAuth: boolean },
): Promise<Reply> {
  const pageStatus = options.viaForwardAuth ? 401 : 200;
  const method = original.method;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    return {
      status: 405,
      headers: { Allow: 'GET, POST' },
      json: { error: 'method_not_allowed', message: 'Sign out with POST.' },
    };
  }
  const cookie = deps.cookies.readSession(headers.cookie);
  const hasSession = typeof cookie === 'string' || cookie === CONFLICT;
  if (method !== 'POST') {
    return hasSession
      ? confirmPage(deps, original, cookie, pageStatus)
      : signedOutPage(deps, original, pageStatus, []);
  }
  if (!fromOwnOrigin(headers, original, options.viaForwardAuth)) {
    const unseen = headers.origin === undefined && headers['sec-fetch-site'] === undefined;
    if (unseen) {
      deps.log.warn(
        { host: original.host },
        'sign-out through forward auth refused: the request carries neither Origin nor Sec-Fetch-Site; add both to the middleware authRequestHeaders',
      );
    } else {
      deps.log.info(
        { host: original.host, origin: String(headers.origin ?? '') },
        'sign-out from another origin refused',
      );
    }
    return { ...(await confirmPage(deps, original, cookie, 403)), json: forbidden };
  }
  return endSession(deps, original, headers.cookie, cookie, pageStatus);
}

const forbidden = { error: 'forbidden', message: 'Sign-out must come from a page of this site.' };

/**
 * The POST came from a page of this very origin: its Origin says so; or it says `null` — as
 * browsers send it from our own pages, whose Referrer-Policy is no-referrer — and the browser's
 * own Sec-Fetch-Site (which no page can set) says same-origin; or it carries neither (no browser
 * of the last years, so no forged cross-site form either: a script that holds the cookie) —
 * except through forward auth, where a proxy's `authRequestHeaders` may have dropped both.
 */
export function fromOwnOrigin(
  headers: IncomingHttpHeaders,
  original: OriginalRequest,
  viaForwardAuth = false,
): boolean {
  const origin = headers.origin;
  const site = headers['sec-fetch-site'];
  if (origin === undefined) return site === undefined ? !viaForwardAuth : site === 'same-origin';
  if (origin === 'null') return site === 'same-origin';
  try {
    const url = new URL(String(origin));
    return `${url.protocol}//${url.host}` === `${original.proto}://${original.host}` && site !== 'cross-site';
  } catch {
    return false;
  }
}

function returnUrl(deps: Deps, original: OriginalRequest): string | undefined {
  return deps.returnUrls.check(new URLSearchParams(original.query).get('rd'), original);
}

/**
 * Where the POST may lead (CSP form-action governs every redirect after a form's POST): the
 * provider's end-session endpoint, or `rd`'s origin — and the provider's origin, where a dashboard
 * sends a signed-out user next.
 */
function formTargets(deps: Deps, rd: string | undefined): string[] {
  const targets = [deps.oidc.endSessionEndpoint(), rd, rd ? deps.config.issuerUrl : undefined];
  return [...new Set(targets.filter((url) => url !== undefined).map((url) => new URL(url).origin))];
}

async function confirmPage(
  deps: Deps,
  original: OriginalRequest,
  cookie: string | typeof CONFLICT | undefined,
  status: number,
): Promise<Reply> {
  const rd = returnUrl(deps, original);
  const user = typeof cookie === 'string' ? (await deps.sessions.peekIdentity(cookie))?.user : undefined;
  const shared = deps.cookies.hostOnly
    ? 'This ends your session on this site.'
    : `This ends your session on every site that shares this sign-in (${deps.config.cookieDomain}).`;
  return {
    status,
    formAction: formTargets(deps, rd),
    page: {
      view: 'sign-out',
      title: 'Sign out',
      data: {
        site: original.host,
        who: user ? html`<p>You are signed in as <code>${user}</code>.</p>` : undefined,
        scope: shared,
        action: `/oauth2/sign_out${rd ? `?rd=${encodeURIComponent(rd)}` : ''}`,
        cancelUrl: rd ?? `${original.proto}://${original.host}/`,
      },
    },
    json: { signedOut: false, message: 'POST /oauth2/sign_out to sign out.' },
  };
}

async function endSession(
  deps: Deps,
  original: OriginalRequest,
  cookieHeader: string | undefined,
  cookie: string | typeof CONFLICT | undefined,
  pageStatus: number,
): Promise<Reply> {
  let user: string | undefined;
  let idToken: string | undefined;
  if (typeof cookie === 'string') {
    // Read before destroy: the ID token goes to the provider as id_token_hint.
    const record = await deps.sessions.peekRecord(cookie);
    user = record?.identity.user;
    idToken = record?.idToken;
    await deps.sessions.destroy(cookie);
    const identity = record?.identity;
    deps.audit.signOut({ user, sub: identity?.sub, groups: identity?.groups }, original);
  }
  const cookies =
    cookie === CONFLICT
      ? deps.cookies.clearEverywhere(original.host, original.path)
      : [...deps.cookies.clear(deps.cookies.session)];
  for (const name of readCookiesWithPrefix(cookieHeader, deps.cookies.loginPrefix).keys()) {
    cookies.push(...deps.cookies.clear(name));
  }
  if (readCookie(cookieHeader, deps.loopBreaker.cookieName) !== undefined) {
    cookies.push(...deps.loopBreaker.clear()); // signing out and in again is no redirect loop
  }
  deps.log.info({ user, host: original.host }, 'signed out');
  return afterSignOut(deps, original, { cookies, idToken, rd: returnUrl(deps, original), pageStatus });
}

/**
 * After this site's sessions ended (sign-out, the sessions page): on to the provider's
 * end_session_endpoint when it has one (RP-Initiated Logout, which ends the provider's session
 * too), else to `rd`, else the signed-out page saying the provider's session lives on.
 */
export function afterSignOut(
  deps: Deps,
  original: OriginalRequest,
  how: { cookies: string[]; idToken: string | undefined; rd: string | undefined; pageStatus: number },
): Reply {
  const { cookies, rd } = how;
  const endSession = deps.oidc.endSessionUrl({ idTokenHint: how.idToken, postLogoutRedirectUri: rd });
  if (endSession)
    return { status: 302, location: endSession, cookies, json: { signedOut: true, provider: 'ending' } };
  if (rd) return { status: 302, location: rd, cookies };
  return signedOutPage(deps, original, how.pageStatus, cookies);
}

function signedOutPage(deps: Deps, original: OriginalRequest, status: number, cookies: string[]): Reply {
  return {
    status,
    cookies,
    page: {
      view: 'signed-out',
      title: 'Signed out',
      data: {
        signInUrl: `${original.proto}://${original.host}/oauth2/start`,
        providerNote: providerNote(deps.oidc.profile()?.isDex === true),
      },
    },
    json: { signedOut: true },
  };
}

/** Why the provider's sign-in lives on; the Dex wording only when discovery says it is Dex. */
function providerNote(isDex: boolean): string {
  return isDex
    ? 'Your sign-in at Dex was not ended: released Dex offers no way to end it. If Dex or the identity service behind it still remembers you, signing in again may not ask for your password.'
    : 'Your sign-in at the identity provider was not ended: it offers this site no way to end it (no end_session_endpoint). If it still remembers you, signing in again may not ask for your password.';
}
