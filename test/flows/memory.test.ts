import { Agent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Dex, startDex } from '../support/dex.ts';
import { type RedisServer, startRedis } from '../support/redis.ts';
import { sealSessions } from '../support/sealedSessions.ts';
import { TEST_COOKIE_SECRET } from '../support/service.ts';
import { RUNTIME_FLAGS, type ServiceProcess, startServiceProcess } from '../support/serviceProcess.ts';
import { CLIENT_ID, CLIENT_SECRET } from '../support/stack.ts';

/**
 * Memory bounded by bytes (issue 15 item 3, issue 11 item 14): thousands of sessions of users with
 * 150 groups of 40 characters each — about 30 KB per session once resolved, far more than the
 * service's heap could hold — against a service process started with a small heap
 * (`--max-old-space-size=96`, the shipped `--max-semi-space-size=8`). It must not crash, must
 * keep answering every session, and must do so by evicting sessions and reading them from Redis
 * again.
 *
 * For speed the sessions are not logged in through the provider one by one: each is created the
 * way a login creates it (test/support/sealedSessions.ts), so the cookie, record, token chain and
 * indexes in Redis are exactly a login's. The service process itself only decides.
 */

const SESSIONS = 2_500;
const HOST = 'app.localhost';
const groups = Array.from(
  { length: 150 },
  (_, i) => `platform-team-${String(i).padStart(3, '0')}-${'g'.repeat(22)}`,
);

let redis: RedisServer;
let dex: Dex;
let service: ServiceProcess;
const cookies: string[] = [];

async function createSessions(): Promise<void> {
  const users = Array.from({ length: SESSIONS }, (_, i) => ({
    sub: `memory-user-${i}`,
    email: `user-${i}@example.com`,
    groups,
  }));
  const settings = {
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
    COOKIE_SECRET: TEST_COOKIE_SECRET,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    REDIS_URL: redis.url,
  };
  cookies.push(...(await sealSessions(users, { settings, dex, host: HOST, concurrency: 1 })));
}

beforeAll(async () => {
  redis = await startRedis();
  dex = await startDex({ clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [] }] });
  service = await startServiceProcess(
    {
      OIDC_ISSUER_URL: dex.issuer,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
      REDIS_URL: redis.url,
      LOG_LEVEL: 'warn',
      // The audit stream stays on (AUDIT_LOG=stdout, every decision): its 6 KB lines of a
      // 150-group user must fit the heap as well, and nothing it holds may escape the budget.
    },
    undefined,
    { nodeFlags: `${RUNTIME_FLAGS} --max-old-space-size=96` },
  );
  await createSessions();
}, 120_000);

afterAll(async () => {
  await service?.close();
  await dex?.close();
  await redis?.close();
});

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

function decide(cookie: string, i: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${service.url}/auth`,
      {
        agent,
        headers: {
          'x-forwarded-method': 'GET',
          'x-forwarded-proto': 'https',
          'x-forwarded-host': HOST,
          'x-forwarded-uri': `/d/${i}`,
          accept: 'application/json',
          cookie: `_forward_auth=${cookie}`,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Every session once, 16 at a time; the statuses seen. */
async function pass(): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < cookies.length) {
        const i = next++;
        const status = await decide(cookies[i] as string, i).catch(() => 0);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  return statuses;
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${service.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('memory bounded by bytes under a small heap', () => {
  it('serves thousands of 150-group sessions without crashing, evicting and re-reading them from Redis', async () => {
    expect(cookies).toHaveLength(SESSIONS);
    for (let round = 0; round < 2; round++) {
      expect(await pass()).toEqual(new Map([[200, SESSIONS]]));
    }
    expect(service.process().child.exitCode).toBeNull();
    expect((await fetch(`${service.url}/healthz`)).status).toBe(200);
    const max = await metric('dex_forward_auth_cache_max_bytes');
    // A quarter of the heap limit: 96 MiB old space plus the young generation.
    expect(max).toBeGreaterThan(24 * 1024 * 1024);
    expect(max).toBeLessThan(40 * 1024 * 1024);
    expect(await metric('dex_forward_auth_cache_bytes{cache="sessions"}')).toBeLessThanOrEqual(max);
    // Far more sessions than fit: they were evicted, and read from Redis again when they came back.
    expect(await metric('dex_forward_auth_cache_evictions_total{cache="sessions"}')).toBeGreaterThan(
      SESSIONS / 2,
    );
    expect(await metric('dex_forward_auth_cache_misses_total{cache="sessions"}')).toBeGreaterThan(SESSIONS);
    const heap = await metric('dex_forward_auth_process_nodejs_heap_size_used_bytes');
    const rss = await metric('dex_forward_auth_process_resident_memory_bytes');
    const used = await metric('dex_forward_auth_cache_bytes{cache="sessions"}');
    console.info(
      `memory test: ${SESSIONS} sessions, cache budget ${(max / 2 ** 20).toFixed(1)} MiB (sessions ${(used / 2 ** 20).toFixed(1)} MiB), heap used ${(heap / 2 ** 20).toFixed(1)} MiB, RSS ${(rss / 2 ** 20).toFixed(1)} MiB`,
    );
  }, 180_000); // 5,000 decisions under a 96 MiB heap: on a busy shared machine well over the default 30 s
});
