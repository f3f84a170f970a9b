import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createLogger } from '../../src/log.ts';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS, type Dex, startDex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { CADDY_BIN, hasCaddy, hasNginx, NGINX_BIN } from '../support/proxies.ts';
import {
  makeTempDir,
  removeDir,
  spawnTracked,
  type TrackedProcess,
  tcpAccepts,
  waitUntil,
} from '../support/redis.ts';
import { LogCapture, startTestService, TEST_COOKIE_SECRET, type TestService } from '../support/service.ts';
import { CLIENT_ID, CLIENT_SECRET, type Stack, startStack } from '../support/stack.ts';
import type { ForwardAuthOptions } from '../support/traefik.ts';
import { headerValues, startUpstream, type Upstream } from '../support/upstream.ts';

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

/** forwardAuth of the shipped Kubernetes Middleware and of the file-provider example. */
function shippedForwardAuth(which: 'kubernetes' | 'file provider'): ForwardAuthOptions {
  const read = (path: string) =>
    parseYaml(readFileSync(new URL(`../../deploy/${path}`, import.meta.url), 'utf8'));
  const forwardAuth =
    which === 'kubernetes'
      ? read('kubernetes/base/middleware.yaml').spec.forwardAuth
      : read('traefik/dynamic.yml').http.middlewares['dex-forward-auth'].forwardAuth;
  return forwardAuth as ForwardAuthOptions;
}

describe.each(['kubernetes', 'file provider'] as const)('the shipped Traefik middleware (%s)', (which) => {
  let stack: Stack;
  beforeAll(async () => {
    // Only the address is the test's own: every other option is exactly as shipped.
    const { address: _, ...shipped } = shippedForwardAuth(which);
    stack = await startStack({ env: { REFRESH_SKEW: '2s' }, dex: { idTokenTtl: TTL }, forwardAuth: shipped });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('logs users in, passes the ID token, strips smuggled identity and Impersonate-* headers, and delivers rotated cookies', async () => {
    const b = new Browser({ navigation: true });
    const login = await loginThroughDex(b, `${stack.appUrl}/shipped/`, admin);
    const loggedInAt = Date.now();
    expect(login.final.status).toBe(200);

    const reply = await b.get(`${stack.appUrl}/shipped/smuggle`, {
      'X-Auth-Request-User': 'mallory@example.com',
      'Impersonate-User': 'system:admin',
      'Impersonate-Group': 'system:masters',
      'Impersonate-Extra-Scopes': 'all',
    });
    expect(reply.status).toBe(200);
    const seen = stack.upstream.requests.at(-1)!;
    expect(headerValues(seen, 'authorization')[0]).toMatch(/^Bearer ey/);
    expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.login]);
    for (const h of ['impersonate-user', 'impersonate-group', 'impersonate-extra-scopes']) {
      expect(headerValues(seen, h), h).toEqual([]);
    }

    // A refresh during a 2xx check rotates the refresh token: the new cookie reaches the browser.
    const before = b.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')?.value;
    await sleep(Math.max(0, loggedInAt + (TTL / 2) * 1000 + 300 - Date.now()));
    expect((await b.get(`${stack.appUrl}/shipped/after-refresh`)).status).toBe(200);
    const after = b.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')?.value;
    expect(after).toBeTruthy();
    expect(after).not.toBe(before);
    expect((await b.get(`${stack.appUrl}/shipped/again`)).status).toBe(200);
  });
});

/**
 * The nginx and Caddy snippets from deploy/, run by the real proxies with only the addresses
 * changed to this test's loopback ports.
 */
const PROXIES = {
  nginx: {
    available: hasNginx(),
    file: 'nginx/dex-forward-auth.conf',
    config(snippet: string, port: number, dir: string): string {
      const server = snippet.replace('listen 80;', `listen 127.0.0.1:${port};`);
      return [
        'daemon off;',
        'master_process off;',
        'worker_processes 1;',
        `pid ${dir}/nginx.pid;`,
        'error_log stderr warn;',
        'events { worker_connections 256; }',
        'http {',
        '    access_log off;',
        `    client_body_temp_path ${dir}/client_body;`,
        `    proxy_temp_path ${dir}/proxy;`,
        `    fastcgi_temp_path ${dir}/fastcgi;`,
        `    uwsgi_temp_path ${dir}/uwsgi;`,
        `    scgi_temp_path ${dir}/scgi;`,
        server,
        '}',
        '',
      ].join('\n');
    },
    start(file: string, dir: string): TrackedProcess {
      return spawnTracked(NGINX_BIN, ['-p', `${dir}/`, '-c', file, '-e', 'stderr'], {
        name: 'nginx',
        cwd: dir,
      });
    },
  },
  caddy: {
    available: hasCaddy(),
    file: 'caddy/Caddyfile',
    config(snippet: string, port: number, dir: string): string {
      const global = `{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system ${JSON.stringify(`${dir}/storage`)}\n}\n`;
      return global + snippet.replace(/^grafana\.example\.com \{/m, `http://:${port} {`);
    },
    start(file: string, dir: string): TrackedProcess {
      return spawnTracked(CADDY_BIN, ['run', '--config', file, '--adapter', 'caddyfile'], {
        name: 'caddy',
        cwd: dir,
        env: {
          PATH: process.env['PATH'] ?? '',
          HOME: dir,
          XDG_CONFIG_HOME: `${dir}/config`,
          XDG_DATA_HOME: `${dir}/data`,
        },
      });
    },
  },
} as const;

describe.each(Object.keys(PROXIES) as (keyof typeof PROXIES)[])('the shipped %s snippet', (name) => {
  const proxy = PROXIES[name];
  let dex: Dex;
  let upstream: Upstream;
  let service: TestService;
  let proc: TrackedProcess;
  let dir: string;
  let appUrl: string;

  beforeAll(async () => {
    if (!proxy.available) return;
    const port = await freePort();
    appUrl = `http://app.localhost:${port}`;
    dex = await startDex({
      clients: [
        { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [`${appUrl}/oauth2/callback`] },
      ],
      idTokenTtl: TTL,
    });
    upstream = await startUpstream();
    service = await startTestService({
      OIDC_ISSUER_URL: dex.issuer,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
      REFRESH_SKEW: '2s',
    });
    dir = await makeTempDir(name);
    const snippet = readFileSync(new URL(`../../deploy/${proxy.file}`, import.meta.url), 'utf8')
      .replaceAll('127.0.0.1:4180', `127.0.0.1:${service.port}`)
      .replaceAll('127.0.0.1:3000', new URL(upstream.url).host);
    const file = `${dir}/config`;
    await writeFile(file, proxy.config(snippet, port, dir));
    proc = proxy.start(file, dir);
    await waitUntil(`${name} to listen`, () => tcpAccepts(port, 500), { proc, timeoutMs: 15_000 });
  });
  afterAll(async () => {
    await proc?.stop('SIGKILL');
    if (dir) await removeDir(dir);
    await service?.close();
    await upstream?.close();
    await dex?.close();
  });

  it.skipIf(!proxy.available)(
    'logs users in, passes the ID token, strips smuggled identity and Impersonate-* headers, and delivers rotated cookies',
    async () => {
      const b = new Browser({ navigation: true });
      const login = await loginThroughDex(b, `${appUrl}/snippet/`, admin);
      const loggedInAt = Date.now();
      expect(login.final.status).toBe(200);

      const reply = await b.get(`${appUrl}/snippet/smuggle`, {
        'X-Auth-Request-User': 'mallory@example.com',
        'Impersonate-User': 'system:admin',
        'Impersonate-Group': 'system:masters',
      });
      expect(reply.status).toBe(200);
      const seen = upstream.requests.at(-1)!;
      expect(headerValues(seen, 'authorization')[0]).toMatch(/^Bearer ey/);
      expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.login]);
      expect(headerValues(seen, 'impersonate-user')).toEqual([]);
      expect(headerValues(seen, 'impersonate-group')).toEqual([]);

      const before = b.cookies(appUrl).find((c) => c.name === '_forward_auth')?.value;
      await sleep(Math.max(0, loggedInAt + (TTL / 2) * 1000 + 300 - Date.now()));
      expect((await b.get(`${appUrl}/snippet/after-refresh`)).status).toBe(200);
      const after = b.cookies(appUrl).find((c) => c.name === '_forward_auth')?.value;
      expect(after).toBeTruthy();
      expect(after).not.toBe(before);
      expect((await b.get(`${appUrl}/snippet/again`)).status).toBe(200);
    },
  );
});
