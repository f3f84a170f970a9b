import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex, setCookieValue } from '../support/browser.ts';
import { DEMO_USERS, type Dex } from '../support/dex.ts';
import { type RedisServer, waitUntil } from '../support/redis.ts';
import type { ServiceProcess } from '../support/serviceProcess.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { headerValues, type Upstream } from '../support/upstream.ts';

/**
 * High availability with real processes: three dex-forward-auth replicas behind the Traefik
 * emulator (round-robin), one real Redis, and a *strict* Dex stand-in (reusing a rotated refresh
 * token revokes the whole grant, so any double refresh would log the user out).
 */

const TTL = 6;
const SKEW = 2.5;
const users = DEMO_USERS.filter((u) => u.emailVerified).slice(0, 3);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let stack: Stack;
let redis: RedisServer;
let dex: Dex;
let upstream: Upstream;
let replicas: readonly ServiceProcess[];
let appUrl: string;

beforeAll(async () => {
  stack = await startStack({
    dex: { idTokenTtl: TTL, refreshMode: 'strict' },
    // Allowed decisions are not audited here: under load their lines would push the logs this test
    // reads ("draining") out of the captured output.
    env: { REFRESH_SKEW: `${SKEW}s`, SHUTDOWN_DELAY: '2s', SHUTDOWN_TIMEOUT: '5s', AUDIT_ALLOW: 'none' },
    replicas: { count: 3, processes: true, inProcess: false },
  });
  ({ dex, upstream, replicas, appUrl } = stack);
  redis = stack.redis as RedisServer;
}, 60_000);

afterAll(async () => {
  await stack?.close();
});

interface LoggedIn {
  browser: Browser;
  at: number;
}

async function login(user = users[0]!): Promise<LoggedIn> {
  const browser = new Browser({ navigation: true });
  const result = await loginThroughDex(browser, `${appUrl}/start`, user);
  expect(result.final.status).toBe(200);
  return { browser, at: Date.now() };
}
const cookieOf = (b: Browser) => b.cookies(appUrl).find((c) => c.name === '_forward_auth')!.value;
const untilDue = (s: LoggedIn) => sleep(Math.max(0, s.at + (TTL - SKEW) * 1000 + 300 - Date.now()));
const untilExpired = (s: LoggedIn) => sleep(Math.max(0, s.at + TTL * 1000 + 300 - Date.now()));

/** Each user browses sequentially (as a browser tab does) for `ms`; returns every status seen. */
async function browse(sessions: LoggedIn[], ms: number, during?: () => Promise<void>): Promise<number[]> {
  const statuses: number[] = [];
  const until = Date.now() + ms;
  const loops = sessions.map(async (s, i) => {
    let n = 0;
    while (Date.now() < until) {
      const reply = await s.browser.get(`${appUrl}/load/${i}/${n++}`, { accept: 'application/json' });
      statuses.push(reply.status);
      await sleep(10);
    }
  });
  if (during) await during();
  await Promise.all(loops);
  return statuses;
}

describe('three replicas, one Redis', () => {
  it('after expiry, 60 concurrent requests of one session on all replicas cause exactly one refresh and one new cookie', async () => {
    const s = await login();
    const old = cookieOf(s.browser);
    await untilDue(s);
    const before = dex.counts.refreshGrants;
    const replies = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        new Browser().get(`${appUrl}/burst/${i}`, {
          cookie: `_forward_auth=${old}`,
          accept: 'application/json',
        }),
      ),
    );
    const refreshedAt = Date.now();
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 200));
    expect(dex.counts.refreshGrants - before).toBe(1);
    const handed = new Set(replies.map((r) => setCookieValue(r, '_forward_auth')));
    expect(handed.size).toBe(1);
    const fresh = [...handed][0]!;
    expect(fresh).not.toBe(old);

    // Later, a request with the pre-rotation cookie is still served (and handed the new cookie).
    const late = await new Browser().get(`${appUrl}/late`, {
      cookie: `_forward_auth=${old}`,
      accept: 'application/json',
    });
    expect(late.status).toBe(200);
    expect(dex.counts.refreshGrants - before).toBe(1);

    // The next expiry refreshes normally with the new cookie.
    const next = new Browser();
    next.setCookie(appUrl, `_forward_auth=${fresh}; Path=/`);
    await untilDue({ browser: next, at: refreshedAt });
    const again = await next.get(`${appUrl}/next`, { accept: 'application/json' });
    expect(again.status).toBe(200);
    expect(dex.counts.refreshGrants - before).toBe(2);
  });

  it('two browsers of one user, their requests spread over three replicas: both stay signed in, one refresh grant per expiry, no rotated token replayed', async () => {
    const user = users[1]!;
    const a = await login(user);
    const b = await login(user); // the stand-in, like Dex, deletes the first browser's refresh token
    const grants = dex.counts.refreshGrants;
    const errors = dex.counts.tokenErrors;
    const seenFrom = upstream.requests.length;
    // Three ID-token lifetimes of both browsers browsing; Traefik sends each request to the next replica.
    const statuses = await browse([a, b], 3 * TTL * 1000 + 500);
    expect(statuses.length).toBeGreaterThan(50);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    // Strict provider: a replayed rotated token would have revoked the grant and been refused.
    expect(dex.counts.tokenErrors).toBe(errors);
    const renewals = dex.counts.refreshGrants - grants;
    expect(renewals).toBeGreaterThanOrEqual(3);

    const tokensOf = (i: number) =>
      upstream.requests
        .slice(seenFrom)
        .filter((r) => r.url.startsWith(`/load/${i}/`))
        .map((r) => headerValues(r, 'authorization')[0]!.slice('Bearer '.length));
    const first = tokensOf(0);
    const second = tokensOf(1);
    // The browsers share the chain's tokens: after the first browser's own token ran out, both
    // were handed the same ones; every grant made one new token, used by both.
    const chain = [...new Set(second)];
    expect(chain).toHaveLength(renewals + 1);
    expect(new Set(first.slice(first.findIndex((t) => chain.includes(t))))).toEqual(
      new Set(chain.slice(chain.indexOf(first.find((t) => chain.includes(t))!))),
    );
    // One grant per expiry: each new token was issued only once the previous one was due.
    const issued = chain.map((t) => decodeJwt(t).iat!);
    for (let i = 1; i < issued.length; i++) {
      expect(issued[i]! - issued[i - 1]!).toBeGreaterThanOrEqual(Math.floor(TTL - SKEW));
    }
  });

  it('SIGKILL of one replica under load logs nobody out', async () => {
    const sessions = await Promise.all(users.map((u) => login(u)));
    const statuses = await browse(sessions, 1500, async () => {
      await sleep(400);
      await replicas[1]!.stop('SIGKILL');
    });
    // Requests routed to the dead replica fail at the proxy (500); none ends a session.
    expect(statuses.filter((s) => s !== 200 && s !== 500)).toEqual([]);
    await replicas[1]!.start();
    const after = await browse(sessions, 300);
    expect(after.every((s) => s === 200)).toBe(true);
  });

  it('SIGTERM of one replica under load fails no request (readiness goes 503 while it keeps serving)', async () => {
    const sessions = await Promise.all(users.map((u) => login(u)));
    let readiness = 0;
    const statuses = await browse(sessions, 1200, async () => {
      await sleep(200);
      replicas[2]!.process().child.kill('SIGTERM');
      await sleep(200);
      readiness = (await new Browser().get(`${replicas[2]!.url}/readyz`)).status;
    });
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(readiness).toBe(503);
    await replicas[2]!.process().exited;
    expect(replicas[2]!.output()).toContain('draining');
    await replicas[2]!.start();
  });

  it('Redis killed mid-load, the token expiring while it is down, and Redis back empty: every request is 200', async () => {
    const sessions = await Promise.all(users.map((u) => login(u)));
    const whileKilled = await browse(sessions, 1200, async () => {
      await sleep(300);
      await redis.kill('SIGKILL');
    });
    expect(whileKilled.filter((s) => s !== 200)).toEqual([]);
    // Readiness stays up; metrics and logs say "degraded".
    const ready = await new Browser().get(`${replicas[0]!.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.json()).toMatchObject({ status: 'ready', degraded: true, store: { status: 'unavailable' } });
    const metrics = await new Browser().get(`${replicas[0]!.url}/metrics`);
    expect(metrics.body).toMatch(/^dex_forward_auth_degraded 1$/m);
    expect(replicas.some((r) => r.output().includes('degraded mode'))).toBe(true);
    // The ID tokens expire while Redis is down: sessions are rebuilt from the cookies' refresh tokens.
    await untilExpired(sessions[sessions.length - 1]!);
    const expiredWhileDown = await browse(sessions, 800);
    expect(expiredWhileDown.filter((s) => s !== 200)).toEqual([]);
    const token = headerValues(upstream.requests.at(-1)!, 'authorization')[0]!;
    expect(decodeJwt(token.slice(7)).exp! * 1000).toBeGreaterThan(Date.now());
    await redis.start();
    // State is written back to the empty Redis by the first request that reaches a replica once
    // its client has reconnected (a back-off of up to a second) and that misses its hot cache:
    // browse until that has happened, however long the reconnect takes on a loaded machine.
    const backEmpty = await browse(sessions, 800);
    await waitUntil(
      'a replica to write a session back to the empty Redis',
      async () => {
        if ((await redis.dbSize()) > 0) return true;
        backEmpty.push(...(await browse(sessions, 300)));
        return false;
      },
      { timeoutMs: 20_000, intervalMs: 0 },
    );
    expect(backEmpty.filter((s) => s !== 200)).toEqual([]);
    expect(await redis.dbSize()).toBeGreaterThan(0);
  });

  it('with Dex stopped, logged-in users keep access while their token is valid; new visitors get a 503 page', async () => {
    const s = await login();
    await dex.stop();
    try {
      expect((await s.browser.get(`${appUrl}/dex-down`)).status).toBe(200);
      const visitor = await new Browser({ navigation: true }).get(`${appUrl}/new-visitor`);
      expect(visitor.status).toBe(503);
      expect(visitor.headers.get('content-type')).toContain('text/html');
      expect(visitor.body).toContain('identity provider');
      await untilExpired(s);
      const expired = await s.browser.get(`${appUrl}/dex-down-expired`, { accept: 'application/json' });
      expect(expired.status).toBe(503);
      expect(expired.headers.get('retry-after')).toBeTruthy();
    } finally {
      await dex.start();
    }
    // Nothing was deleted: once Dex is back, the same session refreshes and continues.
    expect((await s.browser.get(`${appUrl}/dex-back`)).status).toBe(200);
  });

  it('a sign-out outlives Redis restarted empty and every replica restarted; nobody else is logged out', async () => {
    const [leaving, staying] = await Promise.all([login(users[0]), login(users[1])]);
    const kept = cookieOf(leaving.browser);
    const asJson = { accept: 'application/json' };
    // Every replica has served (and cached) both sessions.
    for (let i = 0; i < 6; i++) {
      expect((await leaving.browser.get(`${appUrl}/warm/${i}`, asJson)).status).toBe(200);
      expect((await staying.browser.get(`${appUrl}/warm/${i}`, asJson)).status).toBe(200);
    }
    const grants = dex.counts.refreshGrants;
    const out = await leaving.browser.post(`${appUrl}/oauth2/sign_out`, {});
    expect(out.status).toBe(401);
    // Released Dex has no revocation endpoint: the refresh token was spent, its result discarded.
    expect(dex.counts.refreshGrants).toBe(grants + 1);

    /** The kept copy of the cookie, replayed six times (twice on each replica). */
    const replay = async (label: string): Promise<number[]> => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const reply = await new Browser().get(`${appUrl}/${label}/${i}`, {
          cookie: `_forward_auth=${kept}`,
          ...asJson,
        });
        statuses.push(reply.status);
      }
      return statuses;
    };
    const stays = async (label: string): Promise<number[]> => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++)
        statuses.push((await staying.browser.get(`${appUrl}/${label}/${i}`, asJson)).status);
      return statuses;
    };
    const refused = [401, 401, 401, 401, 401, 401];
    const served = [200, 200, 200, 200, 200, 200];
    expect(await replay('after-sign-out')).toEqual(refused);

    // Redis loses everything: the replicas still remember the sign-out (and write it back).
    await redis.kill('SIGKILL');
    await redis.start();
    expect(await replay('redis-empty')).toEqual(refused);
    expect(await stays('redis-empty-others')).toEqual(served);

    // Nothing of the sign-out is left in any replica or in Redis: Dex refuses the spent token.
    await Promise.all(
      replicas.map(async (r) => {
        await r.stop('SIGKILL');
        await r.start();
      }),
    );
    await redis.flushAll();
    expect(await replay('nothing-left')).toEqual(refused);
    expect(await stays('nothing-left-others')).toEqual(served);
  });
});
