import { beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { type OidcProvider, RefreshError, type TokenResult } from '../../src/oidc/provider.ts';
import { MemoryStore } from '../../src/session/memoryStore.ts';
import { Sealer } from '../../src/session/seal.ts';
import { type Resolution, SessionService } from '../../src/session/sessions.ts';

/**
 * SessionService with a fake clock and a fake provider (unit level): the caches, the refresh
 * chain and single-flight, deterministic in time.
 */

class FakeClock implements Clock {
  t = Date.UTC(2026, 10, 23, 8, 0, 0);
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Rotates on every refresh and records which refresh tokens were presented. */
class FakeProvider {
  readonly presented: string[] = [];
  next = 1;
  failWith: RefreshError | undefined;
  constructor(
    private readonly clock: FakeClock,
    private readonly ttlSeconds: number,
  ) {}
  tokens(rt: string): TokenResult {
    const iat = Math.floor(this.clock.now() / 1000);
    return {
      idToken: `id-token-${rt}`,
      refreshToken: rt,
      claims: {
        sub: 'user-1',
        email: 'a@example.com',
        email_verified: true,
        groups: ['g'],
        iat,
        exp: iat + this.ttlSeconds,
      },
    };
  }
  async refresh(rt: string): Promise<TokenResult> {
    this.presented.push(rt);
    await new Promise((r) => setTimeout(r, 5));
    if (this.failWith) throw this.failWith;
    return this.tokens(`rt-${this.next++}`);
  }
}

const config = loadConfig({
  OIDC_ISSUER_URL: 'https://dex.example.com/',
  OIDC_CLIENT_ID: 'c',
  OIDC_CLIENT_SECRET: 's',
  COOKIE_SECRET: 'unit-test-cookie-secret-4f9a2c7e1b8d3056',
  SESSION_TTL: '1h',
  REFRESH_SKEW: '30s',
});

let clock: FakeClock;
let provider: FakeProvider;
let store: MemoryStore;

function service(): SessionService {
  return new SessionService({
    config,
    store,
    oidc: provider as unknown as OidcProvider,
    sealer: new Sealer(config.cookieSecrets),
    clock,
    log: silentLogger(),
    retryDelaysMs: [],
  });
}

function valid(r: Resolution): Extract<Resolution, { kind: 'valid' }> {
  if (r.kind !== 'valid') throw new Error(`expected a valid session, got ${r.reason}`);
  return r;
}

beforeEach(() => {
  clock = new FakeClock();
  provider = new FakeProvider(clock, 600);
  store = new MemoryStore({ clock });
});

describe('the hot cache', () => {
  it('is not used past the session’s absolute end', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    clock.advance(3600_000 - 100);
    // Token long expired by now: this resolve refreshes and warms the hot cache.
    valid(await sessions.resolve(cookie));
    clock.advance(200);
    expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'expired' });
  });

  it('is dropped at once by a sign-out on the same replica', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    valid(await sessions.resolve(cookie));
    await sessions.destroy(cookie);
    expect((await sessions.resolve(cookie)).kind).toBe('none');
  });

  it('lets a sign-out on another replica take effect within one second', async () => {
    const a = service();
    const b = service();
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await b.resolve(cookie));
    await a.destroy(cookie);
    clock.advance(1_001);
    expect(await b.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
  });

  it('never serves a token that is due for refresh', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    valid(await sessions.resolve(cookie));
    clock.advance(600_000 - 29_000); // inside the 30 s skew
    const r = valid(await sessions.resolve(cookie));
    expect(r.refreshed).toBe(true);
    expect(r.record.idToken).toBe('id-token-rt-1');
    expect(provider.presented).toEqual(['rt-0']);
  });
});

describe('refresh', () => {
  it('concurrent resolves of one session refresh once and hand out one cookie', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    clock.advance(600_000);
    const results = await Promise.all(Array.from({ length: 20 }, () => sessions.resolve(cookie)));
    expect(provider.presented).toEqual(['rt-0']);
    expect(new Set(results.map((r) => valid(r).setCookie)).size).toBe(1);
  });

  it('a stale cookie adopts the current one and never replays a rotated refresh token', async () => {
    const a = service();
    const b = service(); // another replica sharing the store
    const { cookie: c0 } = await a.create(provider.tokens('rt-0'));
    clock.advance(600_000);
    const c1 = valid(await a.resolve(c0)).setCookie!;
    expect(provider.presented).toEqual(['rt-0']);
    clock.advance(600_000);
    // The browser missed c1 and still sends c0, to another replica, after c1's token expired too.
    const r = valid(await b.resolve(c0));
    expect(provider.presented).toEqual(['rt-0', 'rt-1']);
    expect(r.record.idToken).toBe('id-token-rt-2');
    expect(r.setCookie).toBeDefined();
    expect(r.setCookie).not.toBe(c1);
    // c1 and c0 now both converge on the newest cookie without another refresh.
    expect(valid(await a.resolve(c1)).setCookie).toBe(r.setCookie);
    expect(provider.presented).toHaveLength(2);
  });

  it('a refusal ends the session; the refusal is remembered, not retried', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    clock.advance(600_000);
    provider.failWith = new RefreshError('terminal', 'invalid_request', 400, 'invalid_request');
    expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'refresh_refused' });
    expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'refresh_refused' });
    expect(provider.presented).toEqual(['rt-0']);
  });

  it('a transient failure with an expired token is a 503, and the session survives it', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    clock.advance(601_000);
    provider.failWith = new RefreshError('transient', 'connect ECONNREFUSED');
    await expect(sessions.resolve(cookie)).rejects.toMatchObject({
      code: 'session_unavailable',
      status: 503,
    });
    provider.failWith = undefined;
    expect(valid(await sessions.resolve(cookie)).record.idToken).toBe('id-token-rt-1');
  });
});
