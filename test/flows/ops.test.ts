import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createLogger } from '../../src/log.ts';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS, type Dex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import {
  hasCaddy,
  hasNginx,
  SHIPPED_FILES,
  startIngressNginx,
  startShippedProxy,
} from '../support/proxies.ts';
import { makeTempDir, removeDir, waitUntil } from '../support/redis.ts';
import { LogCapture, TEST_COOKIE_SECRET, type TestService } from '../support/service.ts';
import { CLIENT_SECRET, type GatewayAt, type Stack, startStack } from '../support/stack.ts';
import { hasOpenssl, makeTestPki, reissueServerCert, type TestPki } from '../support/tls.ts';
import { type ForwardAuthOptions, startTraefik } from '../support/traefik.ts';
import { headerValues, type Upstream } from '../support/upstream.ts';

/**
 * What operators see while the real chain runs (Traefik emulator → service → Dex stand-in +
 * Redis): Prometheus metrics, one log line per decision (debug) and per login, refresh, denial
 * and sign-out (info) carrying the request id, health and readiness.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;
const TTL = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** Prometheus text format → `name{labels}` → value (labels as written, in order). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe('operations through the whole chain', () => {
  let stack: Stack;
  let loginAt = 0;
  const browser = new Browser({ navigation: true });

  const metrics = async (): Promise<Map<string, number>> => {
    const reply = await request(stack.service.server).get('/metrics').expect(200);
    expect(reply.headers['content-type']).toContain('text/plain');
    return parseMetrics(reply.text);
  };
  const value = (m: Map<string, number>, key: string): number => m.get(key) ?? 0;
  const records = () => stack.service.logs.records();

  beforeAll(async () => {
    stack = await startStack({ env: { REFRESH_SKEW: '2s' }, dex: { idTokenTtl: TTL } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('/metrics counts decisions by outcome, login flows, and Redis and provider round trips', async () => {
    const before = await metrics();
    expect(value(before, `dex_forward_auth_build_info{version="${VERSION}",node="${process.version}"}`)).toBe(
      1,
    );
    expect(value(before, 'dex_forward_auth_degraded')).toBe(0);

    const xhr = await new Browser().get(`${stack.appUrl}/api`, { accept: 'application/json' });
    expect(xhr.status).toBe(401);
    const login = await loginThroughDex(browser, `${stack.appUrl}/ops/`, admin);
    loginAt = Date.now();
    expect(login.final.status).toBe(200);

    const after = await metrics();
    const delta = (key: string) => value(after, key) - value(before, key);
    expect(delta('dex_forward_auth_decisions_total{outcome="unauthenticated"}')).toBe(1);
    expect(delta('dex_forward_auth_decisions_total{outcome="redirect"}')).toBeGreaterThanOrEqual(2);
    expect(delta('dex_forward_auth_decisions_total{outcome="allow"}')).toBe(1);
    expect(delta('dex_forward_auth_decision_duration_seconds_count')).toBeGreaterThanOrEqual(4);
    expect(delta('dex_forward_auth_logins_total{stage="started",code=""}')).toBe(1);
    expect(delta('dex_forward_auth_logins_total{stage="completed",code=""}')).toBe(1);
    expect(
      delta('dex_forward_auth_redis_command_duration_seconds_count{operation="set",result="ok"}'),
    ).toBeGreaterThan(0);
    expect(
      delta('dex_forward_auth_provider_request_duration_seconds_count{operation="code",result="ok"}'),
    ).toBe(1);
    expect(
      value(
        after,
        'dex_forward_auth_provider_request_duration_seconds_count{operation="discovery",result="ok"}',
      ),
    ).toBe(1);
    expect(
      value(after, 'dex_forward_auth_provider_request_duration_seconds_count{operation="jwks",result="ok"}'),
    ).toBeGreaterThan(0);
    expect(value(after, 'dex_forward_auth_provider_errors_total{operation="refresh"}')).toBe(0);
  });

  it('logs one line per decision with request id, user, host, path and outcome, honouring X-Request-Id', async () => {
    const reply = await browser.get(`${stack.appUrl}/ops/page?x=1`, { 'x-request-id': 'ops-decision-1' });
    expect(reply.status).toBe(200);
    const line = records().find((r) => r['msg'] === 'decision' && r['requestId'] === 'ops-decision-1');
    expect(line).toMatchObject({
      level: 'debug',
      outcome: 'allow',
      status: 200,
      user: admin.login,
      host: new URL(stack.appUrl).host,
      path: '/ops/page',
    });

    // An id that is not a plain token is replaced, never echoed into the logs.
    await browser.get(`${stack.appUrl}/ops/page`, { 'x-request-id': 'bad id <script>' });
    const last = records()
      .filter((r) => r['msg'] === 'decision')
      .at(-1)!;
    expect(last['requestId']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('logs logins at info with the request id that started them', async () => {
    const fresh = new Browser({ navigation: true });
    await fresh.get(`${stack.appUrl}/ops/login`, { 'x-request-id': 'ops-login-1' });
    const started = records().find((r) => r['msg'] === 'login started' && r['requestId'] === 'ops-login-1');
    expect(started).toMatchObject({ level: 'info', host: new URL(stack.appUrl).host, path: '/ops/login' });
    expect(records().some((r) => r['msg'] === 'login completed' && r['user'] === admin.login)).toBe(true);
  });

  it('counts and logs a failed login with its code', async () => {
    const before = await metrics();
    const reply = await new Browser({ navigation: true }).get(
      `${stack.appUrl}/oauth2/callback?state=forged&code=x`,
      {
        'x-request-id': 'ops-failed-1',
      },
    );
    expect(reply.status).toBeGreaterThanOrEqual(400);
    expect(reply.status).toBeLessThan(500);
    const after = await metrics();
    const key = 'dex_forward_auth_logins_total{stage="failed",code="login_state_missing"}';
    expect(value(after, key) - value(before, key)).toBe(1);
    expect(
      records().find((r) => r['msg'] === 'login failed' && r['requestId'] === 'ops-failed-1'),
    ).toMatchObject({
      level: 'info',
      code: 'login_state_missing',
    });
  });

  it('counts and logs a denial as forbidden', async () => {
    const denied = new Browser({ navigation: true });
    const result = await loginThroughDex(denied, `${stack.appUrl}/ops/denied`, unverified);
    expect(result.final.status).toBe(403);
    const m = await metrics();
    expect(value(m, 'dex_forward_auth_decisions_total{outcome="forbidden"}')).toBeGreaterThanOrEqual(1);
    expect(
      records().some(
        (r) => r['msg'] === 'access denied' && r['level'] === 'info' && r['path'] === '/ops/denied',
      ),
    ).toBe(true);
  });

  it('counts refreshes by result and provider round trips and errors, and logs the refresh with the request id', async () => {
    const before = await metrics();
    await sleep(Math.max(0, loginAt + (TTL / 2) * 1000 + 300 - Date.now()));
    const reply = await browser.get(`${stack.appUrl}/ops/refresh`, { 'x-request-id': 'ops-refresh-1' });
    expect(reply.status).toBe(200);
    loginAt = Date.now();
    const after = await metrics();
    const delta = (key: string) => value(after, key) - value(before, key);
    expect(delta('dex_forward_auth_refreshes_total{result="ok"}')).toBe(1);
    expect(
      delta('dex_forward_auth_provider_request_duration_seconds_count{operation="refresh",result="ok"}'),
    ).toBe(1);
    expect(
      records().find((r) => r['msg'] === 'token refreshed' && r['requestId'] === 'ops-refresh-1'),
    ).toMatchObject({
      level: 'info',
      user: admin.login,
    });

    // Next due refresh fails at Dex with a 500: a transient refresh, a provider error, the token still served.
    await sleep(Math.max(0, loginAt + (TTL / 2) * 1000 + 300 - Date.now()));
    stack.dex.failNextRefreshes(10, 500);
    expect((await browser.get(`${stack.appUrl}/ops/refresh-fails`)).status).toBe(200);
    stack.dex.failNextRefreshes(0, 500);
    const failed = await metrics();
    expect(value(failed, 'dex_forward_auth_refreshes_total{result="transient"}')).toBeGreaterThanOrEqual(1);
    expect(
      value(failed, 'dex_forward_auth_provider_errors_total{operation="refresh"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value(
        failed,
        'dex_forward_auth_provider_request_duration_seconds_count{operation="refresh",result="error"}',
      ),
    ).toBeGreaterThanOrEqual(1);
  });

  it('logs sign-out at info with the user', async () => {
    const b = new Browser({ navigation: true });
    await loginThroughDex(b, `${stack.appUrl}/ops/bye`, dev);
    await b.post(`${stack.appUrl}/oauth2/sign_out`, {}, { 'x-request-id': 'ops-signout-1' });
    expect(
      records().find((r) => r['msg'] === 'signed out' && r['requestId'] === 'ops-signout-1'),
    ).toMatchObject({
      level: 'info',
      user: dev.login,
    });
  });

  it('never logs a token, a cookie or a secret', async () => {
    const token = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!.slice('Bearer '.length);
    const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
    const text = stack.service.logs.text;
    expect(text).not.toContain(token);
    expect(text).not.toContain(cookie);
    expect(text).not.toContain(TEST_COOKIE_SECRET);
    expect(text).not.toContain(CLIENT_SECRET);
  });

  it('with Redis down, readiness holds, reports the store in its body, and metrics show degraded mode and Redis errors', async () => {
    await request(stack.service.server).get('/healthz').expect(200);
    const up = await request(stack.service.server).get('/readyz').expect(200);
    expect(up.body).toMatchObject({
      status: 'ready',
      provider: 'ready',
      store: { kind: 'redis', status: 'ok' },
    });

    const b = new Browser({ navigation: true });
    expect((await loginThroughDex(b, `${stack.appUrl}/ops/redis`, dev)).final.status).toBe(200);
    await stack.redis!.kill();
    const down = await request(stack.service.server).get('/readyz').expect(200);
    expect(down.body).toMatchObject({
      status: 'ready',
      store: { kind: 'redis', status: 'unavailable' },
      degraded: true,
    });
    const m = await metrics();
    expect(value(m, 'dex_forward_auth_degraded')).toBe(1);
    expect(value(m, 'dex_forward_auth_redis_errors_total{operation="ping"}')).toBeGreaterThanOrEqual(1);
    // Sessions keep working meanwhile.
    expect((await b.get(`${stack.appUrl}/ops/while-redis-is-down`)).status).toBe(200);

    await stack.redis!.start();
    let ready: request.Response | undefined;
    for (let i = 0; i < 50; i++) {
      ready = await request(stack.service.server).get('/readyz');
      if (ready.body.store?.status === 'ok') break;
      await sleep(100);
    }
    expect(ready?.body.store).toMatchObject({ status: 'ok' });
    expect(value(await metrics(), 'dex_forward_auth_degraded')).toBe(0);
  });
});

describe('log output', () => {
  it('is one JSON object per line, with secrets in structured fields redacted', () => {
    const capture = new LogCapture();
    const log = createLogger({ level: 'info', destination: capture });
    log.info({ user: 'ada', session: { refreshToken: 'rt-secret-value', idToken: 'eyJ.secret' } }, 'hello');
    const [record] = capture.records();
    expect(record).toMatchObject({ level: 'info', msg: 'hello', user: 'ada', service: 'dex-forward-auth' });
    expect(capture.text).not.toContain('rt-secret-value');
    expect(capture.text).not.toContain('eyJ.secret');
  });

  it('is human-readable through pino-pretty when asked for (serve does so on a terminal)', () => {
    const capture = new LogCapture();
    const log = createLogger({ level: 'info', pretty: true, destination: capture });
    log.info({ user: 'ada' }, 'pretty hello');
    expect(capture.text).toContain('pretty hello');
    expect(capture.text).toMatch(/INFO/);
    expect(() => JSON.parse(capture.lines[0] ?? '')).toThrow();
  });

  it('honours LOG_LEVEL: debug lines are dropped at info', () => {
    const capture = new LogCapture();
    const log = createLogger({ level: 'info', destination: capture });
    log.debug('not shown');
    log.info('shown');
    expect(capture.records().map((r) => r['msg'])).toEqual(['shown']);
  });
});

/** The forwardAuth options and the pages router of the shipped Traefik configurations. */
function shippedTraefik(which: 'kubernetes' | 'file provider'): {
  forwardAuth: ForwardAuthOptions;
  pages: string;
} {
  const read = (path: string) =>
    parseYaml(readFileSync(new URL(`../../deploy/${path}`, import.meta.url), 'utf8'));
  if (which === 'kubernetes') {
    const route = read('kubernetes/overlays/management/ingressroute-grafana.yaml').spec.routes[0];
    return { forwardAuth: read('kubernetes/base/middleware.yaml').spec.forwardAuth, pages: route.match };
  }
  const http = read('traefik/dynamic.yml').http;
  return {
    forwardAuth: http.middlewares['dex-forward-auth'].forwardAuth,
    pages: http.routers['grafana-pages'].rule,
  };
}

/** The README's ingress-nginx annotation listing the headers copied to the dashboard. */
function readmeIngressNginxHeaders(): string[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const line = /nginx\.ingress\.kubernetes\.io\/auth-response-headers: *"?([\w,-]+)"?/.exec(readme);
  if (!line) throw new Error('README: no ingress-nginx auth-response-headers annotation');
  return (line[1] as string).split(',');
}

interface ShippedCase {
  readonly name: string;
  readonly available: boolean;
  /** Whether the wiring can strip Impersonate-Extra-* (by pattern): nginx cannot. */
  readonly stripsByPattern: boolean;
  start(at: GatewayAt): Promise<{ close(): Promise<void> }>;
}

const APP_HOST = 'app.localhost';

function traefikCase(which: 'kubernetes' | 'file provider'): ShippedCase {
  return {
    name: `Traefik ${which} configuration`,
    available: true,
    stripsByPattern: true,
    start: async (at) => {
      const { forwardAuth, pages } = shippedTraefik(which);
      // Only the addresses and the host are the test's own: every other option is exactly as shipped.
      return startTraefik({
        port: at.port,
        routes: [
          { rule: pages.replace(/Host\(`[^`]+`\)/, `Host(\`${APP_HOST}\`)`), service: at.pagesUrl },
          { forwardAuth: { ...forwardAuth, address: `${at.decisionUrl}/auth` }, service: at.upstreamUrl },
        ],
      });
    },
  };
}

const SHIPPED: ShippedCase[] = [
  traefikCase('kubernetes'),
  traefikCase('file provider'),
  {
    name: 'nginx snippet',
    available: hasNginx(),
    stripsByPattern: false,
    start: (at) => startShippedProxy('nginx', at),
  },
  {
    name: 'Caddyfile',
    available: hasCaddy(),
    stripsByPattern: true,
    start: (at) => startShippedProxy('caddy', at),
  },
  {
    name: 'ingress-nginx wiring of the README',
    available: hasNginx(),
    stripsByPattern: false,
    start: (at) => startIngressNginx({ ...at, authResponseHeaders: readmeIngressNginxHeaders() }),
  },
];

describe('the README', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  it.each([
    ['nginx', 'nginx'],
    ['caddy', 'caddyfile'],
  ] as const)(
    'shows the shipped %s file verbatim, so what it documents is what the tests run',
    (kind, fence) => {
      const shipped = readFileSync(SHIPPED_FILES[kind], 'utf8');
      expect(readme).toContain(`\`\`\`${fence}\n${shipped}\`\`\`\n`);
    },
  );
});

/** A rule on /admin for the admins group; everything else open to any logged-in user. */
const ADMIN_POLICY = 'default: allow\nrules:\n  - path: /admin\n    allow: { groups: [admins] }\n';

/**
 * The shipped proxy configurations, run by the real proxies (the Traefik emulator for Traefik)
 * in front of the service with PORT and AUTH_PORT as the shipped files expect them; only the
 * addresses are changed to this test's loopback ports.
 */
describe.each(SHIPPED)('the shipped $name', (c) => {
  let stack: Stack;
  let upstream: Upstream;
  let dir: string;
  let appUrl: string;

  beforeAll(async () => {
    if (!c.available) return;
    dir = await makeTempDir('shipped');
    await writeFile(`${dir}/policy.yaml`, ADMIN_POLICY);
    stack = await startStack({
      redis: false,
      dex: { idTokenTtl: TTL },
      env: { REFRESH_SKEW: '2s', AUTH_PORT: '0', AUTHZ_CONFIG: `${dir}/policy.yaml` },
      gateway: { proxy: c.start, hosts: [APP_HOST] },
    });
    ({ upstream, appUrl } = stack);
  });
  afterAll(async () => {
    await stack?.close();
    if (dir) await removeDir(dir);
  });

  const loggedIn = async (user: typeof admin, path: string): Promise<{ b: Browser; at: number }> => {
    const b = new Browser({ navigation: true });
    const login = await loginThroughDex(b, `${appUrl}${path}`, user);
    expect(login.final.status).toBe(200);
    return { b, at: Date.now() };
  };
  const upstreamSaw = () => upstream.requests.length;

  it.skipIf(!c.available)(
    'logs users in, passes the ID token, strips every smuggled identity header, and delivers rotated cookies',
    async () => {
      const { b, at } = await loggedIn(admin, '/shipped/');
      const smuggled: Record<string, string> = {
        'X-Auth-Request-User': 'mallory@example.com',
        'X-Auth-Request-Preferred-Username': 'mallory',
        'X-Auth-Request-Id-Token': 'forged',
        'X-Forwarded-User': 'mallory',
        'X-Forwarded-Email': 'mallory@example.com',
        'X-Forwarded-Groups': 'admins',
        'Impersonate-User': 'system:admin',
        'Impersonate-Group': 'system:masters',
        'Impersonate-Uid': '0',
        ...(c.stripsByPattern ? { 'Impersonate-Extra-Scopes': 'all' } : {}),
      };
      const reply = await b.get(`${appUrl}/shipped/smuggle`, smuggled);
      expect(reply.status).toBe(200);
      const seen = upstream.requests.at(-1)!;
      expect(seen.url).toBe('/shipped/smuggle');
      expect(headerValues(seen, 'authorization')[0]).toMatch(/^Bearer ey/);
      expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.login]);
      for (const name of Object.keys(smuggled).filter((n) => n !== 'X-Auth-Request-User')) {
        expect(headerValues(seen, name), name).toEqual([]);
      }

      // A refresh during a 2xx check rotates the refresh token: the new cookie reaches the browser.
      const before = b.cookies(appUrl).find((k) => k.name === '_forward_auth')?.value;
      await sleep(Math.max(0, at + (TTL / 2) * 1000 + 300 - Date.now()));
      expect((await b.get(`${appUrl}/shipped/after-refresh`)).status).toBe(200);
      const after = b.cookies(appUrl).find((k) => k.name === '_forward_auth')?.value;
      expect(after).toBeTruthy();
      expect(after).not.toBe(before);
      expect((await b.get(`${appUrl}/shipped/again`)).status).toBe(200);
    },
  );

  it.skipIf(!c.available)(
    'gives a logged-in browser that asks it for /auth or /oauth2/auth no upstream header back, and serves the pages it routes',
    async () => {
      const { b } = await loggedIn(dev, '/decisions/');
      for (const target of ['/auth', '/oauth2/auth', '/oauth2/auth?rd=/', '/oauth2/auth/', '/_oauth2_auth']) {
        const reply = await b.getRaw(appUrl, target, { accept: 'application/json' });
        for (const h of [
          'authorization',
          'x-auth-request-user',
          'x-auth-request-email',
          'x-auth-request-groups',
        ]) {
          expect(reply.headers.get(h), `${target}: ${h}`).toBeNull();
        }
        // Served by the dashboard through the check (or refused), never the check's own answer.
        if (reply.status === 200) expect(upstream.requests.at(-1)?.url, target).toBe(target);
      }
      const info = await b.get(`${appUrl}/oauth2/userinfo`, { accept: 'application/json' });
      expect(info.status).toBe(200);
      expect(info.json()).toMatchObject({ user: dev.login });
    },
  );

  it.skipIf(!c.available)(
    'judges the request the proxy saw: a client’s X-Forwarded-* or X-Original-* of its own do not move it',
    async () => {
      const { b } = await loggedIn(dev, '/family/');
      const before = upstreamSaw();
      const families: Record<string, string>[] = [
        {
          'X-Forwarded-Uri': '/public',
          'X-Forwarded-Host': 'open.localhost',
          'X-Forwarded-Method': 'OPTIONS',
        },
        {
          'X-Forwarded-Host': 'open.localhost',
          'X-Forwarded-Method': 'OPTIONS',
          'X-Forwarded-Proto': 'https',
        },
        { 'X-Original-URL': `${appUrl}/public`, 'X-Original-Method': 'OPTIONS' },
        { 'X-Original-URI': '/public' },
      ];
      for (const headers of families) {
        const reply = await b.get(`${appUrl}/admin/users`, { accept: 'application/json', ...headers });
        expect(reply.status, JSON.stringify(headers)).toBeGreaterThanOrEqual(400);
      }
      expect(upstreamSaw()).toBe(before);
      // And the same headers on an open page change nothing either: it is judged as itself.
      const open = await b.get(`${appUrl}/public`, {
        'X-Original-URL': `${appUrl}/admin`,
        'X-Forwarded-Host': 'x.localhost',
      });
      expect([200, 400, 500]).toContain(open.status);
    },
  );

  it.skipIf(!c.available)('lets no spelling of /admin past the rule on /admin', async () => {
    const { b } = await loggedIn(dev, '/spelling/');
    const before = upstreamSaw();
    for (const target of [
      '/admin',
      '/admin/',
      '/%61dmin',
      '//admin',
      '/admin;x',
      '/admin;jsessionid=1/users',
      '/admin%3Bx',
      '/admin%2Fusers',
      '/./admin',
      '/x/../admin',
      '/x/%2e%2e/admin',
      '/public/..;/admin',
      '/admin#x',
      '/admin%23x',
      '/%2561dmin',
      '/admin%5Cusers',
    ]) {
      const reply = await b.getRaw(appUrl, target, { accept: 'application/json' });
      expect(reply.status, target).toBeGreaterThanOrEqual(400);
    }
    expect(upstreamSaw()).toBe(before);
    // The rule still admits its group on the Java reading of the path, and other paths stay open.
    const { b: adminBrowser } = await loggedIn(admin, '/spelling-admin/');
    expect((await adminBrowser.getRaw(appUrl, '/admin;x', { accept: 'application/json' })).status).toBe(200);
    expect((await b.getRaw(appUrl, '/administrator', { accept: 'application/json' })).status).toBe(200);
  });
});

describe('the decision listener (AUTH_PORT)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      redis: false,
      env: { AUTH_PORT: '0' },
      gateway: { routes: (pages) => [{ pathPrefix: '/oauth2/userinfo', service: pages }] },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('answers the decisions, while PORT answers /auth and /oauth2/auth 404 even for a genuine subrequest', async () => {
    const b = new Browser({ navigation: true });
    expect((await loginThroughDex(b, `${stack.appUrl}/split/`, admin)).final.status).toBe(200);
    const cookie = b.cookies(stack.appUrl).find((k) => k.name === '_forward_auth')!.value;
    const subrequest = {
      cookie: `_forward_auth=${cookie}`,
      accept: 'application/json',
      'x-forwarded-method': 'GET',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': new URL(stack.appUrl).host,
      'x-forwarded-uri': '/split/',
    };
    const decision = await new Browser().get(`${stack.service.decisionUrl}/auth`, subrequest);
    expect(decision.status).toBe(200);
    expect(decision.headers.get('authorization')).toMatch(/^Bearer /);
    for (const path of ['/auth', '/oauth2/auth']) {
      const reply = await new Browser().get(`${stack.service.url}${path}`, subrequest);
      expect(reply.status, path).toBe(404);
      expect(reply.headers.get('authorization')).toBeNull();
    }
    expect((await b.get(`${stack.appUrl}/oauth2/userinfo`, { accept: 'application/json' })).status).toBe(200);
  });

  it('serves nothing but the decisions', async () => {
    for (const path of ['/oauth2/start', '/oauth2/userinfo', '/healthz', '/metrics', '/kubeconfig']) {
      expect((await new Browser().get(`${stack.service.decisionUrl}${path}`)).status, path).toBe(404);
    }
  });
});

describe.skipIf(!hasOpenssl())('mutual TLS between the shipped proxies and the decision listener', () => {
  let dir: string;
  let pki: TestPki;
  let stack: Stack;
  let dex: Dex;
  let upstream: Upstream;
  let service: TestService;

  beforeAll(async () => {
    dir = await makeTempDir('mtls');
    pki = makeTestPki(dir);
    stack = await startStack({
      redis: false,
      env: {
        AUTH_PORT: '0',
        AUTH_TLS_CERT_FILE: pki.serverCert,
        AUTH_TLS_KEY_FILE: pki.serverKey,
        AUTH_TLS_CLIENT_CA_FILE: pki.caCert,
        BEARER_AUDIENCES: 'kubernetes', // bearer pass-through needs an audience of its own
      },
      gateway: { proxy: 'none' },
    });
    ({ dex, upstream, service } = stack);
  });
  afterAll(async () => {
    await stack?.close();
    if (dir) await removeDir(dir);
  });

  /** One request to the decision listener, with or without a client certificate. */
  const ask = (cert?: { cert: string; key: string }): Promise<number> =>
    new Promise((resolve, reject) => {
      const url = new URL(`${service.decisionUrl}/auth`);
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: url.port,
          path: '/auth',
          ca: readFileSync(pki.caCert),
          servername: 'dex-forward-auth',
          ...(cert ? { cert: readFileSync(cert.cert), key: readFileSync(cert.key) } : {}),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });

  it('completes a handshake only with a client certificate of the configured CA', async () => {
    await expect(ask()).rejects.toThrow();
    await expect(ask({ cert: pki.rogueCert, key: pki.rogueKey })).rejects.toThrow();
    // The proxy's certificate gets through TLS; without X-Forwarded-Uri it is still no subrequest.
    expect(await ask({ cert: pki.clientCert, key: pki.clientKey })).toBe(400);
  });

  it('uses a renewed server certificate without a restart', async () => {
    const tlsDir = await makeTempDir('renew');
    reissueServerCert(pki, tlsDir);
    const renewing = await stack.startService(
      {
        AUTH_PORT: '0',
        AUTH_TLS_CERT_FILE: `${tlsDir}/server.crt`,
        AUTH_TLS_KEY_FILE: `${tlsDir}/server.key`,
        AUTH_TLS_CLIENT_CA_FILE: pki.caCert,
      },
      { tlsReloadMs: 100 },
    );
    const presented = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = tlsConnect(
          {
            host: '127.0.0.1',
            port: Number(new URL(renewing.decisionUrl).port),
            ca: readFileSync(pki.caCert),
            servername: 'dex-forward-auth',
            cert: readFileSync(pki.clientCert),
            key: readFileSync(pki.clientKey),
          },
          () => {
            resolve(socket.getPeerCertificate().fingerprint256);
            socket.end();
          },
        );
        socket.on('error', reject);
      });
    try {
      const before = await presented();
      reissueServerCert(pki, tlsDir);
      await waitUntil('the renewed certificate to be presented', async () => (await presented()) !== before, {
        timeoutMs: 10_000,
      });
      expect(
        renewing.logs.records().some((r) => r['msg'] === 'decision listener: TLS certificate files reloaded'),
      ).toBe(true);
    } finally {
      await renewing.close();
      await removeDir(tlsDir);
    }
  });

  it.each([
    ['nginx', hasNginx()],
    ['caddy', hasCaddy()],
  ] as const)(
    '%s, with the shipped mutual-TLS lines enabled, gets its decisions over it',
    async (kind, available) => {
      if (!available) return;
      const port = await freePort();
      const proxy = await startShippedProxy(kind, {
        pagesUrl: service.url,
        decisionUrl: service.decisionUrl,
        upstreamUrl: upstream.url,
        port,
        mtls: { dir: pki.dir },
        hosts: ['127.0.0.1'],
      });
      try {
        expect(proxy.config).toContain(`${pki.dir}/client.crt`);
        const token = await dex.mintIdToken({
          sub: 'mtls',
          email: dev.email,
          email_verified: true,
          aud: 'kubernetes',
        });
        const before = upstream.requests.length;
        const reply = await new Browser().get(`http://127.0.0.1:${port}/over-mtls`, {
          authorization: `Bearer ${token}`,
        });
        expect(reply.status).toBe(200);
        expect(upstream.requests.length).toBe(before + 1);
        expect(headerValues(upstream.requests.at(-1)!, 'x-auth-request-user')).toEqual([dev.email]);
        // No session: Caddy relays the 401, nginx turns it into its login redirect.
        const anonymous = await new Browser().get(`http://127.0.0.1:${port}/over-mtls`, {
          accept: 'application/json',
        });
        expect(anonymous.status).toBe(kind === 'nginx' ? 302 : 401);
      } finally {
        await proxy.close();
      }
    },
  );
});
