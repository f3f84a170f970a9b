/**
 * Test-harness launchers for real Caddy and nginx instances on 127.0.0.1 that
 * put a forward-auth service in front of an upstream. Each writes its config
 * into a private temp dir (removed on close) and returns the config text too.
 */
import { existsSync } from 'node:fs';
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
  const lines = [
    '{',
    '\tadmin off',
    '\tauto_https off',
    `\tdefault_bind ${LOOPBACK}`,
    `\tstorage file_system ${JSON.stringify(opts.storageDir)}`,
    '}',
    '',
    `http://:${opts.port} {`,
    `\tforward_auth ${auth.hostPort} {`,
    `\t\turi ${authPath}`,
  ];
  if (opts.copyHeaders.length > 0) lines.push(`\t\tcopy_headers ${opts.copyHeaders.join(' ')}`);
  lines.push('\t}', `\treverse_proxy ${upstream.hostPort}`, '}', '');
  return lines.join('\n');
}

export async function startCaddy(opts: ProxyOptions): Promise<RunningProxy> {
  const dir = await makeTempDir('caddy');
  try {
    const home = join(dir, 'home');
    await mkdir(home);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: home,
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_DATA_HOME: join(dir, 'data'),
      XDG_CACHE_HOME: join(dir, 'cache'),
    };
    let config = '';
    const { port, proc } = await launchOnPort(opts.port, async (p) => {
      config = caddyConfig({ ...opts, port: p, storageDir: join(dir, 'storage') });
      const file = join(dir, 'Caddyfile');
      await writeFile(file, config);
      return spawnTracked(CADDY_BIN, ['run', '--config', file, '--adapter', 'caddyfile'], {
        name: `caddy:${p}`,
        cwd: dir,
        env,
      });
    });
    return { url: `http://${LOOPBACK}:${port}`, port, config, close: closer(proc, dir) };
  } catch (err) {
    await removeDir(dir);
    throw err;
  }
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
  const d = opts.dir;
  const copy = opts.copyHeaders.flatMap((h) => [
    `            auth_request_set $h_${varSuffix(h)} $upstream_http_${varSuffix(h)};`,
    `            proxy_set_header ${h} $h_${varSuffix(h)};`,
  ]);
  return [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${d}/nginx.pid;`,
    'error_log stderr warn;',
    '',
    'events {',
    '    worker_connections 256;',
    '}',
    '',
    'http {',
    '    access_log off;',
    `    client_body_temp_path ${d}/client_body;`,
    `    proxy_temp_path ${d}/proxy;`,
    `    fastcgi_temp_path ${d}/fastcgi;`,
    `    uwsgi_temp_path ${d}/uwsgi;`,
    `    scgi_temp_path ${d}/scgi;`,
    '',
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
    '        location /oauth2/ {',
    `            proxy_pass ${auth.origin};`,
    '            proxy_set_header X-Forwarded-Proto $scheme;',
    '            proxy_set_header X-Forwarded-Host $http_host;',
    '            proxy_set_header X-Forwarded-Uri $request_uri;',
    '            proxy_set_header X-Forwarded-For $remote_addr;',
    '        }',
    '    }',
    '}',
    '',
  ].join('\n');
}

export async function startNginx(opts: ProxyOptions): Promise<RunningProxy> {
  const dir = await makeTempDir('nginx');
  try {
    let config = '';
    const { port, proc } = await launchOnPort(opts.port, async (p) => {
      config = nginxConfig({ ...opts, port: p, dir });
      const file = join(dir, 'nginx.conf');
      await writeFile(file, config);
      // -e stderr: never touch the compiled-in error log before the config is read.
      return spawnTracked(NGINX_BIN, ['-p', `${dir}/`, '-c', file, '-e', 'stderr'], {
        name: `nginx:${p}`,
        cwd: dir,
      });
    });
    return { url: `http://${LOOPBACK}:${port}`, port, config, close: closer(proc, dir) };
  } catch (err) {
    await removeDir(dir);
    throw err;
  }
}
