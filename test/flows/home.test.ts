import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, CHROME_USER_AGENT, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { type Stack, startStack } from '../support/stack.ts';

/**
 * The service's own root page, and what a browser tab opened on a proxy-only endpoint gets, on the
 * real chain (Traefik emulator → service → Dex stand-in, Redis).
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
/** What Chromium sends for a tab opened on a URL. */
const NAVIGATION = {
  Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'Sec-Fetch-Mode': 'navigate',
  'Sec-Fetch-Dest': 'document',
  'Sec-Fetch-Site': 'none',
  'User-Agent': CHROME_USER_AGENT,
};

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

describe('GET /', () => {
  it('answers a page saying what this is and that the browser is not signed in', async () => {
    const reply = await request(stack.service.server).get('/').set(NAVIGATION).expect(200);
    expect(reply.headers['content-type']).toContain('text/html');
    expect(reply.headers['content-security-policy']).toContain("default-src 'none'");
    expect(reply.text).toContain('<h1 id="page-title">Single sign-on gate</h1>');
    expect(reply.text).toContain('This is <strong>dex-forward-auth</strong>');
    expect(reply.text).toContain('You are not signed in here');
    // Operator endpoints are named, not linked: no shipped route leads a browser to them.
    expect(reply.text).toContain('<code>/readyz</code>');
    expect(reply.text).not.toContain('href="/readyz"');
    expect(reply.text).not.toContain('href="/oauth2/sign_out"');
  });

  it('shows who is signed in, their groups, and links to userinfo and sign-out', async () => {
    const browser = new Browser({ navigation: true });
    const login = await loginThroughDex(browser, `${stack.appUrl}/`, admin);
    expect(login.final.status).toBe(200);
    const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth');
    expect(cookie).toBeDefined();
    const page = await request(stack.service.server)
      .get('/')
      .set(NAVIGATION)
      .set('X-Forwarded-Host', new URL(stack.appUrl).host)
      .set('Cookie', `_forward_auth=${cookie?.value}`)
      .expect(200);
    expect(page.text).toContain(`You are signed in as <strong>${admin.email}</strong>`);
    for (const group of admin.groups) expect(page.text).toContain(`<li>${group}</li>`);
    expect(page.text).toContain('href="/oauth2/userinfo"');
    expect(page.text).toContain('href="/oauth2/sign_out"');
    expect(page.text).not.toContain(cookie?.value);

    const json = await request(stack.service.server)
      .get('/')
      .set('X-Forwarded-Host', new URL(stack.appUrl).host)
      .set('Cookie', `_forward_auth=${cookie?.value}`)
      .expect(200);
    expect(json.body).toEqual({
      service: 'dex-forward-auth',
      version: expect.any(String),
      signedIn: true,
      user: admin.email,
    });
  });

  it('reads the cookie as /auth does: a host-only session of another host is none, two session cookies a conflict', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/`, admin);
    const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
    const elsewhere = await request(stack.service.server)
      .get('/')
      .set('X-Forwarded-Host', new URL(stack.otherUrl).host)
      .set('Cookie', `_forward_auth=${cookie}`)
      .expect(200);
    expect(elsewhere.body).toMatchObject({ signedIn: false });
    const twice = await request(stack.service.server)
      .get('/')
      .set(NAVIGATION)
      .set('X-Forwarded-Host', new URL(stack.appUrl).host)
      .set('Cookie', `_forward_auth=${cookie}; _forward_auth=planted`);
    expect(twice.status).toBe(400);
    expect(twice.text).not.toContain('You are signed in');
  });

  it('answers JSON to non-browsers', async () => {
    const reply = await request(stack.service.server).get('/').expect(200);
    expect(reply.body).toMatchObject({ service: 'dex-forward-auth', signedIn: false });
  });
});

describe('a browser tab opened on a proxy-only endpoint', () => {
  it.each(['/auth', '/oauth2/auth'])(
    '%s explains where to go instead of sending the browser to Dex',
    async (path) => {
      const reply = await request(stack.service.server).get(path).set(NAVIGATION);
      expect(reply.status).toBe(400);
      expect(reply.headers['location']).toBeUndefined();
      expect(reply.headers['set-cookie']).toBeUndefined(); // no sign-in was started
      expect(reply.headers['content-type']).toContain('text/html');
      expect(reply.text).toContain('This address is for the proxy');
      expect(reply.text).toContain(`You opened <code>${path}</code> in a browser tab`);
      expect(reply.text).toContain('<a class="button" href="/">About this service</a>');
    },
  );

  it('a forward-auth subrequest carrying the same browser headers still starts a sign-in', async () => {
    const reply = await request(stack.service.server)
      .get('/auth')
      .set(NAVIGATION)
      .set('X-Forwarded-Proto', 'http')
      .set('X-Forwarded-Host', new URL(stack.appUrl).host)
      .set('X-Forwarded-Uri', '/dashboards')
      .set('X-Forwarded-Method', 'GET');
    expect(reply.status).toBe(302);
    expect(reply.headers['location']).toContain(stack.dex.issuer);
  });

  it('a request that is no navigation is refused too, with JSON and no sign-in', async () => {
    const reply = await request(stack.service.server).get('/auth').set('Accept', 'application/json');
    expect(reply.status).toBe(400);
    expect(reply.body).toMatchObject({ error: 'not_a_forward_auth_request' });
    expect(reply.headers['set-cookie']).toBeUndefined();
  });
});
