/**
 * What every reference server of the benchmark shares: its settings (from the environment the
 * harness sets), the response headers to answer with (captured from a real `/auth` 200), the
 * session cookie reader, and listening on 127.0.0.1.
 *
 * These servers are compositions of our own dependencies, each doing what a naive forward-auth
 * hot path would do, so the table shows what each layer costs on this machine in this run.
 */
import { readFileSync } from 'node:fs';
import type { RequestListener, Server } from 'node:http';
import { createServer } from 'node:http';
import { Redis } from 'ioredis';

export interface ReferenceSettings {
  readonly port: number;
  /** Response headers of a real `/auth` 200 (Authorization included), in order. */
  readonly headers: Readonly<Record<string, string>>;
  readonly cookieName: string;
  readonly redisUrl: string | undefined;
  readonly keyPrefix: string;
  /** AES-256-GCM key (hex) of the cookie in the AES variant. */
  readonly aesKey: string | undefined;
  /** iron-session password of the cookie in the iron-session variant. */
  readonly ironPassword: string | undefined;
}

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
}

export function readSettings(): ReferenceSettings {
  const file = JSON.parse(readFileSync(required('BENCH_HEADERS_FILE'), 'utf8')) as {
    headers: Record<string, string>;
  };
  return {
    port: Number(required('BENCH_PORT')),
    headers: file.headers,
    cookieName: process.env['BENCH_COOKIE_NAME'] ?? 'ref_session',
    redisUrl: process.env['BENCH_REDIS_URL'],
    keyPrefix: process.env['BENCH_KEY_PREFIX'] ?? 'bench:ref:',
    aesKey: process.env['BENCH_AES_KEY'],
    ironPassword: process.env['BENCH_IRON_PASSWORD'],
  };
}

/** The ioredis client as a naive service would make it; auto-pipelining only when asked. */
export function redisClient(settings: ReferenceSettings, autoPipelining: boolean): Redis {
  if (settings.redisUrl === undefined) throw new Error('BENCH_REDIS_URL is not set');
  const client = new Redis(settings.redisUrl, { enableAutoPipelining: autoPipelining });
  client.on('error', (error: Error) => process.stderr.write(`redis: ${error.message}\n`));
  return client;
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const at = header.indexOf(`${name}=`);
  if (at === -1 || (at > 0 && header.charCodeAt(at - 1) !== 0x20 && header.charCodeAt(at - 1) !== 0x3b)) {
    return undefined;
  }
  const start = at + name.length + 1;
  const end = header.indexOf(';', start);
  return end === -1 ? header.slice(start) : header.slice(start, end);
}

/** The captured headers with the Authorization value taken from the store instead. */
export function headersWith(settings: ReferenceSettings, authorization: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(settings.headers)) {
    out[name] = name.toLowerCase() === 'authorization' ? authorization : value;
  }
  return out;
}

/** Listens on 127.0.0.1 with the service's keep-alive timeout; exits on SIGTERM. */
export function listen(handler: RequestListener, port: number): Server {
  const server = createServer({ keepAliveTimeout: 65_000 }, handler);
  server.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
  return server;
}
