import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { CLIENT_ID, type Stack, startStack } from '../support/stack.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * What one dashboard can do with what it sees of its users (issue 11 items 7 and 8), against the
 * strict Dex stand-in and a real Redis: every upstream gets the user's ID token and Cookie header.
 * The ID token must not work as a bearer token on another dashboard; a host-only session's cookie
 * must not work on another host; a cookie copied before a rotation is not upgraded after the
 * grace period; an idle session ends; sign-out with RFC 7009 revocation where the provider offers it.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const XHR = { accept: 'application/json', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' };
const sessionCookie = (browser: Browser, url: string) =>
  browser.cookies(url).find((c) => c.name === '_forward_auth')?.value;

/**
 * A replica started just now (no memory of anything) on the stack's Dex and Redis answers for
 * `cookie` on the stack's app host.
 */
async function askFreshReplica(
  stack: Stack,
  cookie: string,
  env: Record<string, string> = {},
): Promise<number> {
  const replica = await stack.startService(env);
  try {
    const reply = await new Browser().get(`${replica.url}/auth`, {
      ...XHR,
      cookie: `_forward_auth=${cookie}`,
      'x-forwarded-host': new URL(stack.appUrl).host,
      'x-forwarded-uri': '/fresh-replica',
    });
    return reply.status;
  } finally {
    await replica.close();
  }
}

describe('one dashboard cannot act as its users on another', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      env: {
        // As the README recommends for the API server: the gateway's tokens carry aud kubernetes too.
        OIDC_SCOPES: 'openid profile email groups offline_access audience:server:client_id:kubernetes',
        BEARER_AUDIENCES: 'kubernetes',
      },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('the ID token dashboard A received is refused as a bearer token on dashboard B', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/a`, admin);
    const seen = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!.slice('Bearer '.length);
    expect(decodeJwt(seen).aud).toEqual(['kubernetes', CLIENT_ID]); // it names BEARER_AUDIENCES' kubernetes
    stack.upstream.requests.length = 0;
    const replayed = await new Browser().get(`${stack.otherUrl}/b/api`, {
      ...XHR,
      authorization: `Bearer ${seen}`,
    });
    expect(replayed.status).toBe(401);
    expect(replayed.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(stack.upstream.requests).toHaveLength(0);
  });

  it('a token kubectl got for the API server (aud kubernetes, azp kubectl) still passes', async () => {
    const token = await stack.dex.mintIdToken({
      sub: stack.dex.subjectOf(dev),
      email: dev.email,
      email_verified: true,
      aud: ['kubernetes', 'kubectl'],
      azp: 'kubectl',
    });
    const reply = await new Browser().get(`${stack.otherUrl}/b/api`, {
      ...XHR,
      authorization: `Bearer ${token}`,
    });
    expect(reply.status).toBe(200);
    expect(headerValues(stack.upstream.requests.at(-1)!, 'x-auth-request-user')).toEqual([dev.email]);
  });

  it('a host-only session cookie that dashboard A saw is no session on dashboard B', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/a`, admin);
    const cookie = sessionCookie(browser, stack.appUrl)!;
    stack.upstream.requests.length = 0;
    const xhr = await new Browser().get(`${stack.otherUrl}/b/api`, {
      ...XHR,
      cookie: `_forward_auth=${cookie}`,
    });
    expect(xhr.status).toBe(401);
    const navigation = await new Browser({ navigation: true }).get(`${stack.otherUrl}/b/page`, {
      cookie: `_forward_auth=${cookie}`,
    });
    expect(navigation.status).toBe(302);
    expect(navigation.location!.startsWith(stack.dex.issuer)).toBe(true);
    expect(stack.upstream.requests).toHaveLength(0);
    // On its own host the session is untouched.
    expect((await browser.get(`${stack.appUrl}/a/again`, XHR)).status).toBe(200);
  });

  it('with no BEARER_AUDIENCES bearer pass-through is off (the default)', async () => {
    const off = await startStack({ redis: false });
    try {
      const token = await off.dex.mintIdToken({
        sub: off.dex.subjectOf(dev),
        email: dev.email,
        email_verified: true,
        aud: 'kubernetes',
      });
      const reply = await new Browser().get(`${off.appUrl}/x`, { ...XHR, authorization: `Bearer ${token}` });
      expect(reply.status).toBe(401);
      expect(reply.headers.get('www-authenticate')).toContain('Bearer tokens are not accepted here');
    } finally {
      await off.close();
    }
  });
});

describe('rotation grace', () => {
  const TTL = 6;
  const SKEW = 2.5;
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      env: { REFRESH_SKEW: `${SKEW}s` },
      dex: { idTokenTtl: TTL, refreshMode: 'strict' },
      sessionTimings: { graceMs: 1_500 },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('a cookie copied before a rotation gets the new cookie only within the grace period, then nothing', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/g`, admin);
    const loggedInAt = Date.now();
    const copied = sessionCookie(browser, stack.appUrl)!;
    await sleep(Math.max(0, loggedInAt + (TTL - SKEW) * 1000 + 300 - Date.now()));
    expect((await browser.get(`${stack.appUrl}/g/rotate`, XHR)).status).toBe(200);
    const current = sessionCookie(browser, stack.appUrl)!;
    expect(current).not.toBe(copied);
    // Within the grace period (requests that left before the new cookie arrived): served, upgraded.
    const late = await new Browser().get(`${stack.appUrl}/g/late`, {
      ...XHR,
      cookie: `_forward_auth=${copied}`,
    });
    expect(late.status).toBe(200);
    expect(
      late.headers
        .getSetCookie()
        .find((c) => c.startsWith('_forward_auth='))
        ?.split(';')[0],
    ).toBe(`_forward_auth=${current}`);
    await sleep(1_700);
    const grants = stack.dex.counts.refreshGrants;
    const stale = await new Browser().get(`${stack.appUrl}/g/stale`, {
      ...XHR,
      cookie: `_forward_auth=${copied}`,
    });
    expect(stale.status).toBe(401);
    expect(stale.headers.getSetCookie().some((c) => c.startsWith(`_forward_auth=${current}`))).toBe(false);
    expect(stack.dex.counts.refreshGrants).toBe(grants); // and the old refresh token was not replayed
    // The browser holding the current cookie was not logged out.
    expect((await browser.get(`${stack.appUrl}/g/still`, XHR)).status).toBe(200);
  });
});

describe('SESSION_IDLE_TIMEOUT', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { SESSION_IDLE_TIMEOUT: '3s' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  /** SET calls Redis has served so far (INFO commandstats). */
  async function setCalls(): Promise<number> {
    const client = new Redis(stack.redis!.url);
    try {
      const info = await client.info('commandstats');
      return Number(/cmdstat_set:calls=(\d+)/.exec(info)?.[1] ?? 0);
    } finally {
      client.disconnect();
    }
  }

  it('a session in use stays, and its use reaches Redis at most once per interval, not per request', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/busy`, admin);
    const before = await setCalls();
    const started = Date.now();
    let requests = 0;
    while (Date.now() - started < 4_500) {
      expect((await browser.get(`${stack.appUrl}/busy/${requests++}`, XHR)).status).toBe(200);
      await sleep(20);
    }
    expect(requests).toBeGreaterThan(50);
    // 4.5 s of use with an interval of 3 s / 8 = 375 ms: about a dozen writes, never one per request.
    const writes = (await setCalls()) - before;
    expect(writes).toBeLessThanOrEqual(Math.ceil(4_500 / 375) + 2);
    expect(writes).toBeLessThan(requests / 3);
  });

  it('a session unused for the timeout ends for good, even if Redis then loses its data', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/idle`, dev);
    const cookie = sessionCookie(browser, stack.appUrl)!;
    expect((await browser.get(`${stack.appUrl}/idle/1`, XHR)).status).toBe(200);
    const grants = stack.dex.counts.refreshGrants;
    await sleep(3_300);
    expect((await browser.get(`${stack.appUrl}/idle/2`, XHR)).status).toBe(401);
    expect(stack.dex.counts.refreshGrants).toBe(grants + 1); // its refresh token was spent
    await stack.redis!.flushAll();
    const again = await new Browser().get(`${stack.appUrl}/idle/3`, {
      ...XHR,
      cookie: `_forward_auth=${cookie}`,
    });
    expect(again.status).toBe(401);
    // That replica wrote its tombstone back into Redis; with Redis emptied once more, a replica
    // that never heard of the session asks Dex, which refuses the spent token.
    await stack.redis!.flushAll();
    const errors = stack.dex.counts.tokenErrors;
    expect(await askFreshReplica(stack, cookie, { SESSION_IDLE_TIMEOUT: '3s' })).toBe(401);
    expect(stack.dex.counts.tokenErrors).toBe(errors + 1);
  });
});

describe('sign-out with a provider that offers RFC 7009 revocation', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ dex: { revocation: true } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('revokes the refresh token at the revocation endpoint; the kept cookie stays dead after Redis is flushed', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/r`, admin);
    const cookie = sessionCookie(browser, stack.appUrl)!;
    const grants = stack.dex.counts.refreshGrants;
    expect((await browser.post(`${stack.appUrl}/oauth2/sign_out`, {})).status).toBe(401);
    expect(stack.dex.counts.revocations).toBe(1);
    expect(stack.dex.counts.refreshGrants).toBe(grants);
    await stack.redis!.flushAll();
    const kept = await new Browser().get(`${stack.appUrl}/r/kept`, {
      ...XHR,
      cookie: `_forward_auth=${cookie}`,
    });
    expect(kept.status).toBe(401);
    // That replica wrote its tombstone back into Redis; with Redis emptied once more, a replica
    // that never heard of the sign-out asks Dex, which refuses the revoked token.
    await stack.redis!.flushAll();
    const errors = stack.dex.counts.tokenErrors;
    expect(await askFreshReplica(stack, cookie)).toBe(401);
    expect(stack.dex.counts.tokenErrors).toBe(errors + 1);
  });

  it('a session that was not signed out survives the same flush (nobody logged out by Redis)', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/r2`, dev);
    await stack.redis!.flushAll();
    expect(await askFreshReplica(stack, sessionCookie(browser, stack.appUrl)!)).toBe(200);
  });
});
