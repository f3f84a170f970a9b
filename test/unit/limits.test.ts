import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOriginalRequest } from '../../src/forward/original.ts';
import { ProxyTrust } from '../../src/forward/trust.ts';
import { silentLogger } from '../../src/log.ts';
import { LoopBreaker } from '../../src/security/loopBreaker.ts';
import { clientKey, LoginRateLimiter } from '../../src/security/rateLimiter.ts';
import { CookieNames } from '../../src/session/cookieNames.ts';
import { MemoryStore } from '../../src/session/memoryStore.ts';
import { createRedisClient, RedisStore } from '../../src/session/redisStore.ts';
import { type Store, StoreUnavailableError } from '../../src/session/store.ts';
import { type RedisServer, startRedis } from '../support/redis.ts';

class FakeClock {
  t = 1_700_000_000_000;
  now(): number {
    return this.t;
  }
}

/** A store whose every call fails as an unreachable Redis does. */
const downStore = new Proxy({} as Store, {
  get: (_t, prop) =>
    prop === 'kind'
      ? 'redis'
      : () => Promise.reject(new StoreUnavailableError('redis: connection is closed')),
});

describe('the login rate limiter', () => {
  const settings = { burst: 5, intervalMs: 6_000 };

  it('allows the burst at once, then one attempt per interval, and says when to retry', async () => {
    const clock = new FakeClock();
    clock.t = 6_000 * 283_333_334 + 1_000; // 1 s into a 6 s slot
    const limiter = new LoginRateLimiter({
      store: new MemoryStore({ clock }),
      settings,
      clock,
      log: silentLogger(),
    });
    for (let i = 0; i < 5; i++) expect(await limiter.take('start', '203.0.113.1')).toEqual({ allowed: true });
    expect(await limiter.take('start', '203.0.113.1')).toEqual({ allowed: false, retryAfterSeconds: 5 });
    clock.t += 5_000;
    expect((await limiter.take('start', '203.0.113.1')).allowed).toBe(true);
    expect((await limiter.take('start', '203.0.113.1')).allowed).toBe(false);
    clock.t += 6_000;
    expect((await limiter.take('start', '203.0.113.1')).allowed).toBe(true);
    expect((await limiter.take('start', '203.0.113.1')).allowed).toBe(false);
    // Idle for burst × interval: the whole burst is back, and no more.
    clock.t += 5 * 6_000;
    let allowed = 0;
    for (let i = 0; i < 10; i++) if ((await limiter.take('start', '203.0.113.1')).allowed) allowed++;
    expect(allowed).toBe(5);
  });

  it('keeps clients and scopes apart', async () => {
    const clock = new FakeClock();
    const limiter = new LoginRateLimiter({
      store: new MemoryStore({ clock }),
      settings,
      clock,
      log: silentLogger(),
    });
    for (let i = 0; i < 5; i++) await limiter.take('start', '203.0.113.2');
    expect((await limiter.take('start', '203.0.113.2')).allowed).toBe(false);
    expect((await limiter.take('callback', '203.0.113.2')).allowed).toBe(true);
    expect((await limiter.take('start', '203.0.113.3')).allowed).toBe(true);
  });

  it('is off with a burst of 0', async () => {
    const clock = new FakeClock();
    const limiter = new LoginRateLimiter({
      store: downStore,
      settings: { burst: 0, intervalMs: 6_000 },
      clock,
      log: silentLogger(),
    });
    for (let i = 0; i < 50; i++) expect((await limiter.take('start', '203.0.113.4')).allowed).toBe(true);
  });

  it('counts in-process while the store is unreachable', async () => {
    const clock = new FakeClock();
    const limiter = new LoginRateLimiter({ store: downStore, settings, clock, log: silentLogger() });
    const results = [];
    for (let i = 0; i < 7; i++) results.push((await limiter.take('start', '203.0.113.5')).allowed);
    expect(results).toEqual([true, true, true, true, true, false, false]);
  });

  describe('on Redis, with replicas racing', () => {
    let redis: RedisServer;
    const stores: RedisStore[] = [];
    beforeAll(async () => {
      redis = await startRedis();
      for (let i = 0; i < 3; i++) {
        const store = new RedisStore(createRedisClient({ mode: 'single', url: redis.url }));
        await store.ready(5_000);
        stores.push(store);
      }
    });
    afterAll(async () => {
      for (const store of stores) await store.close();
      await redis?.close();
    });

    it('never lets concurrent attempts on three replicas exceed the burst', async () => {
      const clock = new FakeClock();
      const limiters = stores.map(
        (store) =>
          new LoginRateLimiter({
            store,
            settings: { burst: 20, intervalMs: 60_000 },
            clock,
            log: silentLogger(),
            keySecret: 'the cookie secret every replica shares',
          }),
      );
      const attempts = Array.from({ length: 90 }, (_, i) => limiters[i % 3]!.take('start', '198.51.100.7'));
      const results = await Promise.all(attempts);
      expect(results.filter((r) => r.allowed)).toHaveLength(20);
    });

    it('Redis holds no client address: only a keyed hash of its bucket', async () => {
      const clock = new FakeClock();
      const client = createRedisClient({ mode: 'single', url: redis.url });
      try {
        const limiter = (keySecret: string) =>
          new LoginRateLimiter({ store: stores[0]!, settings, clock, log: silentLogger(), keySecret });
        const a = limiter('secret-a');
        await a.take('start', '192.0.2.77');
        await a.take('callback', '2001:db8:77:1::5');
        const keys = (await client.keys('*')).join('\n');
        for (const clear of ['192.0.2.77', '192.0.2', '2001:db8:77', 'c000024d'])
          expect(keys).not.toContain(clear);
        expect(keys).toMatch(/rl:start:[\w-]{32}:\d+/);
        // The same secret (another replica) finds the same bucket; another secret does not.
        expect(limiter('secret-a').storeKey('start', '192.0.2.77')).toBe(a.storeKey('start', '192.0.2.77'));
        expect(limiter('secret-b').storeKey('start', '192.0.2.77')).not.toBe(
          a.storeKey('start', '192.0.2.77'),
        );
        expect(a.storeKey('start', '2001:db8:77:1::5')).toBe(a.storeKey('start', '2001:db8:77:1::6'));
      } finally {
        client.disconnect();
      }
    });
  });
});

describe('client keys', () => {
  it.each([
    ['203.0.113.9', '203.0.113.9'],
    ['::ffff:203.0.113.9', '203.0.113.9'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
  ])('%s counts as %s', (ip, key) => {
    expect(clientKey(ip)).toBe(key);
  });

  it('hashes anything that is not an address into a bounded key', () => {
    expect(clientKey('unknown')).toMatch(/^x[\w-]{22}$/);
  });
});

describe('the client address from X-Forwarded-For', () => {
  const trust = new ProxyTrust(['127.0.0.0/8', '10.0.0.0/8']);
  const clientIp = (xff: string, peer = '127.0.0.1') =>
    readOriginalRequest(
      {
        headers: { host: 'a.example.com', 'x-forwarded-for': xff },
        method: 'GET',
        url: '/auth',
        socket: { remoteAddress: peer },
      } as unknown as IncomingMessage,
      trust,
    ).clientIp;

  it.each([
    ['the right-most untrusted entry', '198.51.100.1, 203.0.113.7, 10.0.0.5', '203.0.113.7'],
    ['an entry with a port', '203.0.113.7:51234, 10.0.0.5', '203.0.113.7'],
    ['a bracketed IPv6 entry with a port', '[2001:db8::7]:443', '2001:db8::7'],
    ['the left-most when all are trusted', '10.9.9.9, 10.0.0.5', '10.9.9.9'],
    ['the nearest trusted proxy when an entry is no address', '203.0.113.7, garbage, 10.0.0.5', '10.0.0.5'],
    ['the peer when the last entry is no address', 'unknown', '127.0.0.1'],
  ])('is %s', (_name, xff, expected) => {
    expect(clientIp(xff)).toBe(expected);
  });

  it('is the peer for an untrusted peer, whatever it sends', () => {
    expect(clientIp('203.0.113.7', '198.51.100.50')).toBe('198.51.100.50');
  });
});

describe('the loop breaker', () => {
  const cookies = new CookieNames({
    cookieName: '_forward_auth',
    cookieDomain: undefined,
    cookieSecure: true,
  });
  const breaker = new LoopBreaker({ limit: 3, windowMs: 120_000 }, cookies);
  const target = 'https://app.example.com/dash?x=1';
  const header = (sets: string[]) => sets.map((s) => s.split(';')[0]).join('; ');

  function complete(times: number, start: number, gap: number): { cookie: string | undefined; t: number } {
    let cookie: string | undefined;
    let t = start;
    for (let i = 0; i < times; i++) {
      cookie = header(breaker.completed(cookie, target, t));
      t += gap;
    }
    return { cookie, t };
  }

  it('names its cookie after the session cookie, __Host- prefixed like it', () => {
    expect(breaker.cookieName).toBe('__Host-_forward_auth_loop');
    expect(breaker.completed(undefined, target, 0)[0]).toMatch(
      /^__Host-_forward_auth_loop=[0-9a-f]{16}\.1\.0; Path=\/; Max-Age=120; HttpOnly; Secure; SameSite=Lax$/,
    );
  });

  it('reports a loop after the limit of completed logins for one page, close together', () => {
    const { cookie, t } = complete(3, 1_000_000, 10_000);
    expect(breaker.check(cookie, target, t)).toEqual({ looping: true, count: 3 });
    // The query does not matter; another page does.
    expect(breaker.check(cookie, 'https://app.example.com/dash?x=2', t).looping).toBe(true);
    expect(breaker.check(cookie, 'https://app.example.com/other', t).looping).toBe(false);
  });

  it('forgets logins further apart than the window', () => {
    const { cookie, t } = complete(3, 1_000_000, 130_000);
    expect(breaker.check(cookie, target, t).looping).toBe(false);
  });

  it('starts afresh for a page once the loop page was shown', () => {
    const { cookie, t } = complete(3, 1_000_000, 1_000);
    const after = header(breaker.forget(cookie, target, t));
    expect(breaker.check(after, target, t).looping).toBe(false);
  });

  it('is off with a limit of 0', () => {
    const off = new LoopBreaker({ limit: 0, windowMs: 120_000 }, cookies);
    expect(off.completed(undefined, target, 0)).toEqual([]);
    expect(off.check('__Host-_forward_auth_loop=0123456789abcdef.99.0', target, 0).looping).toBe(false);
  });
});
