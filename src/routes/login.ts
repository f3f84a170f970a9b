import type { Deps } from '../deps.ts';
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
}

export const LOGIN_TTL_SECONDS = 600;
/** At most this many login flows alive per browser (tabs racing each other); the oldest go. */
export const MAX_LOGIN_FLOWS = 4;

export function redirectUriFor(deps: Deps, original: OriginalRequest): string {
  return deps.config.redirectUrl ?? `${original.proto}://${original.host}/oauth2/callback`;
}

/**
 * Begins a login: new state, nonce and PKCE verifier; the transaction sealed into its own cookie;
 * a 302 to the provider's authorization endpoint (absolute, so Traefik relays it as is).
 */
export async function startLogin(
  deps: Deps,
  original: OriginalRequest,
  returnTo: string,
  cookieHeader: string | undefined,
): Promise<Reply> {
  const secrets = newLoginSecrets();
  const redirectUri = redirectUriFor(deps, original);
  const location = await deps.oidc.authorizationUrl({ redirectUri, ...secrets });
  const now = deps.clock.now();
  const tx: LoginTransaction = { v: 1, ...secrets, redirectUri, returnTo, iat: now };
  const sealed = await deps.sealer.seal({ ...tx }, LOGIN_TTL_SECONDS);
  const cookies = [
    ...(await staleLoginCookies(deps, cookieHeader)),
    deps.cookies.set(deps.cookies.login(secrets.state), sealed, LOGIN_TTL_SECONDS),
  ];
  deps.metrics.loginStarted();
  deps.log.info({ host: original.host, clientIp: original.clientIp }, 'login started');
  return { status: 302, location, cookies };
}

/** Deletions for unreadable login cookies and for the oldest beyond the cap. */
async function staleLoginCookies(deps: Deps, cookieHeader: string | undefined): Promise<string[]> {
  const existing = readCookiesWithPrefix(cookieHeader, deps.cookies.loginPrefix);
  if (existing.size === 0) return [];
  const live: { name: string; iat: number }[] = [];
  const out: string[] = [];
  for (const [name, value] of existing) {
    const tx = await deps.sealer.unseal<LoginTransaction>(value);
    if (tx?.v === 1 && typeof tx.iat === 'number') live.push({ name, iat: tx.iat });
    else out.push(...deps.cookies.clear(name));
  }
  live.sort((a, b) => b.iat - a.iat);
  for (const old of live.slice(MAX_LOGIN_FLOWS - 1)) out.push(...deps.cookies.clear(old.name));
  return out;
}
