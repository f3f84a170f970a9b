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

/** What the callback's steps share: its parameters, the login cookie's deletion, and how it fails. */
interface Callback {
  readonly original: OriginalRequest;
  readonly query: string;
  readonly params: URLSearchParams;
  readonly state: string;
  readonly clear: string[];
  readonly fail: (code: ErrorCode, message: string, detail: string) => AppError;
}

function callbackOf(deps: Deps, original: OriginalRequest): Callback {
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
  return { original, query, params, state, clear, fail };
}

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
  const callback = callbackOf(deps, original);
  // Over the limit, the login cookie is kept: the same callback works again after Retry-After.
  const limit = await deps.loginLimiter.take('callback', original.clientIp);
  if (!limit.allowed) {
    deps.metrics.loginFailed('rate_limited');
    deps.log.info({ clientIp: original.clientIp, host: original.host }, 'login callback rate-limited');
    throw rateLimited(limit.retryAfterSeconds, original.url);
  }
  const tx = await usedTransaction(deps, callback, cookieHeader);
  const declined = await providerAnswer(deps, callback, tx, cookieHeader);
  if (declined) return declined;
  const tokens = await exchange(deps, callback, tx);
  const session = await deps.sessions.create(tokens, {
    host: original.host,
    clientAddress: original.clientIp,
    ...(userAgent ? { userAgent } : {}),
  });
  const maxAge = (session.sessionEnd - deps.clock.now()) / 1000;
  deps.metrics.loginCompleted();
  deps.log.info({ user: session.record.identity.user, host: original.host }, 'login completed');
  const { identity } = session.record;
  deps.audit.login({ user: identity.user, sub: identity.sub, groups: identity.groups }, original);
  return {
    status: 302,
    location: tx.returnTo,
    cookies: [
      ...callback.clear,
      deps.cookies.set(deps.cookies.session, session.cookie, maxAge),
      ...deps.loopBreaker.completed(cookieHeader, tx.returnTo, deps.clock.now()),
    ],
  };
}

/** The login transaction of this browser for this state, used once across replicas. */
async function usedTransaction(
  deps: Deps,
  { state, fail }: Callback,
  cookieHeader: string | undefined,
): Promise<LoginTransaction> {
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
  return tx;
}

/**
 * The provider's own error, if it sent one: a declined silent login becomes the login the user
 * will see (the reply); any other error ends the login.
 */
async function providerAnswer(
  deps: Deps,
  { original, params, clear, fail }: Callback,
  tx: LoginTransaction,
  cookieHeader: string | undefined,
): Promise<Reply | undefined> {
  const providerError = params.get('error');
  if (!providerError) return undefined;
  if (tx.silent && SILENT_REFUSALS.has(providerError)) {
    deps.log.info({ error: providerError, host: original.host }, 'silent login declined; asking the user');
    const login = await startLogin(deps, original, tx.returnTo, cookieHeader);
    return { ...login, cookies: [...clear, ...(login.cookies ?? [])] };
  }
  const code = /^[\w.-]{1,64}$/.test(providerError) ? providerError : 'unknown';
  throw fail(
    'provider_denied',
    `The identity provider refused the sign-in (${code}).`,
    `provider error ${code}`,
  );
}

/** The code for tokens; the provider's refusals become this login's failure page. */
async function exchange(deps: Deps, { query, fail }: Callback, tx: LoginTransaction): Promise<TokenResult> {
  const callbackUrl = new URL(tx.redirectUri);
  callbackUrl.search = query;
  try {
    return await deps.oidc.exchangeCode(callbackUrl, tx);
  } catch (error) {
    if (error instanceof AppError) throw fail(error.code, error.publicMessage, error.detail ?? error.code);
    throw error;
  }
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
