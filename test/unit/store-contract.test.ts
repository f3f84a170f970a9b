import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/session/memoryStore.ts';
import { createRedisClient, RedisStore } from '../../src/session/redisStore.ts';
import { type Store, StoreUnavailableError } from '../../src/session/store.ts';
import { UserKeyring } from '../../src/session/userKeys.ts';
import { type Chain, LIST_MARGIN, UserStore } from '../../src/session/users.ts';
import { type RedisCluster, startRedisCluster } from '../support/cluster.ts';
import { type RedisServer, startRedis } from '../support/redis.ts';

/** One contract, every store (STYLE 7): the memory store and the Redis store behave the same. */
function storeContract(name: string, make: () => Store, wait: (ms: number) => Promise<void>) {
  describe(`${name} store contract`, () => {
    let store: Store;
    beforeAll(async () => {
      store = make();
      if (store instanceof RedisStore) expect(await store.ready(5_000)).toBe(true);
    });
    afterAll(async () => {
      await store.close();
    });
    const key = (k: string) => `${name}-${k}-${Math.random().toString(36).slice(2)}`;

    it('returns null for a key that was never set', async () => {
      expect(await store.get(key('missing'))).toBeNull();
    });

    it('returns what was set until its time to live runs out', async () => {
      const k = key('ttl');
      await store.set(k, 'value', 150);
      expect(await store.get(k)).toBe('value');
      await wait(300);
      expect(await store.get(k)).toBeNull();
    });

    it('sends a value only when it no longer ends with the tail the caller holds', async () => {
      const k = key('tail');
      expect(await store.getIfChanged(k, 'tag-1')).toBeNull();
      await store.set(k, 'v1.body-tag-1', 10_000);
      expect(await store.getIfChanged(k, 'tag-1')).toBe(false);
      expect(await store.getIfChanged(k, 'tag-0')).toBe('v1.body-tag-1');
      expect(await store.getIfChanged(k, '')).toBe('v1.body-tag-1');
      await store.set(k, 'v1.other-tag-2', 10_000);
      expect(await store.getIfChanged(k, 'tag-1')).toBe('v1.other-tag-2');
      await store.del(k);
      expect(await store.getIfChanged(k, 'tag-2')).toBeNull();
    });

    it('sets only when absent and says whether it did', async () => {
      const k = key('nx');
      expect(await store.setIfAbsent(k, 'a', 10_000)).toBe(true);
      expect(await store.setIfAbsent(k, 'b', 10_000)).toBe(false);
      expect(await store.get(k)).toBe('a');
    });

    it('deletes only when the value matches (lock release by its owner)', async () => {
      const k = key('cad');
      await store.set(k, 'owner-1', 10_000);
      expect(await store.deleteIfEquals(k, 'owner-2')).toBe(false);
      expect(await store.get(k)).toBe('owner-1');
      expect(await store.deleteIfEquals(k, 'owner-1')).toBe(true);
      expect(await store.get(k)).toBeNull();
    });

    it('extends a lease only for its owner', async () => {
      const k = key('lease');
      await store.set(k, 'owner', 200);
      expect(await store.expireIfEquals(k, 'intruder', 10_000)).toBe(false);
      expect(await store.expireIfEquals(k, 'owner', 10_000)).toBe(true);
      await wait(350);
      expect(await store.get(k)).toBe('owner');
    });

    it('counts with a time to live set when the counter is created', async () => {
      const k = key('count');
      expect(await store.increment(k, 10_000)).toBe(1);
      expect(await store.increment(k, 10_000)).toBe(2);
      const ttl = await store.ttl(k);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(10_000);
    });

    it('reports -2 as the ttl of a missing key', async () => {
      expect(await store.ttl(key('nokey'))).toBe(-2);
    });

    it('deletes', async () => {
      const k = key('del');
      await store.set(k, 'x', 10_000);
      await store.del(k);
      expect(await store.get(k)).toBeNull();
    });

    it('compare-and-sets: writes only over the expected value, or only when absent', async () => {
      const k = key('cas');
      expect(await store.replaceIfEquals(k, 'x', 'v1', 10_000)).toBe(false);
      expect(await store.get(k)).toBeNull();
      expect(await store.replaceIfEquals(k, null, 'v1', 10_000)).toBe(true);
      expect(await store.replaceIfEquals(k, null, 'v2', 10_000)).toBe(false);
      expect(await store.replaceIfEquals(k, 'v0', 'v2', 10_000)).toBe(false);
      expect(await store.replaceIfEquals(k, 'v1', 'v2', 10_000)).toBe(true);
      expect(await store.get(k)).toBe('v2');
      expect(await store.ttl(k)).toBeGreaterThan(0);
    });

    it('keeps hashes: fields set, read one by one or all at once, deleted; the key goes with its last field', async () => {
      const k = `${key('hash')}:{tag}`;
      expect(await store.hashGetAll(k)).toEqual({});
      expect(await store.hashGet(k, 'a')).toBeNull();
      await store.hashSet(k, 'a', '1', 10_000);
      await store.hashSet(k, 'b', '2', 10_000);
      await store.hashSet(k, 'a', '3', 10_000);
      expect(await store.hashGet(k, 'a')).toBe('3');
      expect(await store.hashGetAll(k)).toEqual({ a: '3', b: '2' });
      await store.hashDelete(k, ['a', 'missing']);
      expect(await store.hashGetAll(k)).toEqual({ b: '2' });
      await store.hashDelete(k, ['b']);
      expect(await store.ttl(k)).toBe(-2);
    });

    it('extends a hash’s time to live to the longest a field asked for, never shortening it', async () => {
      const k = key('hashttl');
      await store.hashSet(k, 'long', '1', 10_000);
      await store.hashSet(k, 'short', '2', 100);
      await wait(250);
      expect(await store.hashGetAll(k)).toEqual({ long: '1', short: '2' });
      const ttl = await store.ttl(k);
      expect(ttl).toBeGreaterThan(9_000);
      const brief = key('hashbrief');
      await store.hashSet(brief, 'f', '1', 150);
      await wait(300);
      expect(await store.hashGetAll(brief)).toEqual({});
    });

    describe('the layout per user (users.ts) on this store', () => {
      const secret = { id: '1', secret: 'contract-cookie-secret-6c1f0e9d2b7a4853' };
      const users = () =>
        new UserStore({
          store,
          keys: new UserKeyring([secret], 'https://dex.example.com/'),
          clock: { now: () => Date.now() },
          sessionTtlMs: 60_000,
        });
      const chain = (rt: string): Chain => ({
        rt,
        tokenExp: Date.now() + 60_000,
        tokenIat: Date.now(),
        at: Date.now(),
      });

      it('lists at most MAX_SESSIONS_PER_USER + the margin of a user’s sessions, the most recently seen, and names the rest as beyond the bound', async () => {
        const u = new UserStore({
          store,
          keys: new UserKeyring([secret], 'https://dex.example.com/'),
          clock: { now: () => Date.now() },
          sessionTtlMs: 60_000,
          maxSessionsPerUser: 3,
        });
        const sub = key('many');
        const until = Date.now() + 60_000;
        const created = 3 + LIST_MARGIN + 10;
        for (let i = 0; i < created; i++) {
          await u.addSession(sub, `s-${i}`, until, { c: 1 });
          await u.noteSeen(sub, `s-${i}`, 1_000 + i, until);
        }
        const listed = await u.sessions(sub);
        expect(listed.length).toBe(3 + LIST_MARGIN);
        expect(listed[0]?.ref).toBe(`s-${created - 1}`);
        const beyond = await u.beyond(sub);
        expect(beyond.length).toBe(created - 3);
        expect(beyond.map((x) => x.ref)).not.toContain(`s-${created - 1}`);
        expect(beyond.map((x) => x.ref)).toContain('s-0');
      });

      it('lists a user’s sessions in one query, by provider sid, and every user; ended or expired sessions drop out', async () => {
        const u = users();
        const sub = key('user');
        const until = Date.now() + 60_000;
        await u.addSession(sub, 'session-a', until, {
          c: 1,
          ua: 'Firefox',
          ip: '203.0.113.7',
          sid: `${sub}-sid`,
        });
        await u.addSession(sub, 'session-b', until, { c: 2 });
        await u.addSession(sub, 'session-gone', Date.now() + 100, { c: 3 });
        await u.noteSeen(sub, 'session-b', 5, until);
        await wait(200);
        const listed = await u.sessions(sub);
        expect(listed.map((x) => x.ref).sort()).toEqual(['session-a', 'session-b']);
        expect(listed.find((x) => x.ref === 'session-a')).toMatchObject({
          userAgent: 'Firefox',
          clientAddress: '203.0.113.7',
        });
        expect(listed.find((x) => x.ref === 'session-b')?.lastSeen).toBe(5);
        expect(await u.lastSeen(sub, 'session-b')).toBe(5);
        expect(await u.sessionsBySid(`${sub}-sid`)).toEqual([{ sub, ref: 'session-a', sessionEnd: until }]);
        expect(await u.users()).toContain(sub);
        await u.removeSession(sub, 'session-a', `${sub}-sid`);
        expect((await u.sessions(sub)).map((x) => x.ref)).toEqual(['session-b']);
        expect(await u.sessionsBySid(`${sub}-sid`)).toEqual([]);
      });

      it('writes the token chain compare-and-set: a write over a chain that changed meanwhile fails', async () => {
        const u = users();
        const sub = key('chain');
        expect(await u.chain(sub)).toBeUndefined();
        expect(await u.writeChain(sub, chain('rt-1'), undefined)).toBe(true);
        const first = await u.chain(sub);
        expect(first?.chain.rt).toBe('rt-1');
        expect(await u.writeChain(sub, chain('rt-login'), 'any')).toBe(true); // a login elsewhere
        expect(await u.writeChain(sub, chain('rt-2'), first)).toBe(false);
        expect((await u.chain(sub))?.chain.rt).toBe('rt-login');
        await u.deleteChainIf(sub, first!.blob); // not the chain any more: kept
        expect((await u.chain(sub))?.chain.rt).toBe('rt-login');
      });
    });

    it('answers ping', async () => {
      expect(await store.ping()).toBe(true);
    });

    it('delivers a published message to every listener of its channel, none after unsubscribing', async () => {
      const channel = key('channel');
      const got: string[] = [];
      const other: string[] = [];
      const stop = store.subscribe(channel, (m) => got.push(m));
      store.subscribe(`${channel}-other`, (m) => other.push(m));
      // A subscription takes effect asynchronously on Redis: publish until it is heard.
      for (let i = 0; i < 50 && got.length === 0; i++) {
        await store.publish(channel, 'hello');
        await wait(20);
      }
      expect(got[0]).toBe('hello');
      expect(other).toEqual([]);
      stop();
      const before = got.length;
      await store.publish(channel, 'after');
      await wait(100);
      expect(got.slice(before)).toEqual([]);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

storeContract('memory', () => new MemoryStore(), sleep);

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
});
storeContract('redis', () => new RedisStore(new Redis(redis.url, { enableAutoPipelining: true })), sleep);

let cluster: RedisCluster;
beforeAll(async () => {
  cluster = await startRedisCluster();
}, 30_000);
afterAll(async () => {
  await cluster?.close();
});
storeContract(
  'redis-cluster',
  () => new RedisStore(createRedisClient({ mode: 'cluster', nodes: cluster.nodes, tls: false })),
  sleep,
);

let protectedRedis: RedisServer;
beforeAll(async () => {
  protectedRedis = await startRedis({ password: 'redis-test-password' });
});
afterAll(async () => {
  await protectedRedis?.close();
});
storeContract(
  'redis-with-password',
  () =>
    new RedisStore(
      createRedisClient({
        mode: 'single',
        url: `redis://127.0.0.1:${protectedRedis.port}`,
        password: 'redis-test-password',
      }),
    ),
  sleep,
);

describe('redis store when Redis is down', () => {
  it('fails fast with StoreUnavailableError instead of hanging or crashing', async () => {
    const down = await startRedis();
    const store = new RedisStore(createRedisClient({ mode: 'single', url: down.url }));
    expect(await store.ready()).toBe(true);
    await store.set('k', 'v', 10_000);
    await down.kill('SIGKILL');
    await expect(store.get('k')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await store.ping()).toBe(false);
    await down.start();
    // Reconnects by itself; the restarted server is empty.
    let value: string | null | undefined;
    for (let i = 0; i < 50 && value === undefined; i++) {
      value = await store.get('k').catch(() => undefined);
      if (value === undefined) await sleep(100);
    }
    expect(value).toBeNull();
    await store.close();
    await down.close();
  });
});

describe('redis store pub/sub across replicas', () => {
  it('reaches another replica, and tells it after Redis restarted that it may have missed messages', async () => {
    const server = await startRedis();
    const a = new RedisStore(createRedisClient({ mode: 'single', url: server.url }));
    const b = new RedisStore(createRedisClient({ mode: 'single', url: server.url }));
    try {
      expect(await a.ready()).toBe(true);
      const heard: string[] = [];
      let gaps = 0;
      b.subscribe(
        'ended',
        (m) => heard.push(m),
        () => gaps++,
      );
      const publishUntilHeard = async (message: string) => {
        for (let i = 0; i < 100 && !heard.includes(message); i++) {
          await a.publish('ended', message).catch(() => undefined);
          await sleep(50);
        }
      };
      await publishUntilHeard('one');
      expect(heard).toContain('one');
      // Live: every message reaches it (what lets the hot cache hold sessions longer).
      expect(b.subscriptionLive()).toBe(true);
      const gapsBefore = gaps;
      await server.kill('SIGKILL');
      for (let i = 0; i < 100 && b.subscriptionLive(); i++) await sleep(20);
      expect(b.subscriptionLive()).toBe(false); // messages published now are lost
      await server.start();
      await publishUntilHeard('two'); // resubscribed by itself
      expect(heard).toContain('two');
      expect(gaps).toBeGreaterThan(gapsBefore);
      expect(b.subscriptionLive()).toBe(true);
    } finally {
      await a.close();
      await b.close();
      await server.close();
    }
  });
});
