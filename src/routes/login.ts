import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readCookiesWithPrefix } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';
import { newLoginSecrets } from '../oidc/provider.ts';

/** The login transaction, kept in a short-lived sealed cookie named after its state. */
export interface LoginTransaction {
  readonly v: 1;
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
  readonly redirectUri: string;
  /** Where to go after login (already allow-listed). */
  readonly returnTo: string;
  readonly iat: number;
  /** Sent with prompt=none: a refusal (login_required …) falls back to a normal login. */
  readonly silent?: boolean;
}

export const LOGIN_TTL_SECONDS = 600;
/** At most this many login flows alive per browser (tabs racing each other); the oldest go. */
export const MAX_LOGIN_FLOWS = 4;

export function redirectUriFor(deps: Deps, original: OriginalRequest): string {
  return deps.config.redirectUrl ?? `${original.proto}://${original.host}/oauth2/callback`;
}

/**
 * Begins a login: new state, nonce and PKCE verifier; the transaction sealed into its own cookie;
 * a 302 to the provider's authorization endpoint (absolute, so Traefik relays it as is). `silent`
 * asks with prompt=none first (a session that ended at its ID token's expiry: the provider may
 * still know the user).
 */
export async function startLogin(
  deps: Deps,
  original: OriginalRequest,
  returnTo: string,
  cookieHeader: string | undefined,
  options: { silent?: boolean } = {},
): Promise<Reply> {
  await guardLoginStart(deps, original, returnTo, cookieHeader);
  const secrets = newLoginSecrets();
  const redirectUri = redirectUriFor(deps, original);
  const silent = options.silent === true && deps.oidc.profile()?.promptNone === true;
  const location = await deps.oidc.authorizationUrl({ redirectUri, ...secrets, silent });
  if (!(await deps.oidc.reachable())) {
    throw new AppError(
      'provider_unavailable',
      'The identity provider cannot be reached right now, so you cannot sign in. Please try again in a minute.',
      { detail: 'provider discovery document unreachable', headers: { 'Retry-After': '10' } },
    );
  }
  const now = deps.clock.now();
  const tx: LoginTransaction = {
    v: 1,
    ...secrets,
    redirectUri,
    returnTo,
    iat: now,
    ...(silent ? { silent } : {}),
  };
  const sealed = await deps.sealer.seal({ ...tx }, LOGIN_TTL_SECONDS);
  const cookies = [
    ...(await staleLoginCookies(deps, cookieHeader)),
    deps.cookies.set(deps.cookies.login(secrets.state), sealed, LOGIN_TTL_SECONDS),
  ];
  deps.metrics.loginStarted();
  deps.log.info({ host: original.host, clientIp: original.clientIp, silent }, 'login started');
  return { status: 302, location, cookies };
}

/**
 * Refuses a login start when the client is over its rate limit (429) or when the browser keeps
 * coming back to log in for the same page although its logins completed (a redirect loop: 508
 * with a page naming the likely causes, instead of another round).
 */
async function guardLoginStart(
  deps: Deps,
  original: OriginalRequest,
  returnTo: string,
  cookieHeader: string | undefined,
): Promise<void> {
  const limit = await deps.loginLimiter.take('start', original.clientIp);
  if (!limit.allowed) {
    deps.metrics.loginFailed('rate_limited');
    deps.log.info({ clientIp: original.clientIp, host: original.host }, 'login start rate-limited');
    deps.loginLimiter.noteRefused(original.clientIp);
    throw rateLimited(limit.retryAfterSeconds, original.url);
  }
  const now = deps.clock.now();
  const loop = deps.loopBreaker.check(cookieHeader, returnTo, now);
  if (loop.looping) {
    deps.metrics.loginFailed('redirect_loop');
    deps.log.warn(
      { host: original.host, clientIp: original.clientIp, logins: loop.count },
      'redirect loop: logins complete but the session is not seen; showing the loop page',
    );
    const retry = `${original.proto}://${original.host}/oauth2/start?rd=${encodeURIComponent(returnTo)}`;
    throw new AppError(
      'redirect_loop',
      `You were sent to sign in for this page ${loop.count} times in a row and each time the sign-in did not stick, so we stopped instead of sending you round again: ${returnTo}`,
      {
        detail: `${loop.count} completed logins for the same page`,
        cookies: deps.loopBreaker.forget(cookieHeader, returnTo, now),
        action: { href: retry, label: 'Try again' },
      },
    );
  }
}

/** The 429 for a login start or callback over the client's limit. */
export function rateLimited(retryAfterSeconds: number, retryUrl: string): AppError {
  return new AppError(
    'rate_limited',
    `There were too many sign-in attempts from your network in a short time. Please wait ${retryAfterSeconds} seconds, then try again.`,
    {
      detail: 'login rate limit',
      headers: { 'Retry-After': String(retryAfterSeconds) },
      action: { href: retryUrl, label: 'Try again' },
    },
  );
}

/** Deletions for unreadable login cookies and for the oldest beyond the cap. */
async function staleLoginCookies(deps: Deps, cookieHeader: string | undefined): Promise<string[]> {
  const existing = readCookiesWithPrefix(cookieHeader, deps.cookies.loginPrefix);
  if (existing.size === 0) return [];
  const live: { name: string; iat: number }[] = [];
  const out: string[] = [];
  for (const [name, value] of existing) {
    const tx = typeof value === 'string' ? await deps.sealer.unseal<LoginTransaction>(value) : undefined;
    if (tx?.v === 1 && typeof tx.iat === 'number') live.push({ name, iat: tx.iat });
    else out.push(...deps.cookies.clear(name));
  }
  live.sort((a, b) => b.iat - a.iat);
  for (const old of live.slice(MAX_LOGIN_FLOWS - 1)) out.push(...deps.cookies.clear(old.name));
  return out;
}
