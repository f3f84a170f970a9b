import type { Deps } from '../deps.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readCookie, readCookiesWithPrefix } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';

/**
 * Ends the local session: the store entry is deleted (with a tombstone), the session and login
 * cookies are cleared everywhere they were set. Then: the provider's end_session_endpoint when
 * discovery offers one (released Dex has none), else `rd` when allow-listed, else the signed-out
 * page. Sign-out only ever removes access, so a forged cross-site GET can do no more than log
 * the user out of this site (DESIGN §2, issue: CSRF-safe design).
 */
export async function signOut(
  deps: Deps,
  original: OriginalRequest,
  cookieHeader: string | undefined,
  options: { viaForwardAuth: boolean },
): Promise<Reply> {
  const cookie = readCookie(cookieHeader, deps.cookies.session);
  let user: string | undefined;
  if (cookie) {
    user = (await deps.sessions.peekIdentity(cookie))?.user;
    await deps.sessions.destroy(cookie);
  }
  const cookies = [...deps.cookies.clear(deps.cookies.session)];
  for (const name of readCookiesWithPrefix(cookieHeader, deps.cookies.loginPrefix).keys()) {
    cookies.push(...deps.cookies.clear(name));
  }
  if (readCookie(cookieHeader, deps.loopBreaker.cookieName) !== undefined) {
    cookies.push(...deps.loopBreaker.clear()); // signing out and in again is no redirect loop
  }
  deps.log.info({ user, host: original.host }, 'signed out');

  const query = new URLSearchParams(
    original.uri.includes('?') ? original.uri.slice(original.uri.indexOf('?')) : '',
  );
  const rd = deps.returnUrls.check(query.get('rd'), original);
  const endSession = deps.oidc.endSessionEndpoint();
  if (endSession) {
    const url = new URL(endSession);
    url.searchParams.set('client_id', deps.config.clientId);
    if (rd) url.searchParams.set('post_logout_redirect_uri', rd);
    return { status: 302, location: url.toString(), cookies };
  }
  if (rd) return { status: 302, location: rd, cookies };

  // Through ForwardAuth a 2xx would be swallowed (the request would go on to the dashboard), so
  // the page is sent as 401 there: the user is, after all, no longer authenticated.
  return {
    status: options.viaForwardAuth ? 401 : 200,
    cookies,
    page: {
      view: 'signed-out',
      title: 'Signed out',
      data: {
        signInUrl: `${original.proto}://${original.host}/oauth2/start`,
        providerNote:
          'Your sign-in at the identity provider (Dex) was not ended: released Dex offers no way to end it. If Dex or the identity service behind it still remembers you, signing in again may not ask for your password.',
      },
    },
    json: { signedOut: true },
  };
}
