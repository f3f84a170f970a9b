/**
 * Sessions made the way a login makes them, without the browser round trip: SessionService.create
 * with the service's own settings and store, from an ID token the Dex stand-in signed, so the
 * cookie, record, token chain and indexes in Redis are exactly a login's. For the memory test and
 * the benchmark's many-sessions section (thousands of sessions in seconds, not minutes). The
 * service process under test only decides.
 */
import { decodeJwt } from 'jose';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import type { OidcProvider } from '../../src/oidc/provider.ts';
import { createRedisClient, RedisStore } from '../../src/session/redisStore.ts';
import { Sealer } from '../../src/session/seal.ts';
import { SessionService } from '../../src/session/sessions.ts';
import type { Dex } from './dex.ts';

export interface SealedUser {
  readonly sub: string;
  readonly email: string;
  readonly groups: readonly string[];
}

export interface SealOptions {
  /** The service's settings (issuer, client, COOKIE_SECRET, REDIS_URL…): the cookies must be its. */
  readonly settings: Record<string, string>;
  readonly dex: Dex;
  /** The host the sessions are bound to (the X-Forwarded-Host the decisions will see). */
  readonly host: string;
  /** Sessions made at once (default 16). */
  readonly concurrency?: number;
}

/** One session per user, in order; returns their cookie values. */
export async function sealSessions(users: readonly SealedUser[], options: SealOptions): Promise<string[]> {
  const config = loadConfig(options.settings);
  if (config.redis === undefined) throw new Error('sealSessions needs REDIS_URL in the settings');
  const store = new RedisStore(createRedisClient(config.redis));
  // The client queues nothing while it connects: a write before it is ready would be lost (the
  // first session would have no record, and would be refreshed at its first decision).
  if (!(await store.ready(10_000))) throw new Error('sealSessions: Redis did not answer');
  const noProvider = {} as OidcProvider; // never asked: every user is new, no token is due
  const sessions = new SessionService({
    config,
    store,
    oidc: noProvider,
    sealer: new Sealer(config.cookieSecrets),
    clock: { now: () => Date.now() },
    log: silentLogger(),
  });
  const cookies: string[] = new Array(users.length);
  let next = 0;
  const one = async (i: number): Promise<void> => {
    const user = users[i] as SealedUser;
    const idToken = await options.dex.mintIdToken({
      sub: user.sub,
      email: user.email,
      email_verified: true,
      groups: [...user.groups],
    });
    const created = await sessions.create(
      { idToken, refreshToken: `refresh-token-of-${user.sub}`, claims: decodeJwt(idToken) as never },
      { host: options.host, userAgent: 'sealed-session', clientAddress: '127.0.0.1' },
    );
    cookies[i] = created.cookie;
  };
  try {
    await Promise.all(
      Array.from({ length: options.concurrency ?? 16 }, async () => {
        for (let i = next++; i < users.length; i = next++) await one(i);
      }),
    );
  } finally {
    sessions.close();
    await store.close();
  }
  return cookies;
}
