import type { Deps } from '../deps.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readCookie, readCookiesWithPrefix } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';

/**
 * Ends the local session: the store entry is deleted (with a tombstone), the session and login
 * cookies are cleared everywhere they were set. Then: the provider's end_session_endpoint when
 * discovery offers one (with id_token_hint; released Dex has none), else `rd` when allow-listed, else the signed-out
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
  let idToken: string | undefined;
  if (cookie) {
    const record = await deps.sessions.peekRecord(cookie);
    user = record?.identity.user;
    idToken = record?.idToken;
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
  const endSession = deps.oidc.endSessionUrl({ idTokenHint: idToken, postLogoutRedirectUri: rd });
  if (endSession) return { status: 302, location: endSession, cookies };
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
