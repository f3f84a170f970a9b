/**
 * Real-browser harness: Debian's Chromium driven by playwright-core, and a loopback stack in which
 * two dashboards share one cookie domain (like the demo): Traefik emulator → dex-forward-auth →
 * Dex stand-in, Redis, an echoing upstream, and direct routes for the service's own pages.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { type Dex, type DexUser, startDex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { CADDY_BIN, NGINX_BIN, type RunningProxy } from '../support/proxies.ts';
import {
  makeTempDir,
  type RedisServer,
  removeDir,
  spawnTracked,
  startRedis,
  tcpAccepts,
  waitUntil,
} from '../support/redis.ts';
import { startTestService, type TestService } from '../support/service.ts';
import { startTraefik, type Traefik } from '../support/traefik.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

export const CHROMIUM_BIN = process.env['CHROMIUM_BIN'] ?? '/usr/bin/chromium';
export const hasChromium = (): boolean => existsSync(CHROMIUM_BIN);
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Screenshots land here (gitignored); CI keeps them as artifacts. */
export const ARTIFACTS_DIR = fileURLToPath(new URL('../../test-artifacts/e2e/', import.meta.url));

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_BIN, headless: true, args: CHROMIUM_FLAGS });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = `${ARTIFACTS_DIR}${name}.png`;
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Records what would betray a broken page: CSP violations (an inline style or script whose hash
 * is not allowed), uncaught script errors. Failed loads (a 401/403/503 page) are expected here.
 */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (/Content.Security.Policy|Refused to/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return problems;
}

/** On the Dex stand-in's form: type the user's credentials and submit; waits for the next page. */
export async function signInAtDex(page: Page, user: Pick<DexUser, 'login' | 'password'>): Promise<void> {
  await page.getByLabel('Email Address').fill(user.login);
  await page.getByLabel('Password').fill(user.password);
  const leaving = page.waitForURL((url) => !url.pathname.includes('/interaction/'));
  await page.getByRole('button', { name: 'Login' }).click();
  await leaving;
}

export const isDexForm = (page: Page, dex: Dex): boolean =>
  page.url().startsWith(dex.issuer) && page.url().includes('/interaction/');

export const E2E_CLIENT_ID = 'forward-auth-e2e';
export const E2E_CLIENT_SECRET = 'e2e-confidential-client-secret-0123';
export const E2E_DOMAIN = 'sso.localhost';

export interface BrowserStack {
  readonly dex: Dex;
  readonly redis: RedisServer;
  readonly upstream: Upstream;
  readonly service: TestService;
  readonly traefik: Traefik;
  /** http://app.sso.localhost:<port> */
  readonly appUrl: string;
  /** http://grafana.sso.localhost:<port>, same cookie domain */
  readonly otherUrl: string;
  close(): Promise<void>;
}

/** A small, realistic CA bundle value for KUBE_CLUSTERS (not a real certificate). */
export const SAMPLE_CA_PEM =
  '-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n';

export async function startBrowserStack(env: Record<string, string> = {}): Promise<BrowserStack> {
  const port = await freePort();
  const appUrl = `http://app.${E2E_DOMAIN}:${port}`;
  const otherUrl = `http://grafana.${E2E_DOMAIN}:${port}`;
  const redis = await startRedis();
  const dex = await startDex({
    clients: [
      {
        clientId: E2E_CLIENT_ID,
        clientSecret: E2E_CLIENT_SECRET,
        redirectUris: [`${appUrl}/oauth2/callback`, `${otherUrl}/oauth2/callback`],
      },
    ],
  });
  const upstream = await startUpstream();
  const service = await startTestService({
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_CLIENT_ID: E2E_CLIENT_ID,
    OIDC_CLIENT_SECRET: E2E_CLIENT_SECRET,
    OIDC_SCOPES: 'openid profile email groups offline_access audience:server:client_id:kubernetes',
    REDIS_URL: redis.url,
    COOKIE_DOMAIN: `.${E2E_DOMAIN}`,
    ALLOWED_REDIRECT_DOMAINS: `.${E2E_DOMAIN}`,
    LOG_LEVEL: 'info',
    KUBE_CLUSTERS: JSON.stringify([
      { name: 'prod-eu', server: 'https://127.0.0.1:6443', caData: SAMPLE_CA_PEM, clientId: 'kubectl' },
      { name: 'staging', server: 'https://127.0.0.1:7443', clientId: 'kubectl' },
    ]),
    ...env,
  });
  const forwardAuth = {
    address: `${service.url}/auth`,
    trustForwardHeader: true,
    authResponseHeaders: [
      'Authorization',
      'X-Auth-Request-User',
      'X-Auth-Request-Email',
      'X-Auth-Request-Groups',
    ],
    addAuthCookiesToResponse: ['_forward_auth'],
  };
  const traefik = await startTraefik({
    port,
    routes: [
      { pathPrefix: '/kubeconfig', service: service.url },
      { pathPrefix: '/oauth2/userinfo', service: service.url },
      { host: `app.${E2E_DOMAIN}`, forwardAuth, service: upstream.url },
      { host: `grafana.${E2E_DOMAIN}`, forwardAuth, service: upstream.url },
    ],
  });
  return {
    dex,
    redis,
    upstream,
    service,
    traefik,
    appUrl,
    otherUrl,
    async close() {
      await traefik.close();
      await service.close();
      await upstream.close();
      await dex.close();
      await redis.close();
    },
  };
}

/** The sealed session cookie's refresh token, to prove it never leaves the cookie. */
export async function refreshTokenOf(context: BrowserContext, service: TestService): Promise<string> {
  const cookie = (await context.cookies()).find((c) => c.name === '_forward_auth');
  if (!cookie) throw new Error('no session cookie in the browser');
  const data = await service.deps.sealer.unseal<{ rt: string }>(cookie.value);
  if (!data?.rt) throw new Error('session cookie has no refresh token');
  return data.rt;
}

/**
 * The Caddyfile the README recommends: `forward_auth` written out as the `reverse_proxy` it expands
 * to, plus one line Caddy's short form lacks — a cookie set by a 2xx auth answer (a rotated refresh
 * token) goes on to the browser, as Traefik's `addAuthCookiesToResponse` does.
 */
export function readmeCaddyfile(opts: {
  port: number;
  authHostPort: string;
  upstreamHostPort: string;
  copyHeaders: readonly string[];
  storageDir: string;
}): string {
  const copy = opts.copyHeaders.map((h) => `\t\t\trequest_header ${h} {rp.header.${h}}`);
  return [
    '{',
    '\tadmin off',
    '\tauto_https off',
    `\tdefault_bind 127.0.0.1`,
    `\tstorage file_system ${JSON.stringify(opts.storageDir)}`,
    '}',
    '',
    `http://:${opts.port} {`,
    `\treverse_proxy ${opts.authHostPort} {`,
    '\t\tmethod GET',
    '\t\trewrite /auth',
    '\t\theader_up X-Forwarded-Method {method}',
    '\t\theader_up X-Forwarded-Uri {uri}',
    '\t\t@allowed_with_cookie {',
    '\t\t\tstatus 2xx',
    '\t\t\theader Set-Cookie *',
    '\t\t}',
    '\t\thandle_response @allowed_with_cookie {',
    ...copy,
    '\t\t\theader +Set-Cookie {rp.header.Set-Cookie}',
    '\t\t}',
    '\t\t@allowed status 2xx',
    '\t\thandle_response @allowed {',
    ...copy,
    '\t\t}',
    '\t}',
    `\treverse_proxy ${opts.upstreamHostPort}`,
    "\t# the service's own pages: reached directly (they check the session themselves)",
    '\thandle /kubeconfig* {',
    `\t\treverse_proxy ${opts.authHostPort}`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

export async function startReadmeCaddy(opts: {
  port: number;
  authUrl: string;
  upstreamUrl: string;
  copyHeaders: readonly string[];
}): Promise<RunningProxy> {
  const dir = await makeTempDir('caddy-readme');
  const config = readmeCaddyfile({
    port: opts.port,
    authHostPort: new URL(opts.authUrl).host,
    upstreamHostPort: new URL(opts.upstreamUrl).host,
    copyHeaders: opts.copyHeaders,
    storageDir: join(dir, 'storage'),
  });
  const file = join(dir, 'Caddyfile');
  await writeFile(file, config);
  const proc = spawnTracked(CADDY_BIN, ['run', '--config', file, '--adapter', 'caddyfile'], {
    name: `caddy-readme:${opts.port}`,
    cwd: dir,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, XDG_DATA_HOME: join(dir, 'data') },
  });
  try {
    await waitUntil('caddy to listen', () => tcpAccepts(opts.port, 500), { proc, timeoutMs: 15_000 });
  } catch (error) {
    await proc.stop('SIGKILL');
    await removeDir(dir);
    throw error;
  }
  return {
    url: `http://127.0.0.1:${opts.port}`,
    port: opts.port,
    config,
    async close() {
      await proc.stop('SIGKILL');
      await removeDir(dir);
    },
  };
}

/** The nginx server block the README shows (with loopback addresses and private temp paths). */
export function readmeNginxConf(opts: {
  port: number;
  authOrigin: string;
  upstreamOrigin: string;
  dir: string;
}): string {
  const forwarded = [
    '            proxy_set_header X-Forwarded-Proto $scheme;',
    '            proxy_set_header X-Forwarded-Host $http_host;',
    '            proxy_set_header X-Forwarded-Uri $request_uri;',
    '            proxy_set_header X-Forwarded-For $remote_addr;',
  ];
  const d = opts.dir;
  return [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${d}/nginx.pid;`,
    'error_log stderr warn;',
    'events { worker_connections 256; }',
    'http {',
    '    access_log off;',
    `    client_body_temp_path ${d}/client_body;`,
    `    proxy_temp_path ${d}/proxy;`,
    `    fastcgi_temp_path ${d}/fastcgi;`,
    `    uwsgi_temp_path ${d}/uwsgi;`,
    `    scgi_temp_path ${d}/scgi;`,
    '    server {',
    `        listen 127.0.0.1:${opts.port};`,
    '        location / {',
    '            auth_request /_oauth2_auth;',
    '            error_page 401 = @login;',
    '            auth_request_set $auth_authorization $upstream_http_authorization;',
    '            auth_request_set $auth_user $upstream_http_x_auth_request_user;',
    '            auth_request_set $auth_email $upstream_http_x_auth_request_email;',
    '            auth_request_set $auth_groups $upstream_http_x_auth_request_groups;',
    '            proxy_set_header Authorization $auth_authorization;',
    '            proxy_set_header X-Auth-Request-User $auth_user;',
    '            proxy_set_header X-Auth-Request-Email $auth_email;',
    '            proxy_set_header X-Auth-Request-Groups $auth_groups;',
    '            auth_request_set $auth_cookie $upstream_http_set_cookie;',
    '            add_header Set-Cookie $auth_cookie;',
    '            proxy_set_header Host $http_host;',
    `            proxy_pass ${opts.upstreamOrigin};`,
    '        }',
    '        location = /_oauth2_auth {',
    '            internal;',
    `            proxy_pass ${opts.authOrigin}/oauth2/auth;`,
    '            proxy_pass_request_body off;',
    '            proxy_set_header Content-Length "";',
    '            proxy_set_header X-Forwarded-Method $request_method;',
    ...forwarded,
    '            proxy_buffer_size 32k;',
    '            proxy_buffers 4 32k;',
    '        }',
    '        location @login {',
    '            return 302 $scheme://$http_host/oauth2/start?rd=$scheme://$http_host$request_uri;',
    '        }',
    '        location /oauth2/ {',
    `            proxy_pass ${opts.authOrigin};`,
    ...forwarded,
    '        }',
    '        location /kubeconfig {',
    `            proxy_pass ${opts.authOrigin};`,
    ...forwarded,
    '        }',
    '    }',
    '}',
    '',
  ].join('\n');
}

export async function startReadmeNginx(opts: {
  port: number;
  authUrl: string;
  upstreamUrl: string;
}): Promise<RunningProxy> {
  const dir = await makeTempDir('nginx-readme');
  const config = readmeNginxConf({
    port: opts.port,
    authOrigin: new URL(opts.authUrl).origin,
    upstreamOrigin: new URL(opts.upstreamUrl).origin,
    dir,
  });
  const file = join(dir, 'nginx.conf');
  await writeFile(file, config);
  const proc = spawnTracked(NGINX_BIN, ['-p', `${dir}/`, '-c', file, '-e', 'stderr'], {
    name: `nginx-readme:${opts.port}`,
    cwd: dir,
  });
  try {
    await waitUntil('nginx to listen', () => tcpAccepts(opts.port, 500), { proc, timeoutMs: 15_000 });
  } catch (error) {
    await proc.stop('SIGKILL');
    await removeDir(dir);
    throw error;
  }
  return {
    url: `http://127.0.0.1:${opts.port}`,
    port: opts.port,
    config,
    async close() {
      await proc.stop('SIGKILL');
      await removeDir(dir);
    },
  };
}

export interface SiblingSite {
  /** http://127.0.0.1:<port>; any *.localhost host name reaches it too (Chromium maps them to loopback). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A hostile site for browser tests, on its own port (cookies ignore ports, so under
 * `evil.<domain>.localhost` it is a sibling subdomain of the dashboards):
 * - `/plant?set=<Set-Cookie>…` answers with those Set-Cookie lines, as a sibling planting cookies;
 * - `/post?action=<url>` submits a POST form to `url` at once (a cross-site forged request);
 * - `/img?src=<url>` loads `url` as an image (a forged GET).
 */
export async function startSiblingSite(): Promise<SiblingSite> {
  const attr = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sibling');
    let body = '<p>nothing here</p>';
    const headers: Record<string, string | string[]> = { 'content-type': 'text/html; charset=utf-8' };
    if (url.pathname === '/plant') {
      headers['set-cookie'] = url.searchParams.getAll('set');
      body = '<p id="planted">planted</p>';
    } else if (url.pathname === '/post') {
      const action = attr(url.searchParams.get('action') ?? '/');
      body = `<form id="f" method="post" action="${action}"><input name="x" value="1"></form><script>document.getElementById('f').submit()</script>`;
    } else if (url.pathname === '/img') {
      body = `<img id="i" src="${attr(url.searchParams.get('src') ?? '/')}" alt="">`;
    }
    res.writeHead(200, headers);
    res.end(`<!doctype html><html><head><title>sibling</title></head><body>${body}</body></html>`);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
