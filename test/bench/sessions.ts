/**
 * Sessions for the benchmark: real ones through the login flow (service → Dex stand-in →
 * callback), reached directly on the service's port under a `*.localhost` name, and synthetic
 * store entries of the same size for the session-count scaling run.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import type { Redis } from 'ioredis';
import { Browser, CHROME_USER_AGENT, loginThroughDex } from '../support/browser.ts';
import type { DexUser } from '../support/dex.ts';

export const SESSION_COOKIE = '_forward_auth';

/** `count` distinct verified users (Dex keeps one refresh token per user and client). */
export function syntheticUsers(count: number): DexUser[] {
  return Array.from({ length: count }, (_, i) => {
    const n = String(i).padStart(5, '0');
    return {
      login: `bench-${n}@example.com`,
      password: 'password',
      userId: `b3ac4000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      email: `bench-${n}@example.com`,
      emailVerified: true,
      name: `bench-${n}`,
      groups: ['engineering', 'bench'],
    };
  });
}

/** The public name of a service listening on 127.0.0.1:port (the Browser maps *.localhost there). */
export const appHost = (port: number): string => `app.localhost:${port}`;

/** Logs `user` in on the service at `port`; returns the session cookie's value. */
export async function login(port: number, user: Pick<DexUser, 'login' | 'password'>): Promise<string> {
  const browser = new Browser({ navigation: true, timeoutMs: 60_000 });
  const origin = `http://${appHost(port)}`;
  const start = `${origin}/oauth2/start?rd=${encodeURIComponent(`${origin}/`)}`;
  const result = await loginThroughDex(browser, start, user);
  const cookie = browser.cookies(origin).find((c) => c.name === SESSION_COOKIE);
  if (cookie === undefined) {
    const trail = result.chain.map((r) => `${r.status} ${r.url}`).join('\n  ');
    throw new Error(`login of ${user.login} on port ${port} made no session cookie:\n  ${trail}`);
  }
  return cookie.value;
}

/**
 * Logs `user` in through a gateway: opens the protected dashboard at `appUrl`, is sent to log in,
 * signs in at the stand-in and ends on the dashboard. Returns the session cookie's value.
 */
export async function loginAt(appUrl: string, user: Pick<DexUser, 'login' | 'password'>): Promise<string> {
  const browser = new Browser({ navigation: true, timeoutMs: 60_000 });
  const result = await loginThroughDex(browser, `${appUrl}/`, user);
  const cookie = browser.cookies(appUrl).find((c) => c.name === SESSION_COOKIE);
  if (cookie === undefined || result.final.status !== 200) {
    const trail = result.chain.map((r) => `${r.status} ${r.url}`).join('\n  ');
    throw new Error(`login of ${user.login} through ${appUrl} ended without a session:\n  ${trail}`);
  }
  return cookie.value;
}

/** What Traefik sends to `/auth` for an XHR of a logged-in dashboard user. */
export function forwardAuthHeaders(port: number, cookie: string): Record<string, string> {
  return {
    'X-Forwarded-Method': 'GET',
    'X-Forwarded-Proto': 'http',
    'X-Forwarded-Host': appHost(port),
    'X-Forwarded-Uri': '/api/dashboards/uid/bench?orgId=1',
    'X-Forwarded-For': '203.0.113.7',
    Accept: 'application/json, text/plain, */*',
    'User-Agent': CHROME_USER_AGENT,
    Cookie: `${SESSION_COOKIE}=${cookie}`,
  };
}

export interface Answer {
  readonly status: number;
  /** Raw header pairs, in order, names as sent. */
  readonly rawHeaders: readonly string[];
  readonly setCookie: readonly string[];
  readonly ms: number;
}

/** One GET on 127.0.0.1:port with exactly these headers. */
export function get(
  port: number,
  path: string,
  headers: Readonly<Record<string, string>>,
  agent?: Agent,
): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'GET', headers, agent: agent ?? false, timeout: 60_000 },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            rawHeaders: res.rawHeaders,
            setCookie: res.headers['set-cookie'] ?? [],
            ms: performance.now() - started,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on ${port} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The session cookie value a reply hands out, if any. */
export function handedCookie(answer: Answer): string | undefined {
  for (const line of answer.setCookie) {
    if (line.startsWith(`${SESSION_COOKIE}=`)) {
      const value = line.slice(SESSION_COOKIE.length + 1).split(';')[0];
      if (value) return value;
    }
  }
  return undefined;
}

/** Shape of the session entries the service has written: key length, value length, TTL. */
export interface EntryShape {
  readonly keyPrefix: string;
  readonly keyLength: number;
  readonly valueLength: number;
  readonly ttlMs: number;
}

/**
 * Reads the shape of the real session entries under `prefix`: the median value size (so one user
 * with 150 groups does not make every synthetic session six times larger), key length and TTL.
 */
export async function entryShape(redis: Redis, prefix: string): Promise<EntryShape> {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length === 0) throw new Error(`no ${prefix}* entry in Redis: has the session key format changed?`);
  const sizes = await Promise.all(
    keys.slice(0, 100).map(async (key) => ({ key, length: await redis.strlen(key) })),
  );
  sizes.sort((a, b) => a.length - b.length);
  const median = sizes[Math.floor((sizes.length - 1) / 2)]!;
  const ttlMs = await redis.pttl(median.key);
  return {
    keyPrefix: prefix,
    keyLength: median.key.length - prefix.length,
    valueLength: median.length,
    ttlMs: Math.max(ttlMs, 60_000),
  };
}

/**
 * Writes `count` entries server-side in one script call: keys of the real length under the real
 * prefix (hex of SHA-1 over a random seed and a counter), values of the real size, the real TTL.
 * Every SET stores its own copy of the value, so Redis's memory is what real sessions would use.
 */
const FILL = `local prefix, seed, from, n, value, ttl, len = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
for i = from, from + n - 1 do
  local id = string.sub(redis.sha1hex(seed .. ':' .. i) .. redis.sha1hex(i .. ':' .. seed), 1, len)
  redis.call('SET', prefix .. id, value, 'PX', ttl)
end
return n`;

/**
 * Writes synthetic session entries numbered `existing` … `target - 1`, in batches of `batch`
 * (each batch is one short script run, so 1M entries take seconds, not minutes). Returns how many
 * were written.
 */
export async function fillSessions(
  redis: Redis,
  shape: EntryShape,
  existing: number,
  target: number,
  seed: string,
  batch = 20_000,
): Promise<number> {
  if (shape.keyLength > 80)
    throw new Error(`session keys of ${shape.keyLength} characters are not supported`);
  const value = `v1.${randomBytes(shape.valueLength).toString('base64url')}`.slice(0, shape.valueLength);
  let written = 0;
  for (let at = existing; at < target; at += batch) {
    const n = Math.min(batch, target - at);
    await redis.eval(FILL, 0, shape.keyPrefix, seed, at, n, value, shape.ttlMs, shape.keyLength);
    written += n;
  }
  return written;
}

/** A keep-alive agent for bursts of concurrent requests (as a proxy's connection pool would be). */
export function burstAgent(maxSockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets });
}
