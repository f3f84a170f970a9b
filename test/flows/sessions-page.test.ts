import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS, PROFILES } from '../support/dex.ts';
import { type Stack, startStack } from '../support/stack.ts';

/**
 * `/oauth2/sessions` over HTTP against real Redis (issue 16 item 2): JSON on request, the POST
 * forms as CSRF-safe as sign-out, a session reference that only ever ends the asker's own
 * sessions, and the page on the dashboard host through ForwardAuth (never a 2xx there). The page
 * in a real browser: test/e2e/sessions-page.test.ts.
 */

const [alice, bob] = DEMO_USERS.filter((u) => u.emailVerified) as [
  (typeof DEMO_USERS)[0],
  (typeof DEMO_USERS)[0],
];
const XHR = { accept: 'application/json' };

interface Listed {
  user: string;
  sessions: {
    id: string;
    current: boolean;
    createdAt: string;
    lastSeenAt: string;
    host: string;
    clientAddress: string;
    userAgent: string;
  }[];
}

let stack: Stack;
/** The pages' direct route for /oauth2/sessions (as the shipped routes have it) on appUrl only. */
let direct: string;
let viaForwardAuth: string;

beforeAll(async () => {
  stack = await startStack({
    gateway: {
      routes: (pages) => [{ host: 'app.localhost', pathPrefix: '/oauth2/sessions', service: pages }],
    },
  });
  direct = `${stack.appUrl}/oauth2/sessions`;
  viaForwardAuth = `${stack.otherUrl}/oauth2/sessions`;
});
afterAll(async () => {
  await stack?.close();
});

async function login(user: typeof alice, base = stack.appUrl): Promise<Browser> {
  const browser = new Browser({ navigation: true });
  const { final } = await loginThroughDex(browser, `${base}/dash`, user);
  expect(final.status).toBe(200);
  return browser;
}
const listed = async (b: Browser, url = direct): Promise<Listed> => (await b.get(url, XHR)).json<Listed>();
const dashboard = async (b: Browser, path: string, base = stack.appUrl) =>
  (await b.get(`${base}${path}`, XHR)).status;

describe('the sessions page', () => {
  it('lists the user’s sessions as JSON on Accept: application/json or ?format=json, this one marked', async () => {
    const one = await login(alice);
    const two = await login(alice);
    const byAccept = await one.get(direct, XHR);
    expect(byAccept.status).toBe(200);
    expect(byAccept.headers.get('cache-control')).toBe('no-store');
    const body = byAccept.json<Listed>();
    expect(body.user).toBe(alice.login);
    expect(body.sessions.length).toBeGreaterThanOrEqual(2);
    expect(body.sessions.filter((s) => s.current)).toHaveLength(1);
    expect(body.sessions[0]).toMatchObject({
      host: 'app.localhost:' + stack.port,
      clientAddress: '127.0.0.1',
    });
    const byQuery = await two.get(`${direct}?format=json`, { accept: 'text/html' });
    expect(byQuery.headers.get('content-type')).toMatch(/^application\/json/);
    const mine = byQuery.json<Listed>().sessions.find((s) => s.current)!;
    expect(mine.id).not.toBe(body.sessions.find((s) => s.current)!.id);
    const page = await one.get(direct, { accept: 'text/html' });
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("form-action 'self'");
    expect(page.body).toContain('action="/oauth2/sessions?end=all"');
  });

  it('without a session answers 401 and offers to sign in', async () => {
    const reply = await new Browser().get(direct, XHR);
    expect(reply.status).toBe(401);
    expect(reply.json()).toMatchObject({ error: 'unauthenticated' });
  });

  it('refuses a POST from another site or a cross-site form, and nothing is ended', async () => {
    const one = await login(alice);
    const other = await login(alice);
    const target = (await listed(other)).sessions.find((s) => s.current)!.id;
    const url = `${direct}?end=${encodeURIComponent(target)}`;
    const forged = await one.post(
      url,
      {},
      { origin: 'http://evil.localhost', 'sec-fetch-site': 'cross-site' },
    );
    expect(forged.status).toBe(403);
    const sameOriginButCrossSite = await one.post(
      url,
      {},
      { 'sec-fetch-site': 'cross-site', origin: 'null' },
    );
    expect(sameOriginButCrossSite.status).toBe(403);
    const everywhere = await one.post(`${direct}?end=all`, {}, { origin: 'http://evil.localhost' });
    expect(everywhere.status).toBe(403);
    expect(await dashboard(other, '/csrf/other')).toBe(200);
    expect(await dashboard(one, '/csrf/one')).toBe(200);
  });

  it('a session reference of another user ends nothing: 404, and that user stays signed in', async () => {
    const mallory = await login(alice);
    const victim = await login(bob);
    const theirs = (await listed(victim)).sessions.find((s) => s.current)!.id;
    const reply = await mallory.post(`${direct}?end=${encodeURIComponent(theirs)}`, {}, XHR);
    expect(reply.status).toBe(404);
    expect(await dashboard(victim, '/other-user/victim')).toBe(200);
    expect((await listed(victim)).sessions.map((s) => s.id)).toContain(theirs);
  });

  it('ends another of the user’s sessions and comes back to the list; ending this one signs this browser out', async () => {
    const here = await login(alice);
    const there = await login(alice);
    const thereId = (await listed(there)).sessions.find((s) => s.current)!.id;
    const ended = await here.post(`${direct}?end=${encodeURIComponent(thereId)}`, {});
    expect([ended.status, ended.location]).toEqual([303, direct]);
    expect(await dashboard(there, '/ended/there')).toBe(401);
    expect(await dashboard(here, '/ended/here')).toBe(200);
    const hereId = (await listed(here)).sessions.find((s) => s.current)!.id;
    const own = await here.post(`${direct}?end=${encodeURIComponent(hereId)}`, {}, XHR);
    expect(own.status).toBe(200);
    expect(own.json()).toEqual({ signedOut: true });
    expect(own.headers.getSetCookie().some((c) => c.startsWith('_forward_auth=;'))).toBe(true);
    expect(await dashboard(here, '/ended/own')).toBe(401);
    expect((await here.post(`${direct}?end=`, {})).status).toBe(401); // signed out: nothing to ask
  });

  it('is served on a dashboard host through ForwardAuth too, as a 401 (never a 2xx, which would let the request through)', async () => {
    const b = await login(alice, stack.otherUrl);
    const reply = await b.get(viaForwardAuth, XHR);
    expect(reply.status).toBe(401);
    expect(reply.json<Listed>().sessions.some((s) => s.current)).toBe(true);
    expect(stack.upstream.requests.some((r) => r.url.startsWith('/oauth2/sessions'))).toBe(false);
    const everywhere = await b.post(`${viaForwardAuth}?end=all`, {}, XHR);
    expect(everywhere.status).toBe(401);
    expect(everywhere.json()).toEqual({ signedOut: true });
    expect(await dashboard(b, '/fa/after', stack.otherUrl)).toBe(401);
  });
});

describe('the sessions page under host-only cookies (no COOKIE_DOMAIN)', () => {
  it('lists and ends only the sessions of its own host: another host’s session is not shown, is 404 to end, and outlives "sign out everywhere" here', async () => {
    const onApp = await login(bob);
    const onOther = await login(bob, stack.otherUrl);
    const appIds = (await listed(onApp)).sessions.map((s) => s.id);
    const hereJson = (await onOther.get(viaForwardAuth, XHR)).json<Listed>();
    expect(hereJson.sessions.every((s) => s.host === new URL(stack.otherUrl).host)).toBe(true);
    expect(hereJson.sessions.map((s) => s.id).filter((id) => appIds.includes(id))).toEqual([]);
    const appId = (await listed(onApp)).sessions.find((s) => s.current)!.id;
    const other = await onOther.post(`${viaForwardAuth}?end=${appId}`, {}, XHR);
    expect(other.status).toBe(404);
    const everywhere = await onOther.post(`${viaForwardAuth}?end=all`, {}, XHR);
    expect(everywhere.json()).toEqual({ signedOut: true });
    expect(await dashboard(onOther, '/host-only/other', stack.otherUrl)).toBe(401);
    expect(await dashboard(onApp, '/host-only/app')).toBe(200);
  });
});

describe('signing out from the sessions page with a provider that has an end_session_endpoint', () => {
  it('goes on to the provider’s end_session_endpoint with id_token_hint (RP-initiated logout), as sign-out does', async () => {
    const own = await startStack({
      dex: { profile: PROFILES.logoutHint },
      gateway: { routes: (pages) => [{ pathPrefix: '/oauth2/sessions', service: pages }] },
    });
    try {
      const b = new Browser({ navigation: true });
      expect((await loginThroughDex(b, `${own.appUrl}/dash`, alice)).final.status).toBe(200);
      // The page's forms may lead to the provider: its origin is in the CSP's form-action.
      const page = await b.get(`${own.appUrl}/oauth2/sessions`, { accept: 'text/html' });
      expect(page.headers.get('content-security-policy')).toContain(
        `form-action 'self' ${new URL(own.dex.issuer).origin}`,
      );
      const out = await b.post(`${own.appUrl}/oauth2/sessions?end=all`, {});
      expect(out.status).toBe(302);
      const to = new URL(out.location!);
      expect(`${to.origin}${to.pathname}`).toMatch(/\/session\/end$/);
      expect(to.searchParams.get('id_token_hint')).toMatch(/^ey/);
      expect((await b.get(`${own.appUrl}/oauth2/sessions`, XHR)).status).toBe(401); // signed out here too
    } finally {
      await own.close();
    }
  });
});

describe('the sessions page of a session that is due for a refresh', () => {
  it('hands the browser the rotated cookie, so it does not fall behind its session', async () => {
    const own = await startStack({
      dex: { idTokenTtl: 4 },
      env: { REFRESH_SKEW: '3s' },
      gateway: { routes: (pages) => [{ pathPrefix: '/oauth2/sessions', service: pages }] },
    });
    try {
      const b = new Browser({ navigation: true });
      expect((await loginThroughDex(b, `${own.appUrl}/dash`, alice)).final.status).toBe(200);
      const before = b.cookies(own.appUrl).find((c) => c.name === '_forward_auth')!.value;
      const grants = own.dex.counts.refreshGrants;
      // Due: within REFRESH_SKEW (capped at half its lifetime, 2 s) of its end, not yet expired.
      await new Promise((r) => setTimeout(r, 2_100));
      const reply = await b.get(`${own.appUrl}/oauth2/sessions`, XHR);
      expect(reply.status).toBe(200);
      expect(own.dex.counts.refreshGrants).toBe(grants + 1);
      const after = b.cookies(own.appUrl).find((c) => c.name === '_forward_auth')!.value;
      expect(after).not.toBe(before);
      expect(reply.headers.getSetCookie().some((c) => c.startsWith('_forward_auth='))).toBe(true);
    } finally {
      await own.close();
    }
  });
});

describe('a user who logs in again and again (MAX_SESSIONS_PER_USER)', () => {
  const BOUND = 3;
  let bounded: Stack;

  beforeAll(async () => {
    bounded = await startStack({
      env: { MAX_SESSIONS_PER_USER: String(BOUND) },
      gateway: {
        routes: (pages) => [{ host: 'app.localhost', pathPrefix: '/oauth2/sessions', service: pages }],
      },
    });
  });
  afterAll(async () => {
    await bounded?.close();
  });

  it('keeps at most the bound: a login beyond it ends the least recently seen session, the others live on', async () => {
    const browsers: Browser[] = [];
    for (let i = 0; i < BOUND + 2; i++) {
      const browser = new Browser({ navigation: true });
      const { final } = await loginThroughDex(browser, `${bounded.appUrl}/dash`, alice);
      expect(final.status).toBe(200);
      browsers.push(browser);
    }
    const newest = browsers.at(-1)!;
    const page = await listed(newest, `${bounded.appUrl}/oauth2/sessions`);
    expect(page.sessions.length).toBe(BOUND);
    expect(page.sessions.filter((s) => s.current).length).toBe(1);
    const status = (b: Browser, path: string) => b.get(`${bounded.appUrl}${path}`, XHR).then((r) => r.status);
    expect(await status(browsers[0]!, '/bound/first')).toBe(401);
    expect(await status(browsers[1]!, '/bound/second')).toBe(401);
    for (const b of browsers.slice(2)) expect(await status(b, '/bound/kept')).toBe(200);
  });
});
