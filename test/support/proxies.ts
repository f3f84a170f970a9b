/**
 * Test-harness launchers for real Caddy and nginx instances on 127.0.0.1 that
 * put a forward-auth service in front of an upstream. Each writes its config
 * into a private temp dir (removed on close) and returns the config text too.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import {
  LOOPBACK,
  makeTempDir,
  removeDir,
  spawnTracked,
  type TrackedProcess,
  tcpAccepts,
  waitUntil,
} from './redis.ts';

export const CADDY_BIN = process.env['CADDY_BIN'] ?? '/usr/bin/caddy';
export const NGINX_BIN = process.env['NGINX_BIN'] ?? '/usr/sbin/nginx';
export const hasCaddy = (): boolean => existsSync(CADDY_BIN);
export const hasNginx = (): boolean => existsSync(NGINX_BIN);

export interface ProxyOptions {
  /** Origin of the auth service, e.g. http://127.0.0.1:4180 (only the origin is used). */
  authUrl: string;
  /** Origin of the protected upstream, e.g. http://127.0.0.1:5000. */
  upstreamUrl: string;
  /** Response headers of the auth check to copy onto the upstream request, e.g. ['X-Auth-Request-User']. */
  copyHeaders: string[];
  /** Listen port (default: a free one). */
  port?: number;
  /** Path of the auth check on the auth service (default: Caddy '/auth', nginx '/oauth2/auth'). */
  authPath?: string;
}

export interface RunningProxy {
  url: string;
  port: number;
  /** The generated Caddyfile / nginx.conf. */
  config: string;
  close(): Promise<void>;
}

function loopbackOrigin(what: string, raw: string): { origin: string; hostPort: string } {
  const u = new URL(raw);
  if (u.protocol !== 'http:' || u.hostname !== LOOPBACK) {
    throw new Error(`${what} must be an http://${LOOPBACK}:<port> URL, got ${raw}`);
  }
  const port = u.port === '' ? '80' : u.port;
  return { origin: `http://${LOOPBACK}:${port}`, hostPort: `${LOOPBACK}:${port}` };
}

function checkHeaderNames(names: readonly string[]): void {
  for (const n of names) {
    if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(n))
      throw new Error(`unsupported header name: ${JSON.stringify(n)}`);
  }
}

function checkPath(path: string): void {
  if (!/^\/[A-Za-z0-9._~/-]*$/.test(path)) throw new Error(`unsupported auth path: ${JSON.stringify(path)}`);
}

/**
 * Starts `make(port)` and waits until it accepts TCP on 127.0.0.1:port. An auto-picked
 * port that someone else grabbed in the meantime is retried with a new one.
 */
async function launchOnPort(
  fixedPort: number | undefined,
  make: (port: number) => Promise<TrackedProcess>,
): Promise<{ port: number; proc: TrackedProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ?? (await freePort());
    const proc = await make(port);
    try {
      await waitUntil(`${proc.name} to listen on ${LOOPBACK}:${port}`, () => tcpAccepts(port, 500), {
        proc,
        timeoutMs: 15_000,
      });
      // Guard against having connected to somebody else's listener on a clashing port.
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (!proc.running()) throw new Error(`${proc.name} exited after start:\n${proc.output()}`);
      return { port, proc };
    } catch (err) {
      await proc.stop('SIGKILL');
      const clash = /address already in use/i.test(proc.output());
      if (fixedPort !== undefined || !clash || attempt >= 3) throw err;
    }
  }
}

/** nginx.conf around one `server {}` block: foreground, loopback, private temp paths. */
function nginxMain(dir: string, server: string): string {
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
}

/** A Caddyfile's global options for tests: no admin API, no HTTPS automation, loopback only. */
function caddyGlobals(storageDir: string): string {
  return `{\n\tadmin off\n\tauto_https off\n\tdefault_bind ${LOOPBACK}\n\tstorage file_system ${JSON.stringify(storageDir)}\n}\n`;
}

function spawnNginx(file: string, dir: string, port: number): TrackedProcess {
  // -e stderr: never touch the compiled-in error log before the config is read.
  return spawnTracked(NGINX_BIN, ['-p', `${dir}/`, '-c', file, '-e', 'stderr'], {
    name: `nginx:${port}`,
    cwd: dir,
  });
}

function spawnCaddy(file: string, dir: string, port: number): TrackedProcess {
  return spawnTracked(CADDY_BIN, ['run', '--config', file, '--adapter', 'caddyfile'], {
    name: `caddy:${port}`,
    cwd: dir,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: join(dir, 'home'),
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_DATA_HOME: join(dir, 'data'),
      XDG_CACHE_HOME: join(dir, 'cache'),
    },
  });
}

/** Writes the config `make(port, dir)` returns and starts the proxy on a free (or given) port. */
async function launchProxy(
  kind: 'nginx' | 'caddy',
  fixedPort: number | undefined,
  make: (port: number, dir: string) => string,
): Promise<RunningProxy> {
  const dir = await makeTempDir(kind);
  try {
    await mkdir(join(dir, 'home'));
    let config = '';
    const { port, proc } = await launchOnPort(fixedPort, async (p) => {
      config = make(p, dir);
      const file = join(dir, kind === 'nginx' ? 'nginx.conf' : 'Caddyfile');
      await writeFile(file, config);
      return kind === 'nginx' ? spawnNginx(file, dir, p) : spawnCaddy(file, dir, p);
    });
    return { url: `http://${LOOPBACK}:${port}`, port, config, close: closer(proc, dir) };
  } catch (err) {
    await removeDir(dir);
    throw err;
  }
}

function closer(proc: TrackedProcess, dir: string): () => Promise<void> {
  let closed = false;
  return async () => {
    if (closed) return;
    closed = true;
    await proc.stop('SIGKILL');
    await removeDir(dir);
  };
}

// ---------------------------------------------------------------------------
// Caddy
// ---------------------------------------------------------------------------

export function caddyConfig(opts: ProxyOptions & { port: number; storageDir: string }): string {
  const auth = loopbackOrigin('authUrl', opts.authUrl);
  const upstream = loopbackOrigin('upstreamUrl', opts.upstreamUrl);
  const authPath = opts.authPath ?? '/auth';
  checkPath(authPath);
  checkHeaderNames(opts.copyHeaders);
  const lines = [`http://:${opts.port} {`, `\tforward_auth ${auth.hostPort} {`, `\t\turi ${authPath}`];
  if (opts.copyHeaders.length > 0) lines.push(`\t\tcopy_headers ${opts.copyHeaders.join(' ')}`);
  lines.push('\t}', `\treverse_proxy ${upstream.hostPort}`, '}', '');
  return `${caddyGlobals(opts.storageDir)}\n${lines.join('\n')}`;
}

export function startCaddy(opts: ProxyOptions): Promise<RunningProxy> {
  return launchProxy('caddy', opts.port, (port, dir) =>
    caddyConfig({ ...opts, port, storageDir: join(dir, 'storage') }),
  );
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

/** `X-Auth-Request-User` -> `x_auth_request_user` (nginx variable suffix). */
const varSuffix = (header: string): string => header.toLowerCase().replace(/-/g, '_');

export function nginxConfig(opts: ProxyOptions & { port: number; dir: string }): string {
  const auth = loopbackOrigin('authUrl', opts.authUrl);
  const upstream = loopbackOrigin('upstreamUrl', opts.upstreamUrl);
  const authPath = opts.authPath ?? '/oauth2/auth';
  checkPath(authPath);
  checkHeaderNames(opts.copyHeaders);
  const copy = opts.copyHeaders.flatMap((h) => [
    `            auth_request_set $h_${varSuffix(h)} $upstream_http_${varSuffix(h)};`,
    `            proxy_set_header ${h} $h_${varSuffix(h)};`,
  ]);
  const server = [
    '    server {',
    `        listen ${LOOPBACK}:${opts.port};`,
    '        server_name _;',
    '',
    '        location / {',
    '            auth_request /_oauth2_auth;',
    '            error_page 401 = @login;',
    ...copy,
    '            auth_request_set $auth_cookie $upstream_http_set_cookie;',
    '            add_header Set-Cookie $auth_cookie;',
    '            proxy_set_header Host $http_host;',
    '            proxy_set_header X-Forwarded-Proto $scheme;',
    '            proxy_set_header X-Forwarded-Host $http_host;',
    '            proxy_set_header X-Forwarded-For $remote_addr;',
    `            proxy_pass ${upstream.origin};`,
    '        }',
    '',
    '        location = /_oauth2_auth {',
    '            internal;',
    `            proxy_pass ${auth.origin}${authPath};`,
    '            proxy_pass_request_body off;',
    '            proxy_set_header Content-Length "";',
    '            proxy_set_header X-Forwarded-Proto $scheme;',
    '            proxy_set_header X-Forwarded-Host $http_host;',
    '            proxy_set_header X-Forwarded-Uri $request_uri;',
    '            proxy_set_header X-Forwarded-Method $request_method;',
    '            proxy_set_header X-Forwarded-For $remote_addr;',
    '            proxy_http_version 1.1;',
    '        }',
    '',
    '        # Stock nginx cannot URL-encode, so rd carries $request_uri verbatim: a target',
    '        # with a query string ("?a=1&b=2") is truncated at the first "&" when the auth',
    '        # service parses rd. The service should treat rd as untrusted and validate it.',
    '        location @login {',
    '            return 302 $scheme://$http_host/oauth2/start?rd=$scheme://$http_host$request_uri;',
    '        }',
    '',
    "        # The service's own pages: exactly these paths, never the decision endpoints.",
    '        location ~ ^/(oauth2/(start|callback|sign_out|userinfo)|kubeconfig(/download)?)$ {',
    `            proxy_pass ${auth.origin};`,
    '            proxy_set_header X-Forwarded-Proto $scheme;',
    '            proxy_set_header X-Forwarded-Host $http_host;',
    '            proxy_set_header X-Forwarded-Uri $request_uri;',
    '            proxy_set_header X-Forwarded-For $remote_addr;',
    '        }',
    '    }',
  ].join('\n');
  return nginxMain(opts.dir, server);
}

export function startNginx(opts: ProxyOptions): Promise<RunningProxy> {
  return launchProxy('nginx', opts.port, (port, dir) => nginxConfig({ ...opts, port, dir }));
}

// ---------------------------------------------------------------------------
// The shipped configurations (deploy/nginx, deploy/caddy) and the README's ingress-nginx wiring
// ---------------------------------------------------------------------------

export const SHIPPED_FILES = {
  nginx: new URL('../../deploy/nginx/dex-forward-auth.conf', import.meta.url),
  caddy: new URL('../../deploy/caddy/Caddyfile', import.meta.url),
} as const;

export interface ShippedProxyOptions {
  /** The service's pages listener (PORT); stands for 127.0.0.1:4180 in the shipped file. */
  pagesUrl: string;
  /** Its decision listener (AUTH_PORT); stands for 127.0.0.1:4181. */
  decisionUrl: string;
  /** The dashboard; stands for 127.0.0.1:3000. */
  upstreamUrl: string;
  port?: number;
  /**
   * Mutual TLS to the decision listener, as the shipped file's commented lines (`#directive`,
   * no space after `#`) describe it: those lines enabled, reading client.crt, client.key and
   * ca.crt from `dir`.
   */
  mtls?: { dir: string };
  /**
   * nginx: the host names its dashboard block answers (stands for `server_name
   * grafana.example.com`); the shipped default server closes the connection for any other Host.
   */
  hosts?: readonly string[];
}

/**
 * The shipped file as the proxy runs it here: only the addresses are this test's loopback ports
 * (and, with `mtls`, the commented mutual-TLS lines enabled); every directive is as shipped.
 */
export function shippedConfig(
  kind: 'nginx' | 'caddy',
  opts: ShippedProxyOptions & { port: number; dir: string },
): string {
  let text = readFileSync(SHIPPED_FILES[kind], 'utf8');
  if (opts.mtls) {
    if (kind === 'nginx') text = text.replace(/^\s*proxy_pass http:\/\/127\.0\.0\.1:4181\/.*\n/m, '');
    text = text
      .replace(/^(\s*)#(?=\S)/gm, '$1')
      .replaceAll(`/etc/${kind}/dex-forward-auth/`, `${opts.mtls.dir}/`);
  }
  // One pass, whole port numbers only: a replaced address must never be matched again (a test
  // port such as 41811 would otherwise turn into the decision listener's address plus a digit).
  const addresses: Record<string, string> = {
    '4180': loopbackOrigin('pagesUrl', opts.pagesUrl).hostPort,
    '4181': new URL(opts.decisionUrl).host,
    '3000': loopbackOrigin('upstreamUrl', opts.upstreamUrl).hostPort,
  };
  text = text.replace(/127\.0\.0\.1:(4180|4181|3000)(?!\d)/g, (_, port: string) => addresses[port] as string);
  if (kind === 'caddy') {
    return (
      caddyGlobals(join(opts.dir, 'storage')) +
      text.replace(/^grafana\.example\.com \{/m, `http://:${opts.port} {`)
    );
  }
  if (opts.hosts)
    text = text.replace('server_name grafana.example.com;', `server_name ${opts.hosts.join(' ')};`);
  const listen = (_: string, flags?: string) => `listen ${LOOPBACK}:${opts.port}${flags ?? ''};`;
  return nginxMain(opts.dir, text.replace(/listen 80( default_server)?;/g, listen));
}

export function startShippedProxy(kind: 'nginx' | 'caddy', opts: ShippedProxyOptions): Promise<RunningProxy> {
  return launchProxy(kind, opts.port, (port, dir) => shippedConfig(kind, { ...opts, port, dir }));
}

/**
 * nginx configured the way ingress-nginx renders an Ingress with the annotations the README
 * documents (auth-url to /oauth2/auth, auth-signin, auth-response-headers), after the auth
 * location of its nginx.tmpl: X-Original-URL/-Method, X-Sent-From, X-Real-IP, X-Forwarded-For,
 * X-Auth-Request-Redirect, Host of the auth URL, and every other client header passed along
 * (a client's X-Forwarded-* included). The browser endpoints are a second Ingress to PORT.
 */
export interface IngressNginxOptions extends Omit<ShippedProxyOptions, 'mtls'> {
  authResponseHeaders: string[];
  /** The controller ConfigMap's `http-snippet` and `server-snippet`, rendered where ingress-nginx puts them. */
  snippets?: { http: string; server: string };
}

export function ingressNginxConfig(opts: IngressNginxOptions & { port: number; dir: string }): string {
  const decision = new URL(opts.decisionUrl);
  const pages = loopbackOrigin('pagesUrl', opts.pagesUrl).origin;
  checkHeaderNames(opts.authResponseHeaders);
  const copy = opts.authResponseHeaders.flatMap((h, i) => [
    `            auth_request_set $authHeader${i} $upstream_http_${varSuffix(h)};`,
    `            proxy_set_header '${h}' $authHeader${i};`,
  ]);
  const proxied = [
    '            proxy_set_header Host $http_host;',
    '            proxy_set_header X-Request-ID $request_id;',
    '            proxy_set_header X-Real-IP $remote_addr;',
    '            proxy_set_header X-Forwarded-For $remote_addr;',
    '            proxy_set_header X-Forwarded-Host $http_host;',
    '            proxy_set_header X-Forwarded-Proto $scheme;',
    '            proxy_set_header X-Forwarded-Scheme $scheme;',
    '            proxy_set_header X-Scheme $scheme;',
    '            proxy_set_header X-Original-URI $request_uri;',
  ];
  const server = [
    opts.snippets?.http ?? '',
    '    server {',
    `        listen ${LOOPBACK}:${opts.port};`,
    opts.snippets?.server ?? '',
    '        location / {',
    '            auth_request /_external-auth-Lw-Prefix;',
    '            auth_request_set $auth_cookie $upstream_http_set_cookie;',
    '            add_header Set-Cookie $auth_cookie;',
    ...copy,
    '            error_page 401 = @nginx-auth-signin;',
    ...proxied,
    `            proxy_pass ${loopbackOrigin('upstreamUrl', opts.upstreamUrl).origin};`,
    '        }',
    '        location = /_external-auth-Lw-Prefix {',
    '            internal;',
    '            proxy_pass_request_body off;',
    '            proxy_set_header Content-Length "";',
    '            proxy_set_header X-Forwarded-Proto "";',
    '            proxy_set_header X-Request-ID $request_id;',
    `            proxy_set_header Host ${decision.host};`,
    '            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;',
    '            proxy_set_header X-Original-Method $request_method;',
    '            proxy_set_header X-Sent-From "nginx-ingress-controller";',
    '            proxy_set_header X-Real-IP $remote_addr;',
    '            proxy_set_header X-Forwarded-For $remote_addr;',
    '            proxy_set_header X-Auth-Request-Redirect $request_uri;',
    '            proxy_http_version 1.1;',
    '            proxy_pass_request_headers on;',
    '            proxy_buffer_size 32k;',
    '            proxy_buffers 4 32k;',
    `            proxy_pass ${decision.origin}/oauth2/auth;`,
    '        }',
    '        location @nginx-auth-signin {',
    '            return 302 $scheme://$http_host/oauth2/start?rd=$scheme://$http_host$request_uri;',
    '        }',
    '        location ~ ^/(oauth2/(start|callback|sign_out|userinfo)|kubeconfig(/download)?)$ {',
    ...proxied,
    `            proxy_pass ${pages};`,
    '        }',
    '    }',
  ].join('\n');
  return nginxMain(opts.dir, server);
}

export function startIngressNginx(opts: IngressNginxOptions): Promise<RunningProxy> {
  return launchProxy('nginx', opts.port, (port, dir) => ingressNginxConfig({ ...opts, port, dir }));
}
