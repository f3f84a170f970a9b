import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS, type Dex, startDex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { headerValues, type RecordedRequest } from '../support/upstream.ts';

/**
 * AUTHENTICATION_CONFIG through real parts (Traefik emulator → dex-forward-auth → Dex stand-in,
 * Redis, echo upstream): a browser login and bearer tokens mapped by the file's CEL expressions,
 * RBAC (AUTHZ_CONFIG rbac files) deciding on the mapped names, a second issuer (a second Dex
 * stand-in) for bearer tokens, the API server's token checks, and a hot reload.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!; // admins, engineering
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!; // engineering
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;

const XHR = { accept: 'application/json', 'x-requested-with': 'XMLHttpRequest' };

function authenticationConfig(issuer: string, partner: string, userPrefix = 'corp:'): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer:
      url: ${issuer}
      audiences: [forward-auth, kubernetes]
      audienceMatchPolicy: MatchAny
    claimValidationRules:
      - expression: "claims.?email_verified.orValue(true) == true"
        message: your email address must be verified by the identity provider
    claimMappings:
      username:
        expression: "'${userPrefix}' + claims.email.split('@')[0]"
      groups:
        expression: "claims.groups.map(g, 'corp:' + g)"
      uid:
        claim: sub
      extra:
        - key: example.com/email
          valueExpression: claims.email
  - issuer:
      url: ${partner}
      audiences: [partner]
    claimMappings:
      username: { claim: sub, prefix: "partner:" }
      groups: { claim: roles, prefix: "partner:" }
    userValidationRules:
      - expression: "user.groups.all(g, g != 'partner:banned')"
        message: banned partners may not sign in
`;
}

const RBAC = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: grafana-view }
rules: [{ verbs: [get, head], nonResourceURLs: ["/grafana", "/grafana/*"] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: grafana-view }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: grafana-view }
subjects:
  - { apiGroup: rbac.authorization.k8s.io, kind: Group, name: "corp:engineering" }
  - { apiGroup: rbac.authorization.k8s.io, kind: Group, name: "partner:viewers" }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: admin-pages }
rules: [{ verbs: ["*"], nonResourceURLs: ["/admin", "/admin/*"] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: admin-pages }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin-pages }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: "corp:admin" }]
`;

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('identity from an AuthenticationConfiguration, end to end', () => {
  let stack: Stack;
  let partner: Dex;
  let dir: string;
  let configPath: string;
  let issuer: string;
  const browsers = new Map<string, Browser>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'authn-flow-'));
    const dexPort = await freePort();
    issuer = `http://127.0.0.1:${dexPort}/`;
    partner = await startDex({
      clients: [{ clientId: 'partner', clientSecret: 'partner-secret-for-tests', redirectUris: [] }],
    });
    configPath = join(dir, 'authentication.yaml');
    writeFileSync(configPath, authenticationConfig(issuer, partner.issuer));
    writeFileSync(join(dir, 'rbac.yaml'), RBAC);
    writeFileSync(join(dir, 'authz.yaml'), 'default: deny\nrbac:\n  files: [rbac.yaml]\n');
    stack = await startStack({
      dex: { port: dexPort },
      env: { AUTHENTICATION_CONFIG: configPath, AUTHZ_CONFIG: join(dir, 'authz.yaml') },
    });
  });
  afterAll(async () => {
    await stack?.close();
    await partner?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function lastUpstream(): RecordedRequest {
    const r = stack.upstream.requests.at(-1);
    if (!r) throw new Error('upstream was not called');
    return r;
  }

  async function as(user: typeof admin): Promise<Browser> {
    const existing = browsers.get(user.login);
    if (existing) return existing;
    const browser = new Browser({ navigation: true });
    const result = await loginThroughDex(browser, `${stack.appUrl}/grafana/`, user);
    expect(result.final.status).toBe(200);
    browsers.set(user.login, browser);
    return browser;
  }

  async function bearer(path: string, token: string) {
    stack.upstream.requests.length = 0;
    return new Browser().get(`${stack.appUrl}${path}`, { ...XHR, authorization: `Bearer ${token}` });
  }

  const claimsOf = (user: typeof admin) => ({
    sub: stack.dex.subjectOf(user),
    email: user.email,
    email_verified: user.emailVerified,
    groups: user.groups,
  });

  describe('the browser login', () => {
    it("maps the user and groups with the file's CEL expressions, and the upstream sees the mapped names", async () => {
      const browser = await as(admin);
      stack.upstream.requests.length = 0;
      expect((await browser.get(`${stack.appUrl}/grafana/d/1`)).status).toBe(200);
      expect(headerValues(lastUpstream(), 'x-auth-request-user')).toEqual(['corp:admin']);
      expect(headerValues(lastUpstream(), 'x-auth-request-groups')).toEqual(['corp:admins,corp:engineering']);
    });

    it('lets RBAC decide on the mapped names: a binding to User corp:admin admits the admin only', async () => {
      const adminBrowser = await as(admin);
      expect((await adminBrowser.get(`${stack.appUrl}/admin/settings`)).status).toBe(200);
      const devBrowser = await as(dev);
      const denied = await devBrowser.get(`${stack.appUrl}/admin/settings`, XHR);
      expect(denied.status).toBe(403);
      expect(denied.json()).toMatchObject({ user: 'corp:dev', groups: ['corp:engineering'] });
    });

    it("refuses, on the denied page, an identity that fails a claim validation rule, showing the rule's message", async () => {
      const browser = new Browser({ navigation: true });
      const result = await loginThroughDex(browser, `${stack.appUrl}/grafana/`, unverified);
      expect(result.final.status).toBe(403);
      expect(result.final.location).toBeUndefined();
      expect(result.final.body).toContain('your email address must be verified by the identity provider');
    });
  });

  describe('bearer pass-through', () => {
    it('accepts a token for the API server (aud kubernetes, one of the audiences) and maps it like a session', async () => {
      const token = await stack.dex.mintIdToken({ ...claimsOf(dev), aud: ['kubernetes'] });
      const reply = await bearer('/grafana/api/search', token);
      expect(reply.status).toBe(200);
      expect(headerValues(lastUpstream(), 'authorization')).toEqual([`Bearer ${token}`]);
      expect(headerValues(lastUpstream(), 'x-auth-request-user')).toEqual(['corp:dev']);
    });

    it("verifies a token of the second issuer against that issuer's own keys and maps it with its entry", async () => {
      const token = await partner.mintIdToken({ sub: 'bob', roles: ['viewers'], aud: 'partner' });
      const reply = await bearer('/grafana/api/search', token);
      expect(reply.status).toBe(200);
      expect(headerValues(lastUpstream(), 'x-auth-request-user')).toEqual(['partner:bob']);
      expect(headerValues(lastUpstream(), 'x-auth-request-groups')).toEqual(['partner:viewers']);
      expect((await bearer('/admin/x', token)).status).toBe(403);
    });

    it("refuses a token of the second issuer signed with the first issuer's key", async () => {
      const token = await partner.mintIdToken(
        { sub: 'bob', roles: ['viewers'], aud: 'partner' },
        { key: stack.dex.privateJwk, kid: stack.dex.kid },
      );
      const reply = await bearer('/grafana/api/search', token);
      expect(reply.status).toBe(401);
      expect(stack.upstream.requests).toHaveLength(0);
    });

    it("refuses a token whose user fails a user validation rule, with the rule's message", async () => {
      const token = await partner.mintIdToken({ sub: 'eve', roles: ['viewers', 'banned'], aud: 'partner' });
      const reply = await bearer('/grafana/api/search', token);
      expect(reply.status).toBe(401);
      expect(reply.headers.get('www-authenticate')).toContain('banned partners may not sign in');
    });

    const now = () => Math.floor(Date.now() / 1000);
    const cases: { name: string; claims: () => Record<string, unknown>; status: number }[] = [
      {
        name: 'an audience that is none of the audiences',
        claims: () => ({ aud: 'someone-else' }),
        status: 401,
      },
      {
        name: 'several audiences of which one matches (MatchAny)',
        claims: () => ({ aud: ['x', 'kubernetes'] }),
        status: 200,
      },
      {
        // What every upstream sees of the gateway's sessions; the file lists the audience, yet one
        // dashboard must not replay it on another (issue 11 item 7).
        name: "a token minted for the gateway's own client, though the file lists its audience",
        claims: () => ({ aud: 'forward-auth' }),
        status: 401,
      },
      { name: 'an expired token (no leeway)', claims: () => ({ exp: now() - 5 }), status: 401 },
      { name: 'a token without exp', claims: () => ({ exp: undefined }), status: 401 },
      {
        name: 'a token not valid for another five minutes (nbf)',
        claims: () => ({ nbf: now() + 300 }),
        status: 401,
      },
      {
        name: 'a token valid in thirty seconds (nbf within the minute of leeway)',
        claims: () => ({ aud: 'kubernetes', nbf: now() + 30 }),
        status: 200,
      },
    ];
    for (const c of cases) {
      it(`answers ${c.status} for ${c.name}`, async () => {
        const token = await stack.dex.mintIdToken({ ...claimsOf(dev), ...c.claims() });
        expect((await bearer('/grafana/api/search', token)).status).toBe(c.status);
      });
    }
  });

  describe('reloading the file', () => {
    it('re-maps a live session without a new login, and keeps the last good file when a new one is broken', async () => {
      const browser = await as(admin);
      writeFileSync(configPath, authenticationConfig(issuer, partner.issuer, 'staff:'));
      await until(async () => {
        stack.upstream.requests.length = 0;
        await browser.get(`${stack.appUrl}/grafana/d/1`);
        return headerValues(lastUpstream(), 'x-auth-request-user')[0] === 'staff:admin';
      }, 'the new mapping');

      writeFileSync(configPath, authenticationConfig(issuer, partner.issuer, "x' +"));
      await until(
        async () => stack.service.logs.text.includes('authentication configuration NOT reloaded'),
        'the refusal in the log',
      );
      stack.upstream.requests.length = 0;
      expect((await browser.get(`${stack.appUrl}/grafana/d/1`)).status).toBe(200);
      expect(headerValues(lastUpstream(), 'x-auth-request-user')).toEqual(['staff:admin']);
      const metrics = await (await fetch(`${stack.service.url}/metrics`)).text();
      expect(metrics).toMatch(/policy_reloads_total\{source="authentication",result="ok"\} 1/);
      expect(metrics).toMatch(/policy_last_reload_ok\{source="authentication"\} 0/);
    });
  });
});
