import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import type { TestService } from '../support/service.ts';
import { CLIENT_SECRET, type Stack, startStack } from '../support/stack.ts';

/**
 * /kubeconfig and /kubeconfig/download on the direct route: who gets what, and bad input answered
 * with a clear 4xx, never a 500.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;
const NAVIGATION = {
  accept: 'text/html,application/xhtml+xml',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
};
const KUBE_CLUSTERS = JSON.stringify([
  { name: 'prod', server: 'https://127.0.0.1:6443', clientId: 'kubectl', audience: 'kubernetes' },
  { name: 'lab', server: 'https://127.0.0.1:7443', clientId: 'kubectl' },
]);

describe('the kubeconfig endpoints', () => {
  let stack: Stack;
  let session: string;
  const direct = new Browser();
  const get = (path: string, headers: Record<string, string> = {}) =>
    direct.get(`${stack.service.url}${path}`, {
      cookie: `_forward_auth=${session}`,
      // The host the session was created for, as the route to /kubeconfig on it forwards.
      'x-forwarded-host': new URL(stack.appUrl).host,
      ...headers,
    });

  beforeAll(async () => {
    stack = await startStack({ env: { KUBE_CLUSTERS } });
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/`, admin);
    session = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('an anonymous page navigation is sent to Dex to log in; anything else gets 401', async () => {
    const nav = await new Browser({ navigation: true }).get(`${stack.service.url}/kubeconfig`);
    expect(nav.status).toBe(302);
    expect(nav.location!.startsWith(stack.dex.issuer)).toBe(true);
    expect(nav.headers.getSetCookie().some((c) => c.startsWith('_forward_auth_login_'))).toBe(true);
    const api = await new Browser().get(`${stack.service.url}/kubeconfig`, { accept: 'application/json' });
    expect(api.status).toBe(401);
    expect(api.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const file = await new Browser().get(`${stack.service.url}/kubeconfig/download?cluster=prod`);
    expect(file.status).toBe(401);
  });

  it('the page lists every cluster with both files; as JSON it names them and holds no token', async () => {
    const page = await get('/kubeconfig', { accept: 'text/html' });
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'sha256-/);
    for (const href of [
      'cluster=prod&amp;variant=exec',
      'cluster=prod&amp;variant=token',
      'cluster=lab&amp;variant=exec',
    ]) {
      expect(page.body).toContain(href);
    }
    expect(page.body).not.toContain(CLIENT_SECRET);
    const json = await get('/kubeconfig', { accept: 'application/json' });
    expect(json.json()).toMatchObject({
      user: admin.email,
      clusters: [{ name: 'prod' }, { name: 'lab' }],
    });
    expect(json.body).not.toMatch(/eyJ[\w-]+\.eyJ/);
  });

  it('a download is an attachment of YAML, not cached', async () => {
    const reply = await get('/kubeconfig/download?cluster=lab&variant=token', NAVIGATION);
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toBe('application/yaml; charset=utf-8');
    expect(reply.headers.get('content-disposition')).toBe('attachment; filename="kubeconfig-lab-token.yaml"');
    expect(reply.headers.get('cache-control')).toBe('no-store');
    const doc = parseYaml(reply.body) as { users: { user: { token: string } }[] };
    expect(doc.users[0]?.user.token).toMatch(/^eyJ/);
    const all = await get('/kubeconfig/download');
    expect(all.headers.get('content-disposition')).toContain('kubeconfig-all-clusters.yaml');
    expect((parseYaml(all.body) as { clusters: unknown[] }).clusters).toHaveLength(2);
  });

  it.each([
    ['fetch() from a script', { 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }],
    ['a same-origin fetch()', { 'sec-fetch-mode': 'same-origin', 'sec-fetch-dest': 'empty' }],
    ['an XHR that claims a navigation', { ...NAVIGATION, 'x-requested-with': 'XMLHttpRequest' }],
    ['a frame', { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe' }],
    ['a request without Sec-Fetch-* headers', {}],
  ])('the token kubeconfig is refused to %s, with a 403 that says why', async (_name, headers) => {
    const reply = await get('/kubeconfig/download?cluster=lab&variant=token', {
      ...headers,
      accept: 'application/json',
    });
    expect(reply.status).toBe(403);
    expect(reply.body).not.toMatch(/eyJ[\w-]+\.eyJ/);
    expect(reply.json()).toMatchObject({ error: 'forbidden' });
    expect((reply.json() as { message: string }).message).toMatch(/navigation/);
    // The kubelogin variant holds no token: any client may fetch it.
    expect((await get('/kubeconfig/download?cluster=lab', headers)).status).toBe(200);
  });

  it('the page holds the token only when opened as a top-level navigation', async () => {
    const navigated = await get('/kubeconfig', NAVIGATION);
    expect(navigated.status).toBe(200);
    expect(navigated.body).toMatch(/token: eyJ[\w-]+\.eyJ/);
    const fetched = await get('/kubeconfig', { accept: 'text/html', 'sec-fetch-mode': 'cors' });
    expect(fetched.status).toBe(200);
    expect(fetched.body).not.toMatch(/eyJ[\w-]+\.eyJ/);
    expect(fetched.body).toContain('only handed to a page opened in the browser');
  });

  it('a user the policy refuses (email not verified) gets a 403, not their token page', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/`, unverified);
    const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')?.value;
    expect(cookie).toBeDefined();
    for (const path of ['/kubeconfig', '/kubeconfig/download?cluster=lab&variant=token']) {
      const reply = await direct.get(`${stack.service.url}${path}`, {
        cookie: `_forward_auth=${cookie}`,
        'x-forwarded-host': new URL(stack.appUrl).host,
        ...NAVIGATION,
      });
      expect(reply.status).toBe(403);
      expect(reply.body).not.toMatch(/eyJ[\w-]+\.eyJ/);
      expect(reply.body).toContain('not verified');
    }
  });

  it.each([
    ['an unknown cluster', 404, '/kubeconfig/download?cluster=nope'],
    ['an unknown variant', 400, '/kubeconfig/download?cluster=prod&variant=jwt'],
    ['two cluster names', 400, '/kubeconfig/download?cluster=prod&cluster=lab'],
  ])('%s gets a clear %i', async (_name, status, path) => {
    const reply = await get(path, { accept: 'application/json' });
    expect(reply.status).toBe(status);
    expect(reply.json()).toHaveProperty('error');
  });

  it('a tampered session cookie is a 401, never a 500', async () => {
    const reply = await direct.get(`${stack.service.url}/kubeconfig`, {
      cookie: `_forward_auth=${session.slice(0, 40)}x${session.slice(41)}`,
      accept: 'application/json',
    });
    expect(reply.status).toBe(401);
  });

  it('with no clusters configured the page says so and downloads are 404', async () => {
    const service: TestService = await stack.startService({ LOG_LEVEL: 'silent' });
    try {
      const host = new URL(stack.appUrl).host;
      const page = await direct.get(`${service.url}/kubeconfig`, {
        cookie: `_forward_auth=${session}`,
        'x-forwarded-host': host,
        accept: 'text/html',
      });
      expect(page.status).toBe(200);
      expect(page.body).toContain('No clusters are configured');
      const file = await direct.get(`${service.url}/kubeconfig/download`, {
        cookie: `_forward_auth=${session}`,
        'x-forwarded-host': host,
        accept: 'application/json',
      });
      expect(file.status).toBe(404);
    } finally {
      await service.close();
    }
  });
});
