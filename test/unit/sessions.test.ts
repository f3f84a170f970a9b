import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import { type Config, loadConfig } from '../../src/config.ts';
import { createLogger, type Logger, silentLogger } from '../../src/log.ts';
import { MemoryBudget } from '../../src/memory/budget.ts';
import {
  type OidcProvider,
  RefreshError,
  type RefreshResult,
  type TokenResult,
} from '../../src/oidc/provider.ts';
import { deriveSessionKeys } from '../../src/session/crypto.ts';
import { MemoryStore } from '../../src/session/memoryStore.ts';
import { Sealer } from '../../src/session/seal.ts';
import {
  type Resolution,
  type SessionCookieData,
  type SessionEvents,
  SessionService,
} from '../../src/session/sessions.ts';
import { type Store, StoreUnavailableError } from '../../src/session/store.ts';
import { LogCapture } from '../support/service.ts';

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

/**
 * Rotates on every refresh and records which refresh tokens were presented. Like oidc-provider:
 * a revoked (or spent) refresh token is refused for good.
 */
class FakeProvider {
  readonly presented: string[] = [];
  readonly revoked: string[] = [];
  next = 1;
  failWith: RefreshError | undefined;
  revokeFailures = 0;
  /** Answer refreshes without an ID token (OpenID Connect Core §12.2), still rotating. */
  withoutIdToken = false;
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
  async refresh(rt: string): Promise<RefreshResult> {
    this.presented.push(rt);
    await new Promise((r) => setTimeout(r, 5));
    if (this.failWith) throw this.failWith;
    if (this.revoked.includes(rt)) throw new RefreshError('terminal', 'revoked', 400, 'invalid_grant');
    if (this.withoutIdToken)
      return { idToken: undefined, refreshToken: `rt-${this.next++}`, claims: undefined };
    return this.tokens(`rt-${this.next++}`);
  }
  async revokeRefreshToken(rt: string): Promise<'revoked'> {
    if (this.revokeFailures > 0) {
      this.revokeFailures--;
      throw new RefreshError('transient', 'connect ECONNREFUSED');
    }
    this.revoked.push(rt);
    return 'revoked';
  }
}

const settings = {
  OIDC_ISSUER_URL: 'https://dex.example.com/',
  OIDC_CLIENT_ID: 'c',
  OIDC_CLIENT_SECRET: 's',
  COOKIE_SECRET: 'unit-test-cookie-secret-4f9a2c7e1b8d3056',
  SESSION_TTL: '1h',
  REFRESH_SKEW: '30s',
  SESSION_IDLE_TIMEOUT: '0',
};
const config = loadConfig(settings);

let clock: FakeClock;
let provider: FakeProvider;
let store: MemoryStore;

const services: SessionService[] = [];

/** A store's member, callable through a Proxy (MemoryStore has private fields). */
function bound(target: Store, name: string | symbol): unknown {
  const value: unknown = Reflect.get(target, name, target);
  return typeof value === 'function' ? value.bind(target) : value;
}

function service(
  options: {
    config?: Config;
    store?: Store;
    revokeRetryDelaysMs?: number[];
    events?: SessionEvents;
    log?: Logger;
    memory?: MemoryBudget;
  } = {},
): SessionService {
  const created = new SessionService({
    config: options.config ?? config,
    store: options.store ?? store,
    oidc: provider as unknown as OidcProvider,
    sealer: new Sealer(config.cookieSecrets),
    clock,
    log: options.log ?? silentLogger(),
    retryDelaysMs: [],
    ...(options.events ? { events: options.events } : {}),
    ...(options.memory ? { memory: options.memory } : {}),
    ...(options.revokeRetryDelaysMs ? { revokeRetryDelaysMs: options.revokeRetryDelaysMs } : {}),
  });
  services.push(created);
  return created;
}

afterEach(() => {
  for (const s of services.splice(0)) s.close();
});

function valid(r: Resolution): Extract<Resolution, { kind: 'valid' }> {
  if (r.kind !== 'valid') throw new Error(`expected a valid session, got ${r.reason}`);
  return r;
}

beforeEach(() => {
  clock = new FakeClock();
  provider = new FakeProvider(clock, 600);
  store = new MemoryStore({ clock });
});

describe('record loads', () => {
  it('coalesces concurrent loads of one session on a fresh replica into one store read', async () => {
    let reads = 0;
    const counting: Store = new Proxy(store, {
      get: (target, name) => {
        const member = bound(target, name);
        if (name !== 'get') return member;
        // A store a network away: a record read takes a while (long enough for all 8 to ask).
        return async (key: string) => {
          if (key.startsWith('s:')) reads++;
          await new Promise((resolve) => setTimeout(resolve, key.startsWith('s:') ? 200 : 0));
          return (member as (k: string) => Promise<string | null>)(key);
        };
      },
    });
    const { cookie } = await service().create(provider.tokens('rt-0'));
    const fresh = service({ store: counting });
    const all = await Promise.all(Array.from({ length: 8 }, () => fresh.resolve(cookie)));
    for (const r of all) valid(r);
    expect(reads).toBe(1);
  });
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

  /** The store, with its subscription reported live or not as `live` says. */
  const withSubscription = (live: { now: boolean }) =>
    new Proxy(store, {
      get: (target, name) => (name === 'subscriptionLive' ? () => live.now : bound(target, name)),
    });

  /** A session created on one replica and resolved on `b`, whose subscription is as `live` says. */
  const resolvedOn = async (live: { now: boolean }) => {
    const b = service({ store: withSubscription(live) });
    const { cookie } = await service().create(provider.tokens('rt-0'));
    valid(await b.resolve(cookie));
    return { b, cookie };
  };

  it('holds a session resolved while every announcement arrives for 30 s, not longer', async () => {
    const live = { now: true };
    const { b, cookie } = await resolvedOn(live);
    clock.advance(29_000);
    expect(b.peekHot(cookie)?.kind).toBe('valid');
    clock.advance(1_001);
    expect(b.peekHot(cookie)).toBeUndefined();
  });

  it('holds a session for one second only while announcements may be lost', async () => {
    const live = { now: false };
    const { b, cookie } = await resolvedOn(live);
    clock.advance(900);
    expect(b.peekHot(cookie)?.kind).toBe('valid');
    clock.advance(101);
    expect(b.peekHot(cookie)).toBeUndefined();
    // Resolved while the subscription was down: not held longer once it is back either.
    valid(await b.resolve(cookie));
    live.now = true;
    clock.advance(1_001);
    expect(b.peekHot(cookie)).toBeUndefined();
  });

  it('falls back to one second as soon as the subscription is lost', async () => {
    const live = { now: true };
    const { b, cookie } = await resolvedOn(live);
    clock.advance(5_000);
    expect(b.peekHot(cookie)?.kind).toBe('valid');
    live.now = false; // a sign-out announced now could be lost: ask the store
    expect(b.peekHot(cookie)).toBeUndefined();
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

  it('within the grace period, the cookie before a rotation adopts the current one and never replays its refresh token', async () => {
    provider = new FakeProvider(clock, 40); // 40 s tokens: due after 20 s, inside the 60 s grace
    const a = service();
    const b = service(); // another replica sharing the store
    const { cookie: c0 } = await a.create(provider.tokens('rt-0'));
    clock.advance(21_000);
    const c1 = valid(await a.resolve(c0)).setCookie!;
    expect(provider.presented).toEqual(['rt-0']);
    clock.advance(21_000);
    // The browser missed c1 and still sends c0, to another replica, after c1's token is due too.
    const r = valid(await b.resolve(c0));
    expect(provider.presented).toEqual(['rt-0', 'rt-1']);
    expect(r.record.idToken).toBe('id-token-rt-2');
    expect(r.setCookie).toBeDefined();
    expect(r.setCookie).not.toBe(c1);
    // c1 converges on the newest cookie without another refresh.
    expect(valid(await a.resolve(c1)).setCookie).toBe(r.setCookie);
    expect(provider.presented).toHaveLength(2);
  });

  it('after the grace period, a cookie from before the rotation is refused, not upgraded', async () => {
    const a = service();
    const b = service();
    const { cookie: c0 } = await a.create(provider.tokens('rt-0'));
    clock.advance(600_000);
    const c1 = valid(await a.resolve(c0)).setCookie!;
    clock.advance(59_000);
    expect(valid(await b.resolve(c0)).setCookie).toBe(c1); // concurrent requests: still handed c1
    clock.advance(2_000);
    expect(await a.resolve(c0)).toEqual({ kind: 'none', reason: 'stale' });
    expect(await b.resolve(c0)).toEqual({ kind: 'none', reason: 'stale' });
    // The current cookie is untouched, and nothing was sent to the provider for the stale one.
    expect(valid(await b.resolve(c1)).setCookie).toBeUndefined();
    expect(provider.presented).toEqual(['rt-0']);
  });

  it('a cookie two rotations old is refused even inside the grace period', async () => {
    provider = new FakeProvider(clock, 20);
    const a = service();
    const { cookie: c0 } = await a.create(provider.tokens('rt-0'));
    clock.advance(11_000);
    const c1 = valid(await a.resolve(c0)).setCookie!;
    clock.advance(11_000);
    valid(await a.resolve(c1));
    expect(await a.resolve(c0)).toEqual({ kind: 'none', reason: 'stale' });
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

describe('sign-out', () => {
  it('takes effect on another replica at once: the replicas tell each other', async () => {
    const a = service();
    const b = service();
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await b.resolve(cookie)); // b's hot cache holds it now
    await a.destroy(cookie);
    await new Promise((r) => setImmediate(r)); // the message is delivered asynchronously
    expect(b.peekHot(cookie)).toBeUndefined();
    expect(await b.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
  });

  it('revokes the newest refresh token of the session at the provider, not the stale one presented', async () => {
    provider = new FakeProvider(clock, 40);
    const sessions = service();
    const { cookie: c0 } = await sessions.create(provider.tokens('rt-0'));
    clock.advance(21_000);
    valid(await sessions.resolve(c0)); // rotated to rt-1; the browser kept c0
    await sessions.destroy(c0);
    expect(provider.revoked).toEqual(['rt-1']);
  });

  it('survives Redis restarting empty: a kept cookie is not revived from its refresh token, on a replica that never saw it', async () => {
    const a = service();
    const { cookie } = await a.create(provider.tokens('rt-0'));
    await a.destroy(cookie);
    store.clear(); // Redis restarted without its data: record and tombstone are gone
    const fresh = service(); // a replica started afterwards: no memory of anything
    expect(await fresh.resolve(cookie)).toEqual({ kind: 'none', reason: 'refresh_refused' });
    expect(provider.presented).toEqual(['rt-0']); // it asked, and the provider refused
  });

  it('survives Redis restarting empty on a replica that still remembers the session (tombstone kept in memory)', async () => {
    const a = service();
    const b = service();
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await b.resolve(cookie));
    await a.destroy(cookie);
    await new Promise((r) => setImmediate(r));
    store.clear();
    clock.advance(2_000);
    expect(await b.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
    expect(provider.presented).toEqual([]);
    // … and b wrote its tombstone back into the empty store, for replicas that start later.
    expect(await service().resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
  });

  it('holds on a replica that missed the message: what it remembers is checked with the provider again', async () => {
    const deaf: Store = new Proxy(store, {
      get: (target, name) =>
        name === 'subscribe'
          ? () => () => undefined
          : name === 'subscriptionLive'
            ? () => false // what a replica that misses messages knows of its subscription
            : bound(target, name),
    });
    const a = service();
    const b = service({ store: deaf });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await b.resolve(cookie));
    await a.destroy(cookie);
    store.clear();
    clock.advance(2_000);
    expect(await b.resolve(cookie)).toEqual({ kind: 'none', reason: 'refresh_refused' });
  });

  it('Redis restarting empty logs nobody out who did not sign out (one refresh per session)', async () => {
    const a = service();
    const b = service();
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await b.resolve(cookie));
    store.clear();
    clock.advance(2_000);
    const results = await Promise.all([a.resolve(cookie), b.resolve(cookie), a.resolve(cookie)]);
    for (const r of results) expect(r.kind).toBe('valid');
    expect(provider.presented).toEqual(['rt-0']);
  });

  it('signing out while Redis is down ends the session here at once and in Redis once it is back', async () => {
    let down = false;
    const flaky: Store = new Proxy(store, {
      get: (target, name) => {
        const member = bound(target, name);
        if (typeof member !== 'function' || !['get', 'set', 'del', 'publish'].includes(String(name)))
          return member;
        return (...args: unknown[]) =>
          down
            ? Promise.reject(new StoreUnavailableError('down'))
            : (member as (...a: unknown[]) => unknown)(...args);
      },
    });
    const a = service({ store: flaky, revokeRetryDelaysMs: [20] });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    down = true;
    await a.destroy(cookie);
    expect(await a.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
    down = false;
    await new Promise((r) => setTimeout(r, 100));
    expect(await service().resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
    expect(provider.presented).toEqual([]); // the tombstone answered, not the provider
  });

  it('takes a logout token’s jti once, remembers it after the store lost it, and says so when the store is unreachable instead of calling it new', async () => {
    let down = false;
    const flaky: Store = new Proxy(store, {
      get: (target, name) => {
        const member = bound(target, name);
        if (typeof member !== 'function' || name !== 'setIfAbsent') return member;
        return (...args: unknown[]) =>
          down
            ? Promise.reject(new StoreUnavailableError('down'))
            : (member as (...a: unknown[]) => unknown)(...args);
      },
    });
    const a = service({ store: flaky });
    const until = clock.now() + 60_000;
    expect(await a.useLogoutTokenOnce('jti-1', until)).toBe(true);
    await store.close(); // Redis "lost its data": a fresh, empty store below the same replica
    expect(await a.useLogoutTokenOnce('jti-1', until)).toBe(false);
    down = true;
    await expect(a.useLogoutTokenOnce('jti-2', until)).rejects.toBeInstanceOf(StoreUnavailableError);
    down = false;
    expect(await a.useLogoutTokenOnce('jti-2', until)).toBe(true);
    // Remembered until the token is too old to be accepted, not longer.
    clock.advance(61_000);
    expect(await a.useLogoutTokenOnce('jti-1', clock.now() + 60_000)).toBe(true);
  });

  it('retries a revocation the provider could not take, in the background', async () => {
    provider.revokeFailures = 1;
    const sessions = service({ revokeRetryDelaysMs: [20] });
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    await sessions.destroy(cookie);
    expect(provider.revoked).toEqual([]);
    await new Promise((r) => setTimeout(r, 100));
    expect(provider.revoked).toEqual(['rt-0']);
  });
});

describe('host binding', () => {
  const sealer = new Sealer(config.cookieSecrets);

  it('a host-only session answers on its own host only', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'), 'grafana.example.com');
    expect((await sealer.unseal<SessionCookieData>(cookie))?.h).toBe('grafana.example.com');
    valid(await sessions.resolve(cookie, 'grafana.example.com'));
    expect(sessions.peekHot(cookie, 'prometheus.example.com')).toBeUndefined();
    expect(await sessions.resolve(cookie, 'prometheus.example.com')).toEqual({
      kind: 'none',
      reason: 'other_host',
    });
    valid(await sessions.resolve(cookie, 'grafana.example.com'));
  });

  it('with COOKIE_DOMAIN the session is shared by the hosts of the domain', async () => {
    const shared = loadConfig({ ...settings, COOKIE_DOMAIN: '.example.com' });
    const sessions = service({ config: shared });
    const { cookie } = await sessions.create(provider.tokens('rt-0'), 'grafana.example.com');
    valid(await sessions.resolve(cookie, 'prometheus.example.com'));
  });
});

describe('SESSION_IDLE_TIMEOUT', () => {
  const idle = loadConfig({ ...settings, SESSION_IDLE_TIMEOUT: '10m' });

  /** Counts the writes of last-seen times that reach the store. */
  function counting(): { store: Store; writes: () => number } {
    let writes = 0;
    // Last uses go into the user's session list (`t:<session>` fields), or `ls:<session>`.
    const wrapped: Store = new Proxy(store, {
      get: (target, name) =>
        name === 'set'
          ? (key: string, value: string, ttl: number) => {
              if (key.startsWith('ls:')) writes++;
              return target.set(key, value, ttl);
            }
          : name === 'hashSet'
            ? (key: string, field: string, value: string, ttl: number) => {
                if (field.startsWith('t:')) writes++;
                return target.hashSet(key, field, value, ttl);
              }
            : bound(target, name),
    });
    return { store: wrapped, writes: () => writes };
  }

  it('ends a session nobody used for the idle timeout, for good', async () => {
    const a = service({ config: idle });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await a.resolve(cookie));
    clock.advance(10 * 60_000 + 1);
    expect(await a.resolve(cookie)).toEqual({ kind: 'none', reason: 'idle' });
    expect(provider.revoked).toEqual(['rt-0']);
    expect(await a.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
  });

  it('ends an idle session even when its last resolution was hot: the hot window is never longer than the timeout', async () => {
    const short = loadConfig({ ...settings, SESSION_IDLE_TIMEOUT: '3s' });
    const a = service({ config: short }); // the memory store's subscription is live: 30 s were possible
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await a.resolve(cookie));
    clock.advance(2_999);
    expect(a.peekHot(cookie)?.kind).toBe('valid'); // a use: the idle time starts again
    clock.advance(3_001);
    expect(a.peekHot(cookie)).toBeUndefined();
    expect(await a.resolve(cookie)).toEqual({ kind: 'none', reason: 'idle' });
  });

  it('keeps a session used within the timeout on any replica, and writes its last use at most once per interval', async () => {
    const counted = counting();
    const a = service({ config: idle, store: counted.store });
    const b = service({ config: idle, store: counted.store });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    const before = counted.writes();
    // 40 minutes of use every 10 s, only ever on replica b (following rotations as a browser
    // does); then a — which has not seen the session for 40 minutes — is asked.
    let current = cookie;
    for (let t = 0; t < 240; t++) {
      clock.advance(10_000);
      const r = b.peekHot(current) ?? valid(await b.resolve(current));
      if (r.setCookie) current = r.setCookie;
    }
    valid(await a.resolve(current));
    // One write per 75 s (an eighth of the timeout) at most, not one per request.
    expect(counted.writes() - before).toBeLessThanOrEqual(Math.ceil((240 * 10_000) / 75_000) + 2);
    expect(counted.writes() - before).toBeGreaterThan(10);
  });

  it('does not write a last use it has just read from the store: a replica reading a session back costs no write', async () => {
    const counted = counting();
    const a = service({ config: idle, store: counted.store });
    const b = service({ config: idle, store: counted.store });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    clock.advance(30_000); // used on a moments ago; b has never seen it (a new replica, an evicted entry)
    valid(await a.resolve(cookie));
    const before = counted.writes();
    valid(await b.resolve(cookie));
    expect(counted.writes()).toBe(before);
    // … and once the interval (an eighth of the timeout) is over, b's uses are written again.
    clock.advance(76_000);
    valid(await b.resolve(cookie));
    expect(counted.writes()).toBe(before + 1);
  });

  it('never calls a session idle because Redis lost its data', async () => {
    const a = service({ config: idle });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    clock.advance(10 * 60_000 + 1);
    store.clear();
    expect((await a.resolve(cookie)).kind).toBe('valid');
  });
});

describe('a provider that re-issues no ID token on refresh', () => {
  it('keeps the rotated refresh token, serves the current token until it expires, then ends the session cleanly', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    provider.withoutIdToken = true;
    clock.advance(600_000 - 20_000); // due (30 s skew), still valid
    const due = valid(await sessions.resolve(cookie));
    expect(due.record.idToken).toBe('id-token-rt-0');
    expect(due.setCookie).toBeDefined(); // the rotated refresh token goes back to the browser
    expect(provider.presented).toEqual(['rt-0']);
    // No refresh loop on the spent token: neither the new cookie nor the old one calls again.
    valid(await sessions.resolve(due.setCookie!));
    clock.advance(5_000);
    expect(valid(await sessions.resolve(cookie)).setCookie).toBe(due.setCookie);
    expect(provider.presented).toEqual(['rt-0']);
    clock.advance(16_000); // past the ID token's expiry
    expect(await sessions.resolve(due.setCookie!)).toEqual({ kind: 'none', reason: 'id_token_expired' });
    expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'id_token_expired' });
    expect(provider.presented).toEqual(['rt-0']);
  });

  it('ends the session at once when the ID token had already expired', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    provider.withoutIdToken = true;
    clock.advance(601_000);
    expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'refresh_refused' });
    expect(provider.presented).toEqual(['rt-0']);
  });
});

describe('a session without a refresh token', () => {
  it('is served until its ID token expires, then ends as id_token_expired without calling the provider', async () => {
    const sessions = service();
    const { cookie } = await sessions.create({ ...provider.tokens('unused'), refreshToken: undefined });
    clock.advance(600_000 - 10_000); // inside the skew: nothing to refresh with
    valid(await sessions.resolve(cookie));
    clock.advance(11_000);
    expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'id_token_expired' });
    expect(provider.presented).toEqual([]);
  });
});

describe('the provider-call budget', () => {
  it('allows one session ten provider calls a minute, counts and logs the refusals, and renews each minute', async () => {
    let throttled = 0;
    const events: SessionEvents = {
      refresh() {},
      lockWait() {},
      storeError() {},
      degraded() {},
      throttled: () => throttled++,
    };
    const logs = new LogCapture();
    const sessions = service({ events, log: createLogger({ level: 'warn', destination: logs }) });
    const { cookie } = await sessions.create(provider.tokens('rt-0'));
    clock.advance(601_000);
    provider.failWith = new RefreshError('transient', 'HTTP 503');
    for (let i = 0; i < 15; i++) {
      await expect(sessions.resolve(cookie)).rejects.toMatchObject({ status: 503 });
    }
    expect(provider.presented).toHaveLength(10);
    expect(throttled).toBe(5);
    expect(
      logs.records().filter((r) => String(r['msg']).includes('provider calls for the minute')),
    ).toHaveLength(1);
    clock.advance(60_000);
    provider.failWith = undefined;
    valid(await sessions.resolve(cookie));
    expect(provider.presented).toHaveLength(11);
  });
});

describe('the memory budget', () => {
  const groups = Array.from({ length: 150 }, (_, i) => `platform-team-${String(i).padStart(26, '0')}`);
  const bigTokens = (rt: string) => {
    const tokens = provider.tokens(rt);
    return {
      ...tokens,
      idToken: `${tokens.idToken}.${'x'.repeat(8000)}`,
      claims: { ...tokens.claims, groups },
    };
  };
  const bytesOf = (memory: MemoryBudget, name: string) => memory.stats().find((s) => s.name === name)!;

  it('holds no more than its bytes however many sessions there are; an evicted session is read from the store again, not lost', async () => {
    const memory = new MemoryBudget(512 * 1024);
    // 200 sessions of one user: above MAX_SESSIONS_PER_USER's default, which is not what this is about.
    const sessions = service({ memory, config: { ...config, maxSessionsPerUser: 1_000 } });
    const cookies: string[] = [];
    for (let i = 0; i < 200; i++) {
      cookies.push((await sessions.create(bigTokens(`rt-big-${i}`))).cookie);
      expect(memory.usedBytes).toBeLessThanOrEqual(memory.maxBytes);
    }
    expect(bytesOf(memory, 'sessions').evictions).toBeGreaterThan(100);
    for (const cookie of cookies) {
      const r = valid(await sessions.resolve(cookie));
      expect(r.record.identity.groups).toHaveLength(150);
      expect(memory.usedBytes).toBeLessThanOrEqual(memory.maxBytes);
    }
    expect(provider.presented).toEqual([]); // re-read from the store, never refreshed for it
  });

  it('keeps each session once: one entry holding its record, hot resolution and answer headers', async () => {
    const memory = new MemoryBudget(64 * 1024 * 1024);
    const sessions = service({ memory });
    const { cookie } = await sessions.create(bigTokens('rt-0'));
    const r = valid(await sessions.resolve(cookie));
    const before = bytesOf(memory, 'sessions').bytes;
    const idToken = r.record.idToken;
    const groups = r.record.identity.groups.join(',');
    const headers = sessions.replyHeaders(r, () => [
      'Authorization',
      `Bearer ${r.record.idToken}`,
      'X-Auth-Request-Groups',
      groups,
    ]);
    expect(sessions.replyHeaders(r, () => ['built again'])).toBe(headers);
    const stats = bytesOf(memory, 'sessions');
    expect(stats.entries).toBe(1);
    // The headers are charged to the session's entry, the ID token in them not a second time: the
    // record's token is now a view into the Authorization value, with the same content; and the
    // record's cookie is the unsealed cookie's key (charged to the cookies cache).
    expect(r.record.idToken).toBe(idToken);
    expect(stats.bytes - before).toBeGreaterThan(groups.length - r.record.cookie.length);
    expect(stats.bytes - before).toBeLessThan(groups.length + idToken.length / 2);
    // … and the whole session (ID token, 150 groups, headers) is charged about once: not five
    // copies. (Plus the group-names pool's entry for each of the names it brought.)
    expect(memory.usedBytes).toBeLessThan(3 * (8000 + 150 * 40) + 4000 + 150 * (80 + 16 + 40));
    expect(bytesOf(memory, 'cookies').entries).toBe(1);
  });

  it('keeps one copy of each group name for all the sessions in the group, and charges each session only its pointers', async () => {
    // Ten users in the same 150 groups, and ten of as many groups of the same lengths, each their own.
    const charged = async (nameOf: (user: number, group: number) => string) => {
      const memory = new MemoryBudget(64 * 1024 * 1024);
      const sessions = service({ memory, config: { ...config, maxSessionsPerUser: 1_000 } });
      const records = [];
      for (let u = 0; u < 10; u++) {
        const tokens = provider.tokens(`rt-${u}`);
        const own = groups.map((_, g) => nameOf(u, g));
        const { cookie } = await sessions.create({ ...tokens, claims: { ...tokens.claims, groups: own } });
        records.push(valid(await sessions.resolve(cookie)).record);
      }
      return { sessions: bytesOf(memory, 'sessions').bytes, names: bytesOf(memory, 'group-names'), records };
    };
    const shared = await charged((_, g) => groups[g] as string);
    const own = await charged((u, g) => `${String(u).padStart(2, '0')}${(groups[g] as string).slice(2)}`);
    expect(shared.names.entries).toBe(150);
    expect(own.names.entries).toBe(1500);
    // Same contents as the claims said, whoever holds the copies.
    expect(shared.records.map((r) => r.identity.groups)).toEqual(Array.from({ length: 10 }, () => groups));
    // Each session charges pointers; the pool charges each name once.
    const nameBytes = 150 * (16 + 40);
    expect(own.sessions).toBe(shared.sessions);
    expect(shared.sessions + shared.names.bytes).toBeLessThan(own.sessions + own.names.bytes - 9 * nameBytes);
  });

  /** The bytes of the distinct group names the sessions hold, as the budget estimates strings. */
  const heldNameBytes = (records: readonly { identity: { groups: readonly string[] } }[]) =>
    [...new Set(records.flatMap((r) => r.identity.groups))].reduce((n, g) => n + 16 + g.length, 0);

  it('counts every name a session holds, however many unique names a provider sends: the pool stops at its share and gives up nothing', async () => {
    const memory = new MemoryBudget(4 * 1024 * 1024);
    const sessions = service({ memory, config: { ...config, maxSessionsPerUser: 1_000 } });
    const cookies: string[] = [];
    for (let u = 0; u < 12; u++) {
      const tokens = provider.tokens(`rt-${u}`);
      const own = Array.from(
        { length: 2_000 },
        (_, g) => `u${String(u).padStart(3, '0')}-${String(g).padStart(24, '0')}`,
      );
      const { cookie } = await sessions.create({ ...tokens, claims: { ...tokens.claims, groups: own } });
      valid(await sessions.resolve(cookie));
      cookies.push(cookie);
      // What the service still holds (a hot session is one whose entry is kept).
      const held = cookies.flatMap((c) => sessions.peekHot(c)?.record ?? []);
      expect(held.length).toBeGreaterThan(0);
      expect(memory.usedBytes).toBeGreaterThan(heldNameBytes(held));
      expect(memory.usedBytes).toBeLessThanOrEqual(memory.maxBytes);
    }
    const pool = bytesOf(memory, 'group-names');
    expect(pool.evictions).toBe(0);
    expect(pool.bytes).toBeLessThanOrEqual(0.04 * memory.maxBytes);
    expect(pool.entries).toBeLessThan(12 * 2_000); // full: the later names stay their sessions' own
  });

  it('still counts a session’s names after its refresh, with or without a new ID token', async () => {
    const own = Array.from({ length: 2_000 }, (_, g) => `r-${String(g).padStart(27, '0')}`);
    // The provider's tokens, at login and at every refresh, name these groups.
    const tokensOf = provider.tokens.bind(provider);
    provider.tokens = (rt: string) => {
      const t = tokensOf(rt);
      return { ...t, claims: { ...t.claims, groups: [...own] } };
    };
    for (const withoutIdToken of [false, true]) {
      const memory = new MemoryBudget(64 * 1024 * 1024);
      const sessions = service({ memory });
      const { cookie } = await sessions.create(provider.tokens(`rt-${withoutIdToken}`));
      valid(await sessions.resolve(cookie));
      provider.withoutIdToken = withoutIdToken;
      clock.advance(600_000 - 20_000); // due
      const r = valid(await sessions.resolve(cookie));
      expect(r.refreshed).toBe(true);
      expect(r.record.identity.groups).toEqual(own);
      expect(memory.usedBytes).toBeGreaterThan(heldNameBytes([r.record]));
      // The refreshed record holds the pool's copies, charged there: under any pressure the pool
      // keeps them (a budget shrunk below it evicts everything else first, and then stops).
      memory.setMaxBytes(64 * 1024);
      expect(bytesOf(memory, 'group-names').entries).toBe(2_000);
      expect(bytesOf(memory, 'group-names').evictions).toBe(0);
      provider.withoutIdToken = false;
    }
  });

  it('keeps whatever names a provider sends exactly as sent through the pool: prototype names, empty, control characters, commas, long two-byte ones', async () => {
    const memory = new MemoryBudget(64 * 1024 * 1024);
    const sessions = service({ memory, config: { ...config, maxSessionsPerUser: 1_000 } });
    const hostile = [
      '__proto__',
      'constructor',
      'hasOwnProperty',
      '',
      'a,b',
      '\u0000\r\n',
      'ü'.repeat(300),
      '😀',
      ' x ',
    ];
    for (let u = 0; u < 2; u++) {
      const t = provider.tokens(`rt-${u}`);
      const { cookie } = await sessions.create({ ...t, claims: { ...t.claims, groups: [...hostile] } });
      expect(valid(await sessions.resolve(cookie)).record.identity.groups).toEqual(hostile);
    }
    expect(bytesOf(memory, 'group-names').entries).toBe(hostile.length);
    expect(memory.usedBytes).toBeLessThanOrEqual(memory.maxBytes);
  });

  it('charges a kept audit who-part for the two-byte characters the users’ names may have', async () => {
    const memory = new MemoryBudget(64 * 1024 * 1024);
    const sessions = service({ memory });
    const groups = Array.from({ length: 20 }, (_, i) => `группа-разработки-${i}-ж`);
    const t = provider.tokens('rt-0');
    const { cookie } = await sessions.create({ ...t, claims: { ...t.claims, groups } });
    const r = valid(await sessions.resolve(cookie));
    const before = bytesOf(memory, 'sessions').bytes;
    const part = sessions.auditWho(r, () => `,"groups":${JSON.stringify(r.record.identity.groups)}`);
    expect(part.length).toBeGreaterThan(256);
    expect(part.length).toBeLessThanOrEqual(1024);
    expect(bytesOf(memory, 'sessions').bytes - before).toBeGreaterThanOrEqual(2 * part.length);
  });

  it('keeps the audit stream’s who-part with the hot slot: made once, charged to the entry, gone with the slot', async () => {
    const memory = new MemoryBudget(64 * 1024 * 1024);
    const sessions = service({ memory });
    const { cookie } = await sessions.create(bigTokens('rt-0'));
    const r = valid(await sessions.resolve(cookie));
    const before = bytesOf(memory, 'sessions').bytes;
    let built = 0;
    const who = () => {
      built++;
      return `,"groups":${JSON.stringify(r.record.identity.groups)}`;
    };
    // 150 groups make a part too long to keep: made each time, never charged.
    expect(sessions.auditWho(r, who)).toBe(sessions.auditWho(r, who));
    expect(built).toBe(2);
    expect(bytesOf(memory, 'sessions').bytes).toBe(before);
    const short = () => {
      built++;
      return `,"groups":${JSON.stringify(r.record.identity.groups.slice(0, 3))}`;
    };
    built = 0;
    const part = sessions.auditWho(r, short);
    expect(sessions.auditWho(r, short)).toBe(part);
    expect(built).toBe(1);
    expect(bytesOf(memory, 'sessions').bytes - before).toBeGreaterThanOrEqual(part.length);
    // A resolution that is not the slot's (ended, replaced) gets its part made afresh, never kept.
    expect(await sessions.end({ sub: r.record.u as string, session: r.ref })).toBe(true);
    sessions.auditWho(r, short);
    expect(built).toBe(2);
  });
});

describe('the cold path (issue 15): a session past its hot window', () => {
  /** The store, recording which session records were read whole and which only checked. */
  const counting = (inner: Store) => {
    const reads = { whole: 0, checked: 0, unchanged: 0 };
    const proxy = new Proxy(inner, {
      get(target, name) {
        if (name === 'get')
          return (key: string) => {
            if (key.startsWith('s:')) reads.whole++;
            return target.get(key);
          };
        if (name === 'getIfChanged')
          return async (key: string, tail: string) => {
            const value = await target.getIfChanged(key, tail);
            if (key.startsWith('s:')) {
              reads.checked++;
              if (value === false) reads.unchanged++;
            }
            return value;
          };
        return bound(target, name);
      },
    });
    return { store: proxy, reads };
  };

  it('checks a session it holds with the store without the record crossing the wire, and reads a record another replica changed anew', async () => {
    const { store: seen, reads } = counting(store);
    const a = service();
    const b = service({ store: seen });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    const first = valid(await b.resolve(cookie));
    expect(reads).toEqual({ whole: 1, checked: 0, unchanged: 0 });
    clock.advance(30_001); // past the hot window
    const second = valid(await b.resolve(cookie));
    expect(second.record).toBe(first.record);
    expect(reads).toEqual({ whole: 1, checked: 1, unchanged: 1 });
    // Replica a refreshes the session (its ID token is due): b must see the new record.
    clock.advance(600_000);
    const refreshed = valid(await a.resolve(cookie));
    expect(refreshed.refreshed).toBe(true);
    const third = valid(await b.resolve(refreshed.setCookie ?? cookie));
    expect(third.record.idToken).toBe(refreshed.record.idToken);
    expect(third.record.idToken).not.toBe(first.record.idToken);
    expect(reads.checked - reads.unchanged).toBeGreaterThanOrEqual(1);
    expect(provider.presented).toEqual(['rt-0']);
  });

  it('never answers from a held record once the session was signed out on another replica', async () => {
    const { store: seen } = counting(store);
    const a = service();
    const b = service({ store: seen });
    const { cookie } = await a.create(provider.tokens('rt-0'));
    valid(await b.resolve(cookie));
    await a.destroy(cookie);
    clock.advance(30_001); // past the hot window
    expect(await b.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
  });
});

describe('one token chain per user (Dex keeps one refresh token per user and client)', () => {
  it('a second login’s refresh token becomes the chain: the first browser refreshes with it, and the token it replaced is ended', async () => {
    const sessions = service();
    const { cookie: a } = await sessions.create(provider.tokens('rt-a'));
    clock.advance(60_000);
    const { cookie: b } = await sessions.create(provider.tokens('rt-b'));
    expect(provider.revoked).toEqual(['rt-a']);
    clock.advance(600_000 - 60_000);
    const first = valid(await sessions.resolve(a)); // A's token is due: B's login left a fresh one
    expect(provider.presented).toEqual([]);
    expect(first.setCookie).toBeDefined(); // A's cookie now carries the chain's refresh token
    const carried = await new Sealer(config.cookieSecrets).unseal<SessionCookieData>(first.setCookie!);
    expect(carried?.rt).toBe('rt-b');
    clock.advance(60_000); // now the chain's token is due too
    const again = valid(await sessions.resolve(first.setCookie!));
    expect(provider.presented).toEqual(['rt-b']);
    valid(await sessions.resolve(b));
    expect(provider.presented).toEqual(['rt-b']); // one grant for both browsers
    expect(again.record.idToken).toBe('id-token-rt-1');
  });

  it('two replicas refreshing two browsers of one user at once make exactly one grant, and neither replays a rotated token', async () => {
    const one = service();
    const two = service();
    const { cookie: a } = await one.create(provider.tokens('rt-a'));
    const { cookie: b } = await two.create(provider.tokens('rt-b'));
    clock.advance(600_000);
    const results = await Promise.all([one.resolve(a), two.resolve(b), two.resolve(a), one.resolve(b)]);
    for (const r of results) valid(r);
    expect(provider.presented).toEqual(['rt-b']);
    clock.advance(600_000);
    const later = await Promise.all([
      two.resolve(valid(results[0]!).setCookie!),
      one.resolve(valid(results[1]!).setCookie!),
    ]);
    for (const r of later) valid(r);
    expect(provider.presented).toEqual(['rt-b', 'rt-1']);
  });

  it('signing out one browser moves the chain on: the other stays signed in, the signed-out cookie’s token is spent, not revoked', async () => {
    const sessions = service();
    const { cookie: a } = await sessions.create(provider.tokens('rt-a'));
    const { cookie: b } = await sessions.create(provider.tokens('rt-b'));
    const revokedAtLogin = [...provider.revoked];
    await sessions.destroy(b);
    expect(provider.revoked).toEqual(revokedAtLogin); // nothing more revoked…
    expect(provider.presented).toEqual(['rt-b']); // … the chain's token was spent for a new one
    expect(await sessions.resolve(b)).toEqual({ kind: 'none', reason: 'signed_out' });
    valid(await sessions.resolve(a));
    clock.advance(600_000);
    const renewed = valid(await sessions.resolve(a));
    expect(provider.presented).toEqual(['rt-b', 'rt-1']); // A goes on with the moved-on chain
    expect(renewed.record.idToken).toBe('id-token-rt-2');
  });

  it('signing out the last browser revokes the chain’s token; the next login starts a new chain', async () => {
    const sessions = service();
    const { cookie: a } = await sessions.create(provider.tokens('rt-a'));
    const { cookie: b } = await sessions.create(provider.tokens('rt-b'));
    await sessions.destroy(b);
    await sessions.destroy(a);
    expect(provider.revoked).toEqual(['rt-a', 'rt-1']);
    const { cookie: c } = await sessions.create(provider.tokens('rt-c'));
    expect(provider.revoked).toEqual(['rt-a', 'rt-1']); // nothing was left to replace
    clock.advance(600_000);
    valid(await sessions.resolve(c));
    expect(provider.presented.at(-1)).toBe('rt-c');
  });

  it('a signed-out cookie whose tombstones are lost cannot join the chain the other browser goes on with', async () => {
    const a = service();
    const { cookie: kept } = await a.create(provider.tokens('rt-a'));
    const { cookie: other } = await a.create(provider.tokens('rt-b'));
    // The signed-out browser had caught up with the chain before it left.
    clock.advance(600_000);
    const caughtUp = valid(await a.resolve(kept)).setCookie!;
    valid(await a.resolve(other));
    await a.destroy(caughtUp);
    const data = await new Sealer(config.cookieSecrets).unseal<SessionCookieData>(caughtUp);
    await store.del(`so:${deriveSessionKeys(data!.sid).lookup}`); // the store lost the tombstone
    const presentedBefore = provider.presented.length;
    const fresh = service(); // a replica that never saw the sign-out
    expect(await fresh.resolve(caughtUp)).toEqual({ kind: 'none', reason: 'refresh_refused' });
    expect(provider.presented).toHaveLength(presentedBefore); // refused without replaying its token
    valid(await fresh.resolve(valid(await a.resolve(other)).setCookie ?? other));
  });
});

describe('a user’s sessions (the store layout for the sessions page, the admin API and back-channel logout)', () => {
  const tokensFor = (rt: string, sub: string, sid?: string) => {
    const tokens = provider.tokens(rt);
    return { ...tokens, claims: { ...tokens.claims, sub, ...(sid ? { sid } : {}) } };
  };

  it('lists a user’s sessions with when they were created and last seen, user agent, client address and host, marking the current one', async () => {
    const sessions = service();
    const one = await sessions.create(tokensFor('rt-1a', 'jane'), {
      host: 'grafana.example.com',
      userAgent: 'Firefox/140',
      clientAddress: '203.0.113.7',
    });
    clock.advance(1_000);
    const two = await sessions.create(tokensFor('rt-1b', 'jane'), {
      userAgent: 'curl/8',
      clientAddress: '198.51.100.2',
    });
    await sessions.create(tokensFor('rt-2', 'john'));
    const current = valid(await sessions.resolve(two.cookie)).ref;
    const listed = await sessions.listForUser('jane', current);
    expect(listed).toHaveLength(2);
    expect(listed.find((s) => s.current)).toMatchObject({
      userAgent: 'curl/8',
      clientAddress: '198.51.100.2',
    });
    expect(listed.find((s) => !s.current)).toMatchObject({
      userAgent: 'Firefox/140',
      clientAddress: '203.0.113.7',
      host: 'grafana.example.com',
      created: one.sessionEnd - config.sessionTtlMs,
      sessionEnd: one.sessionEnd,
    });
    expect(await sessions.listForUser('nobody')).toEqual([]);
  });

  it('notes when each session was last seen, at most once per interval, for the list', async () => {
    const sessions = service();
    const { cookie } = await sessions.create(tokensFor('rt-1', 'jane'));
    const created = (await sessions.listForUser('jane'))[0]!.lastSeen;
    clock.advance(6 * 60_000);
    valid(await sessions.resolve(cookie));
    expect((await sessions.listForUser('jane'))[0]!.lastSeen).toBe(created + 6 * 60_000);
  });

  it('ends one session by reference (from a replica that never saw its cookie); the user’s other session goes on', async () => {
    const a = service();
    const admin = service();
    const { cookie: first } = await a.create(tokensFor('rt-1a', 'jane'));
    const { cookie: second } = await a.create(tokensFor('rt-1b', 'jane'));
    const target = valid(await a.resolve(first)).ref;
    expect(await admin.end({ sub: 'jane', session: target })).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(await a.resolve(first)).toEqual({ kind: 'none', reason: 'signed_out' });
    valid(await a.resolve(second));
    expect((await admin.listForUser('jane')).map((s) => s.ref)).not.toContain(target);
    expect(await admin.end({ sub: 'jane', session: target })).toBe(false);
    expect(await admin.end({ sub: 'john', session: valid(await a.resolve(second)).ref })).toBe(false);
  });

  it('ends every session of a user (sign out everywhere), revoking the chain’s token once; other users stay', async () => {
    const sessions = service();
    const mine = [
      (await sessions.create(tokensFor('rt-1a', 'jane'))).cookie,
      (await sessions.create(tokensFor('rt-1b', 'jane'))).cookie,
    ];
    const theirs = (await sessions.create(tokensFor('rt-2', 'john'))).cookie;
    const revokedBefore = provider.revoked.length;
    expect(await sessions.endAllForUser('jane')).toBe(2);
    for (const cookie of mine)
      expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
    expect(provider.revoked.slice(revokedBefore)).toEqual(['rt-1b']);
    expect(await sessions.listForUser('jane')).toEqual([]);
    valid(await sessions.resolve(theirs));
  });

  it('ends the sessions of one provider session (back-channel logout by sid), and every session of every user', async () => {
    const sessions = service();
    const bySid = (await sessions.create(tokensFor('rt-1a', 'jane', 'idp-session-1'))).cookie;
    const otherSid = (await sessions.create(tokensFor('rt-1b', 'jane', 'idp-session-2'))).cookie;
    const john = (await sessions.create(tokensFor('rt-2', 'john', 'idp-session-3'))).cookie;
    expect(await sessions.endBySid('idp-session-1')).toBe(1);
    expect(await sessions.resolve(bySid)).toEqual({ kind: 'none', reason: 'signed_out' });
    valid(await sessions.resolve(otherSid));
    expect(await sessions.endBySid('idp-session-1')).toBe(0);
    expect(await sessions.endAll()).toBe(2);
    for (const cookie of [otherSid, john]) {
      expect(await sessions.resolve(cookie)).toEqual({ kind: 'none', reason: 'signed_out' });
    }
  });
});

describe('the audit stream’s session events', () => {
  const tokensOf = (rt: string, sub: string, sid?: string) => {
    const tokens = provider.tokens(rt);
    return { ...tokens, claims: { ...tokens.claims, sub, ...(sid ? { sid } : {}) } };
  };
  const recorder = () => {
    const ended: [string | undefined, number, string][] = [];
    const refreshed: [string, string | undefined][] = [];
    const events: SessionEvents = {
      refresh: (result, who) => {
        if (who) refreshed.push([result, who.user]);
      },
      lockWait() {},
      storeError() {},
      degraded() {},
      throttled() {},
      ended: (who, count, via) => ended.push([who.sub, count, via]),
    };
    return { events, ended, refreshed };
  };

  it('says how every session ended: sign-out, idle, by reference, all of a user’s, by provider sid, all', async () => {
    const idle = loadConfig({ ...settings, SESSION_IDLE_TIMEOUT: '10m' });
    const r = recorder();
    const sessions = service({ config: idle, events: r.events });
    await sessions.destroy((await sessions.create(tokensOf('rt-1', 'jane'))).cookie);
    const idled = (await sessions.create(tokensOf('rt-2', 'ann'))).cookie;
    clock.advance(10 * 60_000 + 1);
    expect(await sessions.resolve(idled)).toEqual({ kind: 'none', reason: 'idle' });
    const one = valid(await sessions.resolve((await sessions.create(tokensOf('rt-3', 'joe'))).cookie)).ref;
    expect(await sessions.end({ sub: 'joe', session: one })).toBe(true);
    await sessions.create(tokensOf('rt-4a', 'kim'));
    await sessions.create(tokensOf('rt-4b', 'kim'));
    expect(await sessions.endAllForUser('kim')).toBe(2);
    await sessions.create(tokensOf('rt-5', 'lou', 'idp-1'));
    expect(await sessions.endBySid('idp-1')).toBe(1);
    await sessions.create(tokensOf('rt-6', 'max'));
    expect(await sessions.endAll()).toBe(1);
    expect(r.ended).toEqual([
      ['jane', 1, 'sign-out'],
      ['ann', 1, 'idle'],
      ['joe', 1, 'session'],
      ['kim', 2, 'user'],
      ['lou', 1, 'provider-sid'],
      ['max', 1, 'all'],
    ]);
  });

  it('names whose session a provider refresh was for, made or refused, once per call', async () => {
    const r = recorder();
    const sessions = service({ events: r.events });
    // The fake provider refreshes as user-1: a session of another sub would end (OIDC Core §12.2).
    const { cookie } = await sessions.create(tokensOf('rt-0', 'user-1'));
    clock.advance(600_000);
    await Promise.all([sessions.resolve(cookie), sessions.resolve(cookie), sessions.resolve(cookie)]);
    expect(r.refreshed).toEqual([['ok', 'a@example.com']]);
    provider.failWith = new RefreshError('terminal', 'revoked', 400, 'invalid_grant');
    clock.advance(600_000);
    const current = (await sessions.peekRecord(cookie))?.cookie ?? cookie;
    expect((await sessions.resolve(current)).kind).toBe('none');
    expect(r.refreshed).toEqual([
      ['ok', 'a@example.com'],
      ['terminal', 'a@example.com'],
    ]);
  });
});
