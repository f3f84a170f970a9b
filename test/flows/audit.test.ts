import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sealer } from '../../src/session/seal.ts';
import type { SessionCookieData } from '../../src/session/sessions.ts';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { waitUntil as waitFor } from '../support/redis.ts';
import { TEST_COOKIE_SECRET } from '../support/service.ts';
import { CLIENT_SECRET, type Stack, startStack } from '../support/stack.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * The audit stream (issue 16 item 4) of three replica processes behind the Traefik emulator, one
 * real Redis and the strict Dex stand-in: each replica writes its own events, under its POD_NAME,
 * onto the stdout its logs go to; a refresh made once is audited once; nothing secret is in it.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!; // groups admins, engineering
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!; // group engineering
const REPLICAS = ['replica-a', 'replica-b', 'replica-c'];
const TTL = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const POLICY = `
default: deny
rules:
  - path: /admin
    allow: { groups: ["oidc:admins"] }
rbac:
  files: ["rbac/*.yaml"]
`;

const RBAC = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: grafana-view }
rules:
  - verbs: [get]
    nonResourceURLs: ["/grafana", "/grafana/*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: grafana-view-engineering }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: grafana-view }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: Group, name: "oidc:engineering" }]
`;

type Event = Record<string, unknown> & { event: string; replica: string };

let stack: Stack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'audit-flow-'));
  mkdirSync(join(dir, 'rbac'));
  writeFileSync(join(dir, 'rbac', 'grafana.yaml'), RBAC);
  writeFileSync(join(dir, 'authz.yaml'), POLICY);
  stack = await startStack({
    dex: { idTokenTtl: TTL, refreshMode: 'strict' },
    env: {
      AUTHZ_CONFIG: join(dir, 'authz.yaml'),
      OIDC_GROUPS_PREFIX: 'oidc:',
      REFRESH_SKEW: '1h', // capped at half the lifetime: due after 2 s
      LOG_LEVEL: 'info',
    },
    replicas: {
      count: 3,
      processes: true,
      inProcess: false,
      envOf: (i) => ({ POD_NAME: REPLICAS[i]! }),
    },
  });
}, 60_000);

afterAll(async () => {
  await stack?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Every line of every replica's stdout that says `"audit":true`. */
const auditLines = (): string[] =>
  stack.replicas.flatMap((r) =>
    r
      .output()
      .split('\n')
      .filter((l) => l.includes('"audit":true')),
  );
const events = (): Event[] => auditLines().map((l) => JSON.parse(l) as Event);
const eventsOf = (type: string, where: (e: Event) => boolean = () => true) =>
  events().filter((e) => e.event === type && where(e));

async function login(user: { login: string; password: string }, path: string): Promise<Browser> {
  const browser = new Browser({ navigation: true });
  const result = await loginThroughDex(browser, `${stack.appUrl}${path}`, user);
  expect(result.final.status).toBe(200);
  return browser;
}

/** Until `condition` holds (the replicas' output arrives asynchronously). */
const waitUntil = (what: string, condition: () => boolean) => waitFor(what, async () => condition());

const json = (id: string) => ({ accept: 'application/json', 'x-request-id': id });

describe('the audit stream of three replicas', () => {
  it('writes each decision once, by the replica that made it, naming the rule or the ClusterRoleBinding that decided', async () => {
    const browser = await login(admin, '/admin/start');
    await waitUntil(
      'the login event',
      () => eventsOf('login', (e) => e['user'] === admin.login).length === 1,
    );
    const [loginEvent] = eventsOf('login', (e) => e['user'] === admin.login);
    expect(loginEvent).toMatchObject({
      audit: true,
      host: new URL(stack.appUrl).host,
      path: '/oauth2/callback',
      method: 'GET',
      client: '127.0.0.1',
      groups: ['oidc:admins', 'oidc:engineering'],
    });
    expect(REPLICAS).toContain(loginEvent!.replica);
    expect(Date.parse(String(loginEvent!['time']))).not.toBeNaN();

    // Round robin: six requests, two per replica; each decision is on record exactly once.
    for (let i = 0; i < 6; i++) {
      expect((await browser.get(`${stack.appUrl}/admin/${i}`, json(`rule-${i}`))).status).toBe(200);
    }
    expect((await browser.get(`${stack.appUrl}/grafana/d/1`, json('binding-1'))).status).toBe(200);
    expect((await browser.get(`${stack.appUrl}/closed`, json('closed-1'))).status).toBe(403);
    const id = (e: Event) => String(e['requestId']);
    // Each replica writes its lines a moment later (batched), each at its own pace: wait for all.
    const written = (ids: string[]) => ids.every((i) => eventsOf('decision', (e) => id(e) === i).length > 0);
    await waitUntil('the decisions', () =>
      written(['rule-0', 'rule-1', 'rule-2', 'rule-3', 'rule-4', 'rule-5', 'binding-1', 'closed-1']),
    );
    await sleep(300); // a second copy of one, were there one, would be written by now

    const byRule = eventsOf('decision', (e) => id(e).startsWith('rule-'));
    expect(byRule.map(id).sort()).toEqual(['rule-0', 'rule-1', 'rule-2', 'rule-3', 'rule-4', 'rule-5']);
    expect(new Set(byRule.map((e) => e.replica))).toEqual(new Set(REPLICAS));
    expect(byRule[0]).toMatchObject({
      decision: 'allow',
      status: 200,
      user: admin.login,
      groups: ['oidc:admins', 'oidc:engineering'],
      host: new URL(stack.appUrl).host,
      method: 'GET',
      client: '127.0.0.1',
      source: 'rule',
      rule: { index: 1, match: '/admin' },
    });
    expect(eventsOf('decision', (e) => id(e) === 'binding-1')).toEqual([
      expect.objectContaining({ decision: 'allow', source: 'rbac', binding: 'grafana-view-engineering' }),
    ]);
    // No rule matches and no binding grants it: RBAC refused (and no binding is named).
    const [refused] = eventsOf('decision', (e) => id(e) === 'closed-1');
    expect(refused).toMatchObject({
      decision: 'deny',
      status: 403,
      source: 'rbac',
      reason: 'forbidden',
      path: '/closed',
    });
    expect(refused).not.toHaveProperty('binding');

    const other = await login(dev, '/grafana/start');
    expect((await other.get(`${stack.appUrl}/admin/x`, json('rule-deny-1'))).status).toBe(403);
    expect((await new Browser().get(`${stack.appUrl}/admin/x`, json('anonymous-1'))).status).toBe(401);
    await waitUntil('the denials', () => written(['rule-deny-1', 'anonymous-1']));
    expect(eventsOf('decision', (e) => id(e) === 'rule-deny-1')).toEqual([
      expect.objectContaining({
        decision: 'deny',
        user: dev.login,
        source: 'rule',
        rule: { index: 1, match: '/admin' },
      }),
    ]);
    const [anonymous] = eventsOf('decision', (e) => id(e) === 'anonymous-1');
    expect(anonymous).toMatchObject({ decision: 'unauthenticated', status: 401, path: '/admin/x' });
    expect(anonymous).not.toHaveProperty('user');
  });

  it('audits a refresh done once exactly once, and a sign-out with the session it ended; no token, cookie, secret or code is ever in it', async () => {
    const sealer = new Sealer([{ id: '1', secret: TEST_COOKIE_SECRET }]);
    const secrets = new Map<string, string>([
      ['client secret', CLIENT_SECRET],
      ['cookie secret', TEST_COOKIE_SECRET],
    ]);
    const browser = new Browser({ navigation: true });
    const result = await loginThroughDex(browser, `${stack.appUrl}/grafana/a`, admin);
    expect(result.final.status).toBe(200);
    const callback = result.chain.find((r) => r.url.includes('/oauth2/callback'))!;
    secrets.set('authorization code', new URL(callback.url).searchParams.get('code')!);
    const loginCookie = result.chain
      .flatMap((r) => r.headers.getSetCookie())
      .find((c) => c.startsWith('_forward_auth_login_') && !c.includes('=;'));
    if (loginCookie) secrets.set('login cookie', loginCookie.split(';')[0]!.split('=')[1]!);
    const recordSession = async (label: string) => {
      const value = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
      secrets.set(`${label} session cookie`, value);
      secrets.set(`${label} refresh token`, (await sealer.unseal<SessionCookieData>(value))!.rt);
      const auth = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!;
      secrets.set(`${label} ID token`, auth.slice('Bearer '.length));
    };
    await recordSession('first');

    // Due after 2 s: nine requests at once, three on each replica, make one refresh grant.
    await sleep((TTL / 2) * 1000 + 500);
    const grants = stack.dex.counts.refreshGrants;
    const refreshesBefore = eventsOf('refresh').length;
    const replies = await Promise.all(
      Array.from({ length: 9 }, (_, i) => browser.get(`${stack.appUrl}/grafana/r${i}`, json(`refresh-${i}`))),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(9).fill(200));
    expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
    await recordSession('refreshed');
    await waitUntil('the refresh event', () => eventsOf('refresh').length > refreshesBefore);
    await sleep(300); // a second one, were there one, would be written by now
    const refreshes = eventsOf('refresh').slice(refreshesBefore);
    expect(refreshes).toEqual([
      expect.objectContaining({
        outcome: 'ok',
        user: admin.login,
        groups: ['oidc:admins', 'oidc:engineering'],
      }),
    ]);
    expect(String(refreshes[0]!['requestId'])).toMatch(/^refresh-\d$/);

    // Sign-out: the sign-out, and the session it ended.
    const endedBefore = eventsOf('revocation').length;
    const signOutsBefore = eventsOf('sign-out').length;
    await browser.post(`${stack.appUrl}/oauth2/sign_out`, {});
    await waitUntil(
      'the sign-out and the revocation',
      () => eventsOf('revocation').length > endedBefore && eventsOf('sign-out').length > signOutsBefore,
    );
    expect(eventsOf('sign-out').at(-1)).toMatchObject({
      user: admin.login,
      path: '/oauth2/sign_out',
      method: 'POST',
    });
    expect(eventsOf('revocation').slice(endedBefore)).toEqual([
      expect.objectContaining({ via: 'sign-out', sessions: 1, user: admin.login }),
    ]);

    // Whole lines, never merged with a log line: each parses alone.
    for (const line of auditLines()) expect(line.startsWith('{"audit":true,')).toBe(true);
    const text = auditLines().join('\n');
    for (const [label, value] of secrets) {
      expect(value.length, label).toBeGreaterThanOrEqual(16);
      expect(text.includes(value), `${label} appears in the audit stream`).toBe(false);
      expect(text.includes(value.slice(-20)), `the end of the ${label} appears in the audit stream`).toBe(
        false,
      );
    }
    expect(text).not.toMatch(/eyJ[\w-]{8,}\.eyJ/);
    expect(text).not.toMatch(/Fe26\.2\*/);
  });
});
