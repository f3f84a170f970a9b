import type { Deps } from '../deps.ts';
import { AppError, type ErrorCode } from '../errors.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readUniqueCookie } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';
import type { TokenResult } from '../oidc/provider.ts';
import { LOGIN_TTL_SECONDS, type LoginTransaction, rateLimited, startLogin } from './login.ts';

/** What a provider answers a prompt=none request when it would have to ask the user (OIDC Core §3.1.2.6). */
const SILENT_REFUSALS = new Set([
  'login_required',
  'interaction_required',
  'consent_required',
  'account_selection_required',
]);

/**
 * Finishes a login. The transaction cookie is read and cleared *before* anything is checked
 * (used exactly once), then: state bound to this browser's cookie, single use across replicas,
 * the provider's error, code exchange with PKCE, ID token signature/iss/aud/exp/nonce. Then a
 * session, and a redirect to where the user was going.
 */
export async function finishLogin(
  deps: Deps,
  original: OriginalRequest,
  cookieHeader: string | undefined,
  userAgent?: string,
): Promise<Reply> {
  const query = original.uri.includes('?') ? original.uri.slice(original.uri.indexOf('?')) : '';
  const params = new URLSearchParams(query);
  const state = params.get('state') ?? '';
  const clear = state ? deps.cookies.clear(deps.cookies.login(state)) : [];
  const fail = (code: ErrorCode, message: string, detail: string): AppError => {
    deps.metrics.loginFailed(code);
    deps.log.info({ code, detail, clientIp: original.clientIp }, 'login failed');
    return new AppError(code, message, {
      detail,
      cookies: clear,
      action: { href: `${original.proto}://${original.host}/oauth2/start`, label: 'Sign in again' },
    });
  };

  // Over the limit, the login cookie is kept: the same callback works again after Retry-After.
  const limit = await deps.loginLimiter.take('callback', original.clientIp);
  if (!limit.allowed) {
    deps.metrics.loginFailed('rate_limited');
    deps.log.info({ clientIp: original.clientIp, host: original.host }, 'login callback rate-limited');
    throw rateLimited(limit.retryAfterSeconds, original.url);
  }

  const tx = await readTransaction(deps, state, cookieHeader);
  if (tx === 'missing') {
    throw fail(
      'login_state_missing',
      'This sign-in was started in another browser, has expired, or was already completed. Please sign in again.',
      state ? 'no login cookie for this state' : 'no state parameter',
    );
  }
  if (tx === 'invalid') {
    throw fail(
      'login_state_invalid',
      'This sign-in could not be verified. Please sign in again.',
      'login cookie unreadable, expired or for another state',
    );
  }
  if (!(await deps.sessions.useOnce(`state:${state}`, LOGIN_TTL_SECONDS * 1000))) {
    throw fail(
      'login_state_invalid',
      'This sign-in link was already used. Please sign in again.',
      'state replayed',
    );
  }
  const providerError = params.get('error');
  if (providerError && tx.silent && SILENT_REFUSALS.has(providerError)) {
    // The silent attempt found no session at the provider: now the login the user will see.
    deps.log.info({ error: providerError, host: original.host }, 'silent login declined; asking the user');
    const login = await startLogin(deps, original, tx.returnTo, cookieHeader);
    return { ...login, cookies: [...clear, ...(login.cookies ?? [])] };
  }
  if (providerError) {
    const code = /^[\w.-]{1,64}$/.test(providerError) ? providerError : 'unknown';
    throw fail(
      'provider_denied',
      `The identity provider refused the sign-in (${code}).`,
      `provider error ${code}`,
    );
  }

  const callbackUrl = new URL(tx.redirectUri);
  callbackUrl.search = query;
  let tokens: TokenResult;
  try {
    tokens = await deps.oidc.exchangeCode(callbackUrl, tx);
  } catch (error) {
    if (error instanceof AppError) throw fail(error.code, error.publicMessage, error.detail ?? error.code);
    throw error;
  }
  const session = await deps.sessions.create(tokens, {
    host: original.host,
    clientAddress: original.clientIp,
    ...(userAgent ? { userAgent } : {}),
  });
  const maxAge = (session.sessionEnd - deps.clock.now()) / 1000;
  deps.metrics.loginCompleted();
  deps.log.info({ user: session.record.identity.user, host: original.host }, 'login completed');
  return {
    status: 302,
    location: tx.returnTo,
    cookies: [
      ...clear,
      deps.cookies.set(deps.cookies.session, session.cookie, maxAge),
      ...deps.loopBreaker.completed(cookieHeader, tx.returnTo, deps.clock.now()),
    ],
  };
}

async function readTransaction(
  deps: Deps,
  state: string,
  cookieHeader: string | undefined,
): Promise<LoginTransaction | 'missing' | 'invalid'> {
  if (!state || state.length > 512) return 'missing';
  const sealed = readUniqueCookie(cookieHeader, deps.cookies.login(state));
  if (sealed === undefined || sealed === '') return 'missing';
  if (typeof sealed !== 'string') return 'invalid'; // the same login cookie twice: planted
  const tx = await deps.sealer.unseal<LoginTransaction>(sealed);
  if (tx?.v !== 1 || tx.state !== state || deps.clock.now() - tx.iat > LOGIN_TTL_SECONDS * 1000)
    return 'invalid';
  return tx;
}
