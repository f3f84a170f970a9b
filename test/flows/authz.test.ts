import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, importJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS, type DexUser } from '../support/dex.ts';
import { type KubeApi, startKubeApi } from '../support/kubeApi.ts';
import { CLIENT_ID, type Stack, startStack, UPSTREAM_HEADERS } from '../support/stack.ts';
import { headerValues, type RecordedRequest } from '../support/upstream.ts';

/**
 * Authorization through real parts (Traefik emulator → dex-forward-auth → Dex stand-in, echo
 * upstream): per-route rules, RBAC files, denial pages and JSON, bearer pass-through, hot reload,
 * the live-cluster RBAC watch (against the Kubernetes list/watch stand-in in test/support/kubeApi.ts
 * — not a real API server) and impersonation mode.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!; // groups admins, engineering
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!; // group engineering
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;

const POLICY = `
default: deny
rules:
  - path: /admin
    allow: { groups: ["oidc:admins"] }
  - path: /team
    allow: { emailDomains: ["example.com"] }
  - host: "*.nowhere.localhost"
    allow: { users: ["nobody@example.com"] }
rbac:
  files: ["rbac/*.yaml"]
`;

const RBAC = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: grafana-view }
rules:
  - verbs: [get, head]
    nonResourceURLs: ["/grafana", "/grafana/*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: grafana-view-engineering }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: grafana-view }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: Group, name: "oidc:engineering" }]
---
# A D2iQ/Kommander-style role: a full URL with scheme and host.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: reports }
rules:
  - verbs: ["*"]
    nonResourceURLs: ["http://other.localhost:*/reports/**"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: reports-dev }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reports }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: "dev@example.com" }]
`;

const BOOTSTRAP = new URL('../fixtures/kubernetes-bootstrap-rbac.yaml', import.meta.url);

const XHR = { accept: 'application/json', 'x-requested-with': 'XMLHttpRequest' };
const NAVIGATION = {
  accept: 'text/html,application/xhtml+xml',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
};

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function b64(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('per-route rules, RBAC files and bearer tokens', () => {
  let stack: Stack;
  let dir: string;
  let policyPath: string;
  const browsers = new Map<string, Browser>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'authz-flow-'));
    mkdirSync(join(dir, 'rbac'));
    writeFileSync(join(dir, 'rbac', 'grafana.yaml'), RBAC);
    // Kubernetes' own RBAC objects, as `kubectl get clusterroles,clusterrolebindings -o yaml` lists them.
    copyFileSync(BOOTSTRAP, join(dir, 'rbac', 'kubernetes-bootstrap.yaml'));
    policyPath = join(dir, 'authz.yaml');
    writeFileSync(policyPath, POLICY);
    stack = await startStack({
      redis: false,
      env: { AUTHZ_CONFIG: policyPath, OIDC_GROUPS_PREFIX: 'oidc:', BEARER_AUDIENCES: 'kubernetes' },
    });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function lastUpstream(): RecordedRequest {
    const r = stack.upstream.requests.at(-1);
    if (!r) throw new Error('upstream was not called');
    return r;
  }

  /** A logged-in browser per user (logging in lands on `/team/`, open to example.com addresses). */
  async function as(user: DexUser): Promise<Browser> {
    const existing = browsers.get(user.login);
    if (existing) return existing;
    const browser = new Browser({ navigation: true });
    const result = await loginThroughDex(browser, `${stack.appUrl}/team/`, user);
    expect(result.final.status).toBe(200);
    browsers.set(user.login, browser);
    return browser;
  }

  async function bearer(
    path: string,
    token: string,
    headers: Record<string, string> = XHR,
    base = stack.appUrl,
  ) {
    stack.upstream.requests.length = 0;
    return new Browser().get(`${base}${path}`, { ...headers, authorization: `Bearer ${token}` });
  }

  /** A token minted for the API server (BEARER_AUDIENCES=kubernetes), as kubectl gets one. */
  const claimsOf = (user: DexUser) => ({
    sub: stack.dex.subjectOf(user),
    aud: 'kubernetes',
    email: user.email,
    email_verified: user.emailVerified,
    groups: user.groups,
  });

  describe('rules', () => {
    it('lets an admin into /admin and hands the upstream the prefixed groups', async () => {
      const browser = await as(admin);
      stack.upstream.requests.length = 0;
      const reply = await browser.get(`${stack.appUrl}/admin/settings`);
      expect(reply.status).toBe(200);
      expect(headerValues(lastUpstream(), 'x-auth-request-groups')).toEqual(['oidc:admins,oidc:engineering']);
    });

    it('shows a non-admin a 403 page: who they are, the groups seen, what would have allowed it, sign out', async () => {
      const browser = await as(dev);
      stack.upstream.requests.length = 0;
      const reply = await browser.get(`${stack.appUrl}/admin/settings`);
      expect(reply.status).toBe(403);
      expect(reply.location).toBeUndefined();
      expect(reply.headers.get('content-type')).toContain('text/html');
      expect(reply.body).toContain('dev@example.com');
      expect(reply.body).toContain('oidc:engineering');
      expect(reply.body).toContain('What would have allowed it');
      expect(reply.body).toMatch(/the group <code>oidc:admins<\/code>/);
      expect(reply.body).toContain('/oauth2/sign_out');
      expect(reply.headers.getSetCookie().some((c) => c.includes('_login'))).toBe(false);
      expect(stack.upstream.requests).toHaveLength(0);
    });

    it('answers an XHR with 403 JSON naming what was missing, never a redirect', async () => {
      const browser = await as(dev);
      const reply = await browser.get(`${stack.appUrl}/admin/api/users`, XHR);
      expect(reply.status).toBe(403);
      expect(reply.location).toBeUndefined();
      expect(reply.json()).toMatchObject({
        error: 'forbidden',
        user: 'dev@example.com',
        groups: ['oidc:engineering'],
        allowedBy: { groups: ['oidc:admins'] },
      });
    });

    it('refuses, with a 400 and not a pass, a path that hides /admin behind dot segments', async () => {
      const browser = await as(dev);
      stack.upstream.requests.length = 0;
      const reply = await browser.get(`${stack.appUrl}/team/..%2Fadmin/settings`, XHR);
      expect(reply.status).toBe(400);
      expect(stack.upstream.requests).toHaveLength(0);
    });

    it('refuses everything else by default, with a page that says so', async () => {
      const browser = await as(admin);
      const reply = await browser.get(`${stack.appUrl}/not-covered`);
      expect(reply.status).toBe(403);
      expect(reply.body).toContain('No ClusterRoleBinding grants you');
    });

    it('refuses a user whose email is not verified, whatever the rules say', async () => {
      const browser = new Browser({ navigation: true });
      const result = await loginThroughDex(browser, `${stack.appUrl}/team/`, unverified);
      expect(result.final.status).toBe(403);
      expect(result.final.location).toBeUndefined();
    });
  });

  describe('RBAC files', () => {
    it('a ClusterRoleBinding to an oidc: group grants its verbs on its nonResourceURLs', async () => {
      const browser = await as(dev);
      expect((await browser.get(`${stack.appUrl}/grafana/d/home`)).status).toBe(200);
      expect((await browser.get(`${stack.appUrl}/grafana`)).status).toBe(200);
      const post = await browser.get(`${stack.appUrl}/grafana/api/dashboards`, XHR);
      expect(post.status).toBe(200);
    });

    it("Kubernetes' bootstrap bindings (system:discovery, system:public-info-viewer) open no dashboard API", async () => {
      const browser = await as(dev);
      for (const path of [
        '/api',
        '/api/v1/query?query=up',
        '/apis/argoproj.io/v1alpha1/applications',
        '/version',
        '/healthz',
        '/livez',
      ]) {
        const reply = await browser.get(`${stack.appUrl}${path}`, XHR);
        expect(reply.status, path).toBe(403);
      }
    });

    it('the verb is the method: a POST is refused where only get is granted', async () => {
      const browser = await as(dev);
      const reply = await browser.post(`${stack.appUrl}/grafana/api/dashboards`, { a: '1' }, XHR);
      expect(reply.status).toBe(403);
      expect(reply.json()).toMatchObject({ allowedBy: { groups: [], users: [] } });
    });

    it('a full-URL entry (D2iQ style) grants on its host only, to the bound User', async () => {
      // The session cookie is host-only: each host gets its own login.
      const onOther = async (user: DexUser) =>
        (await loginThroughDex(new Browser({ navigation: true }), `${stack.otherUrl}/reports/2024/q1`, user))
          .final;
      expect((await onOther(dev)).status).toBe(200);
      expect((await onOther(admin)).status).toBe(403);
      expect((await (await as(dev)).get(`${stack.appUrl}/reports/2024/q1`)).status).toBe(403);
    });
  });

  describe('bearer tokens', () => {
    it('a valid token of our issuer is accepted without a session and passed on unchanged', async () => {
      const token = await stack.dex.mintIdToken(claimsOf(dev));
      const reply = await bearer('/grafana/api/search', token);
      expect(reply.status).toBe(200);
      expect(reply.headers.getSetCookie()).toEqual([]);
      expect(headerValues(lastUpstream(), 'authorization')).toEqual([`Bearer ${token}`]);
      expect(headerValues(lastUpstream(), 'x-auth-request-user')).toEqual(['dev@example.com']);
    });

    it('a cross-client token (aud array with azp) is accepted when it names a bearer audience', async () => {
      const token = await stack.dex.mintIdToken({
        ...claimsOf(dev),
        aud: ['kubernetes', 'kubectl'],
        azp: 'kubectl',
      });
      expect((await bearer('/grafana/x', token)).status).toBe(200);
    });

    it('the same policy applies: a valid token of a non-admin gets 403 at /admin, not a login', async () => {
      const token = await stack.dex.mintIdToken(claimsOf(dev));
      const json = await bearer('/admin/x', token);
      expect(json.status).toBe(403);
      expect(json.json()).toMatchObject({ error: 'forbidden', user: 'dev@example.com' });
      const page = await bearer('/admin/x', token, NAVIGATION);
      expect(page.status).toBe(403);
      expect(page.location).toBeUndefined();
      expect(stack.upstream.requests).toHaveLength(0);
    });

    it('nbf gets a minute of leeway', async () => {
      const now = Math.floor(Date.now() / 1000);
      expect(
        (await bearer('/grafana/x', await stack.dex.mintIdToken({ ...claimsOf(dev), nbf: now + 30 }))).status,
      ).toBe(200);
      expect(
        (await bearer('/grafana/x', await stack.dex.mintIdToken({ ...claimsOf(dev), nbf: now + 120 })))
          .status,
      ).toBe(401);
    });

    const refused: [string, () => Promise<string>][] = [
      ['another audience', () => stack.dex.mintIdToken({ ...claimsOf(dev), aud: 'grafana' })],
      [
        "a token minted for the gateway's own client (what every upstream sees)",
        () => stack.dex.mintIdToken({ ...claimsOf(dev), aud: ['kubernetes', CLIENT_ID], azp: CLIENT_ID }),
      ],
      [
        'an expired token (no leeway)',
        () => stack.dex.mintIdToken({ ...claimsOf(dev), exp: Math.floor(Date.now() / 1000) - 2 }),
      ],
      ['no exp at all', () => stack.dex.mintIdToken({ ...claimsOf(dev), exp: undefined })],
      [
        'a key the issuer never published',
        async () => {
          const { privateKey } = await generateKeyPair('RS256', { extractable: true });
          return stack.dex.mintIdToken(claimsOf(dev), { key: privateKey, kid: 'foreign-key' });
        },
      ],
      [
        "a foreign key under the issuer's kid",
        async () => {
          const { privateKey } = await generateKeyPair('RS256', { extractable: true });
          return stack.dex.mintIdToken(claimsOf(dev), { key: privateKey });
        },
      ],
      [
        'alg: none',
        async () => {
          const now = Math.floor(Date.now() / 1000);
          const payload = {
            ...claimsOf(dev),
            iss: stack.dex.issuer,
            aud: CLIENT_ID,
            iat: now,
            exp: now + 600,
          };
          return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
        },
      ],
      [
        'HS256 keyed with the public key',
        async () => {
          const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = stack.dex.privateJwk;
          const pem = await exportSPKI(
            (await importJWK(publicJwk, 'RS256')) as Parameters<typeof exportSPKI>[0],
          );
          return stack.dex.mintIdToken(claimsOf(dev), { alg: 'HS256', key: new TextEncoder().encode(pem) });
        },
      ],
      ['ES256, not in the allow-list', () => stack.dex.mintIdToken(claimsOf(dev), { alg: 'ES256' })],
      ['email_verified: false', () => stack.dex.mintIdToken(claimsOf(unverified))],
    ];

    it.each(refused)(
      'refuses %s with 401 invalid_token, never a login and never upstream',
      async (_name, mint) => {
        const token = await mint();
        for (const headers of [XHR, NAVIGATION]) {
          const reply = await bearer('/grafana/x', token, headers);
          expect(reply.status).toBe(401);
          expect(reply.location).toBeUndefined();
          expect(reply.headers.get('www-authenticate')).toContain('error="invalid_token"');
          expect(reply.headers.getSetCookie()).toEqual([]);
          expect(stack.upstream.requests).toHaveLength(0);
        }
      },
    );

    it('a refused token does not spoil a valid session: the cookie decides and the session token goes up', async () => {
      const browser = await as(dev);
      const token = await stack.dex.mintIdToken({ ...claimsOf(dev), aud: 'grafana' });
      stack.upstream.requests.length = 0;
      const reply = await browser.get(`${stack.appUrl}/grafana/x`, { authorization: `Bearer ${token}` });
      expect(reply.status).toBe(200);
      const sent = headerValues(lastUpstream(), 'authorization');
      expect(sent).toHaveLength(1);
      expect(sent[0]).not.toBe(`Bearer ${token}`);
    });

    it('a token of another issuer is not ours: without a session it is simply unauthenticated', async () => {
      const now = Math.floor(Date.now() / 1000);
      const foreign = await stack.dex.mintIdToken({
        ...claimsOf(dev),
        iss: 'https://elsewhere.example.com/',
        exp: now + 600,
      });
      const reply = await bearer('/grafana/x', foreign);
      expect(reply.status).toBe(401);
      expect(reply.headers.get('www-authenticate')).not.toContain('invalid_token');
    });
  });

  describe('hot reload', () => {
    it('a changed policy file applies without a restart; a broken one keeps the last good policy and says why', async () => {
      const browser = await as(dev);
      expect((await browser.get(`${stack.appUrl}/admin/x`, XHR)).status).toBe(403);

      writeFileSync(policyPath, POLICY.replace('["oidc:admins"]', '["oidc:admins", "oidc:engineering"]'));
      await until(
        async () => (await browser.get(`${stack.appUrl}/admin/x`, XHR)).status === 200,
        'the new policy',
      );

      writeFileSync(policyPath, `${POLICY}\nrules: [`);
      const metrics = async () => (await new Browser().get(`${stack.service.url}/metrics`)).body;
      await until(
        async () =>
          /dex_forward_auth_policy_reloads_total\{source="file",result="error"\} 1/.test(await metrics()),
        'the reload error metric',
      );
      expect(await metrics()).toMatch(/dex_forward_auth_policy_last_reload_ok\{source="file"\} 0/);
      expect((await browser.get(`${stack.appUrl}/admin/x`, XHR)).status).toBe(200);
      expect(stack.service.logs.text).toContain(
        'authorization policy NOT reloaded: keeping the last good policy',
      );
      const ready = JSON.parse((await new Browser().get(`${stack.service.url}/readyz`)).body);
      expect(ready.authz).toMatchObject({
        mode: 'policy',
        lastReloadError: expect.stringContaining('authz.yaml'),
      });

      writeFileSync(policyPath, POLICY);
      await until(
        async () => (await browser.get(`${stack.appUrl}/admin/x`, XHR)).status === 403,
        'the restored policy',
      );
    });
  });
});

describe('RBAC watched live from the cluster (Kubernetes list/watch stand-in, not a real API server)', () => {
  let stack: Stack;
  let kube: KubeApi;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'authz-kube-flow-'));
    const bootstrap = (parseYaml(readFileSync(BOOTSTRAP, 'utf8')) as { items: Record<string, unknown>[] })
      .items;
    kube = await startKubeApi({
      objects: [
        ...bootstrap,
        {
          kind: 'ClusterRole',
          metadata: { name: 'dashboard-view' },
          rules: [{ verbs: ['get'], nonResourceURLs: ['/dashboard/*'] }],
        },
      ],
    });
    const policyPath = join(dir, 'authz.yaml');
    writeFileSync(policyPath, 'rbac: { kubernetes: true }\n');
    stack = await startStack({
      redis: false,
      env: { AUTHZ_CONFIG: policyPath, AUTHZ_KUBECONFIG: kube.writeKubeconfig(dir) },
    });
  });
  afterAll(async () => {
    await stack?.close();
    await kube?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a binding created in the cluster opens the page; deleting it closes it again', async () => {
    const browser = new Browser({ navigation: true });
    const login = await loginThroughDex(browser, `${stack.appUrl}/dashboard/`, dev);
    expect(login.final.status).toBe(403);

    kube.apply({
      kind: 'ClusterRoleBinding',
      metadata: { name: 'dashboard-view-dev' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'dashboard-view' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'dev@example.com' }],
    });
    await until(async () => (await browser.get(`${stack.appUrl}/dashboard/`)).status === 200, 'the binding');

    kube.remove('ClusterRoleBinding', 'dashboard-view-dev');
    await until(async () => (await browser.get(`${stack.appUrl}/dashboard/`)).status === 403, 'the deletion');
    expect(kube.requests.some((r) => r.watch)).toBe(true);
  });

  it("the cluster's bootstrap bindings open no dashboard; a binding annotated dex-forward-auth/dashboards opts in", async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/dashboard/`, dev);
    for (const path of ['/api/v1/namespaces', '/apis/apps/v1', '/version', '/healthz']) {
      expect((await browser.get(`${stack.appUrl}${path}`, XHR)).status, path).toBe(403);
    }
    // The API server re-creates its bootstrap objects; one updated live still grants nothing.
    kube.apply({
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:discovery', labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:discovery' },
      subjects: [
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:authenticated' },
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' },
      ],
    });
    kube.apply({
      kind: 'ClusterRoleBinding',
      metadata: { name: 'dashboard-everyone', annotations: { 'dex-forward-auth/dashboards': 'true' } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'dashboard-view' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:authenticated' }],
    });
    await until(async () => (await browser.get(`${stack.appUrl}/dashboard/`)).status === 200, 'the opt-in');
    expect((await browser.get(`${stack.appUrl}/api/v1/namespaces`, XHR)).status).toBe(403);
    kube.remove('ClusterRoleBinding', 'dashboard-everyone');
  });
});

describe('impersonation mode (UPSTREAM_AUTH=impersonate)', () => {
  let stack: Stack;
  let dir: string;
  const SA_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.service-account.token';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'authz-imp-'));
    const tokenPath = join(dir, 'token');
    writeFileSync(tokenPath, `${SA_TOKEN}\n`);
    stack = await startStack({
      redis: false,
      env: {
        UPSTREAM_AUTH: 'impersonate',
        TRUSTED_PROXIES: '127.0.0.1/32',
        SERVICE_ACCOUNT_TOKEN_PATH: tokenPath,
        OIDC_GROUPS_PREFIX: 'oidc:',
        BEARER_AUDIENCES: 'kubernetes',
        UPSTREAM_GROUPS_MAX_BYTES: '20',
      },
      // As the README documents: the regex strips every client-sent Impersonate-* header.
      gateway: {
        forwardAuth: { authResponseHeaders: UPSTREAM_HEADERS, authResponseHeadersRegex: '^Impersonate-' },
      },
    });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function lastUpstream(): RecordedRequest {
    const r = stack.upstream.requests.at(-1);
    if (!r) throw new Error('upstream was not called');
    return r;
  }

  it('the upstream gets the service-account token, Impersonate-User and one Impersonate-Group per group', async () => {
    const browser = new Browser({ navigation: true });
    const result = await loginThroughDex(browser, `${stack.appUrl}/api/v1/namespaces`, admin);
    expect(result.final.status).toBe(200);
    const seen = lastUpstream();
    expect(headerValues(seen, 'authorization')).toEqual([`Bearer ${SA_TOKEN}`]);
    expect(headerValues(seen, 'impersonate-user')).toEqual(['admin@example.com']);
    expect(headerValues(seen, 'impersonate-group')).toEqual([
      'oidc:admins',
      'oidc:engineering',
      'system:authenticated',
    ]);
    // UPSTREAM_GROUPS_MAX_BYTES=20 bounds the groups header at whole groups (never Impersonate-Group).
    expect(headerValues(seen, 'x-auth-request-groups')).toEqual(['oidc:admins']);
  });

  it('a decision request carrying client-sent Impersonate-* headers is refused: nothing reaches the upstream', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/`, dev);
    stack.upstream.requests.length = 0;
    const reply = await browser.get(`${stack.appUrl}/api/v1/secrets`, {
      'impersonate-user': 'system:admin',
      'impersonate-group': 'system:masters',
      'impersonate-uid': '0',
      'impersonate-extra-scopes': 'everything',
    });
    expect(reply.status).toBe(400);
    expect(stack.upstream.requests).toEqual([]);
  });

  it('Impersonate-* headers hidden from the decision (named in Connection) are still stripped by the regex', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/`, dev);
    stack.upstream.requests.length = 0;
    const reply = await browser.get(`${stack.appUrl}/api/v1/secrets`, {
      'impersonate-user': 'system:admin',
      'impersonate-group': 'system:masters',
      connection: 'Impersonate-User, Impersonate-Group',
    });
    expect(reply.status).toBe(200);
    const seen = lastUpstream();
    expect(headerValues(seen, 'impersonate-user')).toEqual(['dev@example.com']);
    expect(headerValues(seen, 'impersonate-group')).toEqual(['oidc:engineering', 'system:authenticated']);
    expect(headerValues(seen, 'impersonate-uid')).toEqual([]);
    expect(headerValues(seen, 'authorization')).toEqual([`Bearer ${SA_TOKEN}`]);
  });

  it('a token naming a system: user is refused with a 403 that says why, never impersonated', async () => {
    const token = await stack.dex.mintIdToken({
      sub: stack.dex.subjectOf(dev),
      email: 'system:kube-controller-manager',
      email_verified: true,
      groups: [],
      aud: 'kubernetes',
    });
    stack.upstream.requests.length = 0;
    const reply = await new Browser().get(`${stack.appUrl}/api/v1/secrets`, {
      ...XHR,
      authorization: `Bearer ${token}`,
    });
    expect(reply.status).toBe(403);
    expect((reply.json() as { message: string }).message).toMatch(/system:/);
    expect(stack.upstream.requests).toHaveLength(0);
    expect(stack.service.logs.text).toContain('impersonation refused');
  });

  it('a bearer token minted for the API server (BEARER_AUDIENCES=kubernetes) is impersonated too', async () => {
    const token = await stack.dex.mintIdToken({
      sub: stack.dex.subjectOf(dev),
      email: dev.email,
      email_verified: true,
      groups: dev.groups,
      aud: 'kubernetes',
    });
    stack.upstream.requests.length = 0;
    const reply = await new Browser().get(`${stack.appUrl}/api/v1/pods`, {
      ...XHR,
      authorization: `Bearer ${token}`,
    });
    expect(reply.status).toBe(200);
    expect(headerValues(lastUpstream(), 'authorization')).toEqual([`Bearer ${SA_TOKEN}`]);
    expect(headerValues(lastUpstream(), 'impersonate-user')).toEqual(['dev@example.com']);
  });
});

describe('impersonation with groups as the identity provider writes them (no OIDC_GROUPS_PREFIX)', () => {
  let stack: Stack;
  let dir: string;
  const mallory: DexUser = {
    login: 'mallory@example.com',
    password: 'password',
    userId: 'mallory-0001',
    email: 'mallory@example.com',
    emailVerified: true,
    name: 'mallory',
    groups: ['engineering', 'system:masters'],
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'authz-imp-raw-'));
    const tokenPath = join(dir, 'token');
    writeFileSync(tokenPath, 'sa-token\n');
    stack = await startStack({
      redis: false,
      env: {
        UPSTREAM_AUTH: 'impersonate',
        TRUSTED_PROXIES: '127.0.0.1/32',
        SERVICE_ACCOUNT_TOKEN_PATH: tokenPath,
      },
      dex: { users: [...DEMO_USERS, mallory] },
      gateway: {
        forwardAuth: { authResponseHeaders: UPSTREAM_HEADERS, authResponseHeadersRegex: '^Impersonate-' },
      },
    });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a Dex group named system:masters gets a 403 page naming it, and the API server is never asked', async () => {
    const browser = new Browser({ navigation: true });
    stack.upstream.requests.length = 0;
    const result = await loginThroughDex(browser, `${stack.appUrl}/api/v1/secrets`, mallory);
    expect(result.final.status).toBe(403);
    expect(result.final.body).toContain('system:masters');
    expect(result.final.body).toContain('reserved by Kubernetes');
    expect(stack.upstream.requests).toHaveLength(0);
    const line = stack.service.logs
      .records()
      .find((r) => String(r['msg']).startsWith('impersonation refused'));
    expect(line).toMatchObject({ user: 'mallory@example.com' });
  });

  it('other users of the same stack are impersonated as before', async () => {
    const result = await loginThroughDex(
      new Browser({ navigation: true }),
      `${stack.appUrl}/api/v1/pods`,
      dev,
    );
    expect(result.final.status).toBe(200);
    expect(headerValues(stack.upstream.requests.at(-1)!, 'impersonate-group')).toEqual([
      'engineering',
      'system:authenticated',
    ]);
  });
});

/**
 * `email_verified` that is present but not the boolean true ("false" as text, 0) is not
 * verified: the API server refuses such a token ("oidc: parse 'email_verified' claim"), so the
 * session path refuses it too, an `emailDomains` rule does not admit the address, and
 * impersonation mode never impersonates it (issue 11 review).
 */
describe.each<{ mode: string; env: Record<string, string> }>([
  { mode: 'id-token', env: {} },
  { mode: 'impersonate', env: { UPSTREAM_AUTH: 'impersonate', TRUSTED_PROXIES: '127.0.0.1/32' } },
])('email_verified of the wrong type ($mode)', ({ env }) => {
  let stack: Stack;
  let dir: string;
  const typed = (login: string, emailVerified: unknown): DexUser => ({
    login,
    password: 'password',
    userId: `uid-${login}`,
    email: login,
    emailVerified: emailVerified as boolean,
    name: login,
    groups: ['engineering'],
  });
  const wrongType = [typed('mallory@example.com', 'false'), typed('eve@example.com', 0)];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'authz-ev-'));
    writeFileSync(
      join(dir, 'policy.yaml'),
      'default: deny\nrules:\n  - allow: { emailDomains: ["example.com"] }\n',
    );
    writeFileSync(join(dir, 'token'), 'sa-token\n');
    stack = await startStack({
      redis: false,
      env: { ...env, AUTHZ_CONFIG: join(dir, 'policy.yaml'), SERVICE_ACCOUNT_TOKEN_PATH: join(dir, 'token') },
      dex: { users: [...DEMO_USERS, ...wrongType] },
    });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets a verified example.com user in (the rule works)', async () => {
    const result = await loginThroughDex(new Browser({ navigation: true }), `${stack.appUrl}/home`, dev);
    expect(result.final.status).toBe(200);
  });

  it.each(wrongType.map((u) => [JSON.stringify(u.emailVerified), u] as const))(
    'refuses email_verified %s like false: a 403 and nothing upstream',
    async (_name, user) => {
      stack.upstream.requests.length = 0;
      const result = await loginThroughDex(new Browser({ navigation: true }), `${stack.appUrl}/home`, user);
      expect(result.final.status).toBe(403);
      expect(result.final.body).toContain('not verified');
      expect(stack.upstream.requests).toHaveLength(0);
    },
  );
});
