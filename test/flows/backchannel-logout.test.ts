import { request } from 'node:http';
import { decodeJwt, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { logoutClaims, postLogoutToken } from '../support/dex/backchannel.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { waitUntil } from '../support/redis.ts';
import { CLIENT_ID, type Stack, startStack } from '../support/stack.ts';

/**
 * OpenID Connect Back-Channel Logout 1.0 (issue 16 item 3) with two replica processes taking the
 * decisions, real Redis, and the stand-in sending real logout tokens signed with its keys: by
 * `sid` and by `sub`, forged ones (another key, wrong aud or iss, a nonce, no events, no sid or
 * sub, too old) refused with 400, and a replay refused on the other replica.
 */

const XHR = { accept: 'application/json' };
const [alice] = DEMO_USERS.filter((u) => u.emailVerified) as [(typeof DEMO_USERS)[0]];

let stack: Stack;
let host: string;
const receiver = (i: number) => `${stack.replicas[i]!.url}/oauth2/backchannel-logout`;

beforeAll(async () => {
  stack = await startStack({ replicas: { count: 2, processes: true } });
  host = new URL(stack.appUrl).host;
}, 60_000);
afterAll(async () => {
  await stack?.close();
});

/** A session from an ID token that names a provider session (the stand-in's logins, like Dex's, carry no sid). */
async function sessionOf(sub: string, sid: string): Promise<string> {
  const idToken = await stack.dex.mintIdToken({
    sub,
    sid,
    email: `${sub}@example.com`,
    email_verified: true,
  });
  const { cookie } = await stack.service.deps.sessions.create(
    { idToken, refreshToken: undefined, claims: decodeJwt(idToken) as never },
    { host },
  );
  return cookie;
}
/** Four decisions in a row (both replicas twice, round-robin) for this cookie. */
const decisions = async (cookie: string, path: string): Promise<number[]> => {
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) {
    const reply = await new Browser().get(`${stack.appUrl}${path}/${i}`, {
      cookie: `_forward_auth=${cookie}`,
      ...XHR,
    });
    statuses.push(reply.status);
  }
  return statuses;
};
const ALLOWED = [200, 200, 200, 200];
const REFUSED = [401, 401, 401, 401];
const refusedEverywhere = (cookie: string, path: string) =>
  waitUntil(
    'every replica to refuse the session',
    async () => (await decisions(cookie, path)).join() === REFUSED.join(),
    {
      timeoutMs: 5_000,
    },
  );

describe('back-channel logout', () => {
  it('a real logout token with a sid ends that provider session’s sessions on every replica, and no other', async () => {
    const ended = await sessionOf('idp-user-1', 'provider-session-a');
    const alsoEnded = await sessionOf('idp-user-1', 'provider-session-a');
    const untouched = await sessionOf('idp-user-1', 'provider-session-b');
    for (const c of [ended, alsoEnded, untouched])
      expect(await decisions(c, '/bcl/sid/before')).toEqual(ALLOWED);
    const answer = await stack.dex.sendBackchannelLogout(receiver(0), { sid: 'provider-session-a' });
    expect(answer.status).toBe(200);
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(answer.body)).toEqual({ ended: 2 });
    await refusedEverywhere(ended, '/bcl/sid/after');
    await refusedEverywhere(alsoEnded, '/bcl/sid/after-2');
    expect(await decisions(untouched, '/bcl/sid/untouched')).toEqual(ALLOWED);
  });

  it('a logout token with only a sub ends every session of that user (two browsers after a real login)', async () => {
    const browsers = [new Browser({ navigation: true }), new Browser({ navigation: true })];
    for (const b of browsers)
      expect((await loginThroughDex(b, `${stack.appUrl}/bcl/sub`, alice)).final.status).toBe(200);
    const answer = await stack.dex.sendBackchannelLogout(receiver(1), { sub: stack.dex.subjectOf(alice) });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body).ended).toBeGreaterThanOrEqual(2);
    for (const b of browsers) {
      const cookie = b.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
      await refusedEverywhere(cookie, '/bcl/sub/after');
    }
  });

  it('refuses forged and malformed logout tokens with 400 and a JSON error, and ends nothing', async () => {
    const cookie = await sessionOf('idp-user-2', 'provider-session-c');
    const { privateKey: otherKey } = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const forged: [string, Record<string, unknown>, Parameters<typeof stack.dex.mintIdToken>[1]][] = [
      ['signed with another key', {}, { key: otherKey }],
      ['signed with another key under the stand-in’s kid', {}, { key: otherKey, kid: stack.dex.kid }],
      ['for another client', { aud: 'another-client' }, {}],
      ['for several clients, azp another', { aud: ['another-client', CLIENT_ID], azp: 'another-client' }, {}],
      ['for several clients, without azp', { aud: ['another-client', CLIENT_ID] }, {}],
      ['for us, azp another', { azp: 'another-client' }, {}],
      ['from another issuer', { iss: 'http://127.0.0.1:1/evil' }, {}],
      ['with a nonce (an ID token’s)', { nonce: 'n-0S6_WzA2Mj' }, {}],
      ['without events', { events: undefined }, {}],
      ['with events of another kind', { events: { 'http://schemas.openid.net/event/other': {} } }, {}],
      ['with neither sid nor sub', { sid: undefined }, {}],
      ['without jti', { jti: undefined }, {}],
      ['expired', { exp: now - 120, iat: now - 300 }, {}],
      ['issued long ago', { iat: now - 3_600, exp: now + 60 }, {}],
      ['unsigned', {}, { alg: 'HS256', key: new TextEncoder().encode('x'.repeat(32)) }],
    ];
    for (const [what, claims, opts] of forged) {
      const answer = await stack.dex.sendBackchannelLogout(
        receiver(0),
        { sid: 'provider-session-c', ...claims },
        opts,
      );
      expect([what, answer.status]).toEqual([what, 400]);
      expect(answer.headers['cache-control']).toBe('no-store');
      expect(JSON.parse(answer.body)).toMatchObject({ error: 'invalid_request' });
    }
    expect((await postLogoutToken(receiver(0), 'not-a-jwt')).status).toBe(400);
    const noToken = await fetch(receiver(0), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'something=else',
    });
    expect(noToken.status).toBe(400);
    const asJson = await fetch(receiver(0), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(asJson.status).toBe(400);
    expect(await decisions(cookie, '/bcl/forged/after')).toEqual(ALLOWED);
  });

  it('refuses a replayed logout token on the other replica (its jti is kept in Redis)', async () => {
    const first = await sessionOf('idp-user-3', 'provider-session-d');
    const sent = await stack.dex.sendBackchannelLogout(receiver(0), { sid: 'provider-session-d' });
    expect(sent.status).toBe(200);
    await refusedEverywhere(first, '/bcl/replay/first');
    // The same provider session signs in again; the old token replayed must not end it.
    const again = await sessionOf('idp-user-3', 'provider-session-d');
    for (const r of [receiver(1), receiver(0)]) {
      const replay = await postLogoutToken(r, sent.token);
      expect(replay.status).toBe(400);
      expect(JSON.parse(replay.body).error_description).toMatch(/used before/);
    }
    expect(await decisions(again, '/bcl/replay/again')).toEqual(ALLOWED);
  });

  it('accepts a logout token for several clients whose azp is ours', async () => {
    const cookie = await sessionOf('idp-user-5', 'provider-session-azp');
    const answer = await stack.dex.sendBackchannelLogout(receiver(0), {
      sid: 'provider-session-azp',
      aud: ['another-client', CLIENT_ID],
      azp: CLIENT_ID,
    });
    expect(answer.status).toBe(200);
    await refusedEverywhere(cookie, '/bcl/azp/ours');
  });

  it('answers an oversized logout form with 413 and a JSON error, not a reset connection', async () => {
    const answer = await postRawForm(receiver(0), `logout_token=${'a'.repeat(64 * 1024)}`);
    expect(answer.status).toBe(413);
    expect(answer.connection).toBe('close');
    expect(JSON.parse(answer.body ?? '')).toMatchObject({ error: 'invalid_request' });
  });

  // Last: it empties Redis.
  it('refuses a replayed logout token after Redis lost its data (the replica remembers its jti), and the user’s newer session lives on', async () => {
    const sub = 'idp-user-4';
    const first = await sessionOf(sub, 'provider-session-e');
    const token = await stack.dex.mintIdToken(logoutClaims({ sub }), { expiresIn: 120 });
    expect((await postLogoutToken(receiver(0), token)).status).toBe(200);
    await refusedEverywhere(first, '/bcl/flushed/first');
    await stack.redis!.flushAll();
    const second = await sessionOf(sub, 'provider-session-f');
    expect(await decisions(second, '/bcl/flushed/second')).toEqual(ALLOWED);
    const replay = await postLogoutToken(receiver(0), token);
    expect(replay.status).toBe(400);
    expect(await decisions(second, '/bcl/flushed/after')).toEqual(ALLOWED);
  });
});

/** POSTs a raw form and reports what came back, or the socket error the client saw instead. */
function postRawForm(
  uri: string,
  body: string,
): Promise<{ status?: number; connection?: string; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const headers = {
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': Buffer.byteLength(body),
    };
    const req = request(uri, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          connection: String(res.headers.connection ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    req.end(body);
  });
}
