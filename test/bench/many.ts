/**
 * The many-sessions section of `npm run bench` (issue 15): N distinct sessions, one user in ten
 * with 150 groups, cycled by wrk through a Lua script (one cookie per request, round robin) against
 * the service with real Redis, and against a bare `node:http` server answering the same 200 in the
 * same run. Sessions are real logins through the Dex stand-in up to BENCH_MANY_REAL_LOGINS, beyond
 * that sealed the way logins seal them (test/support/sealedSessions.ts); the report says which.
 * Then the cost of a cache miss: the largest size up to 10,000 again with CACHE_MAX_BYTES=1Mi.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Dex, DexUser } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { makeTempDir, type TrackedProcess } from '../support/redis.ts';
import { type SealedUser, sealSessions } from '../support/sealedSessions.ts';
import { TEST_DEFAULTS } from '../support/service.ts';
import { RUNTIME_FLAGS, type ServiceProcess, startServiceProcess } from '../support/serviceProcess.ts';
import { type LoadResult, runLoad } from './load.ts';
import { cpuSeconds, rssAnonMiB, rssMiB } from './proc.ts';
import type { ManyResult, ManyRow, MissRow } from './report.ts';
import { appHost, forwardAuthHeaders, get, login, SESSION_COOKIE } from './sessions.ts';

export interface ManySettings {
  readonly sweep: readonly number[];
  readonly realLogins: number;
  readonly rounds: number;
  readonly durationSec: number;
  readonly warmupSec: number;
  readonly connections: number;
  readonly threads: number;
  /** Node flags of the service: the shipped Deployment's. */
  readonly nodeFlags: string;
  /** Measure the cost of a cache miss after the sweep. */
  readonly withMiss: boolean;
}

export interface ManyContext {
  readonly dex: Dex;
  /** The service's port (the stand-in knows its callback). */
  readonly port: number;
  readonly redisUrl: string;
  readonly redisPid: () => number | undefined;
  /** Starts a reference server (bare.ts) answering `headersFile`'s headers; returns its process. */
  readonly startBare: (port: number, headersFile: string) => Promise<TrackedProcess>;
  /** Starts bare-sessions.ts answering each cookie of `sessionsFile` its own headers. */
  readonly startSessionsBare: (port: number, sessionsFile: string) => Promise<TrackedProcess>;
  readonly serviceEnv: (redisUrl: string) => Record<string, string>;
  readonly log: (text: string) => void;
  readonly cleanups: (() => Promise<void>)[];
}

/** 150 groups of 40 characters (as the memory test's users have). */
const BIG_GROUPS = Array.from(
  { length: 150 },
  (_, i) => `platform-team-${String(i).padStart(3, '0')}-${'g'.repeat(22)}`,
);

const userOf = (i: number): DexUser & SealedUser => {
  const n = String(i).padStart(6, '0');
  return {
    login: `many-${n}@example.com`,
    password: 'password',
    userId: `3a7f0000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    email: `many-${n}@example.com`,
    emailVerified: true,
    name: `many-${n}`,
    sub: `many-user-${n}`,
    groups: i % 10 === 9 ? BIG_GROUPS : ['engineering', 'dashboards'],
  };
};

/** The wrk script: every request carries the next cookie of the file (round robin). */
export const CYCLE_LUA = `local cookies, n, i = {}, 0, 0
function init(args)
  for line in io.lines(args[1]) do n = n + 1; cookies[n] = line end
  i = math.random(n) - 1
end
function request()
  i = i % n + 1
  wrk.headers["Cookie"] = "${SESSION_COOKIE}=" .. cookies[i]
  return wrk.format()
end
`;

async function redisUsedBytes(client: Redis): Promise<number> {
  const info = await client.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
}

/** Decisions by outcome and the session cache's hits and misses, from the service's /metrics. */
async function counters(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^dex_forward_auth_decisions_total\{outcome="(\w+)"\} (\S+)$/gm))
    out[m[1] as string] = Number(m[2]);
  for (const m of text.matchAll(/^dex_forward_auth_cache_(hits|misses)_total\{cache="sessions"\} (\S+)$/gm))
    out[`cache_${m[1]}`] = Number(m[2]);
  return out;
}

/** Heap used and what the caches are charged with, MiB (the service's own gauges). */
async function heapAndCaches(port: number): Promise<{ heapMiB: number; cacheMiB: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const heap = /^dex_forward_auth_process_nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1];
  let cache = 0;
  for (const m of text.matchAll(/^dex_forward_auth_cache_bytes\{cache="[^"]+"\} (\S+)$/gm))
    cache += Number(m[1]);
  return { heapMiB: Number(heap ?? Number.NaN) / 2 ** 20, cacheMiB: cache / 2 ** 20 };
}

const delta = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));

const median = (values: readonly number[]): number => {
  const s = [...values].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

/** The two floors: one 200 for every cookie (bare.ts), and each session's own 200 (bare-sessions.ts). */
interface Bares {
  readonly one: { readonly port: number; readonly pid: number | undefined };
  readonly same: { readonly port: number; readonly pid: number | undefined };
}

interface Measured {
  readonly load: LoadResult;
  readonly cpu: number | undefined;
}

export class ManySessions {
  readonly #s: ManySettings;
  readonly #ctx: ManyContext;
  readonly #cookies: string[] = [];
  readonly #made: ('logins' | 'sealed')[] = [];
  #dir = '';
  #headers: Record<string, string> = {};

  constructor(settings: ManySettings, ctx: ManyContext) {
    this.#s = settings;
    this.#ctx = ctx;
  }

  async run(): Promise<ManyResult> {
    this.#dir = await makeTempDir('bench-many');
    const scriptPath = join(this.#dir, 'cycle.lua');
    writeFileSync(scriptPath, CYCLE_LUA);
    const redis = new Redis(this.#ctx.redisUrl);
    const service = await this.#service(this.#ctx.port, {});
    const rows: ManyRow[] = [];
    try {
      const barePort = await freePort();
      let bare: TrackedProcess | undefined;
      for (const size of this.#s.sweep) {
        const before = await redisUsedBytes(redis);
        const made = await this.#make(service, size);
        const after = await redisUsedBytes(redis);
        if (bare === undefined) bare = await this.#bare(barePort, service.port);
        const same = await this.#sessionsBare(service.port, size);
        try {
          const bares = { one: { port: barePort, pid: bare.child.pid }, same };
          rows.push(await this.#step(service, bares, scriptPath, size, made, after - before, after));
        } finally {
          await same.proc.stop('SIGKILL');
        }
      }
      const missSize = this.#s.withMiss ? [...this.#s.sweep].filter((s) => s <= 10_000).pop() : undefined;
      const miss = missSize === undefined ? undefined : await this.#miss(missSize, rows, scriptPath);
      return { rows, ...(miss ? { miss } : {}), nodeFlags: this.#s.nodeFlags };
    } finally {
      redis.disconnect();
      // With --cpu-prof in the flags (BENCH_CPU_PROF), the profile is written on a graceful exit.
      await (this.#s.nodeFlags.includes('--cpu-prof') ? service.stop('SIGTERM') : service.close());
    }
  }

  async #service(port: number, extra: Record<string, string>): Promise<ServiceProcess> {
    const service = await startServiceProcess(
      { ...TEST_DEFAULTS, ...this.#ctx.serviceEnv(this.#ctx.redisUrl), ...extra },
      port,
      { fromDist: true, nodeFlags: this.#s.nodeFlags },
    );
    this.#ctx.cleanups.push(() => service.close());
    return service;
  }

  /** Sessions up to `size`: real logins while affordable, then sealed. Returns how and how long. */
  async #make(
    service: ServiceProcess,
    size: number,
  ): Promise<{ how: string; seconds: number; count: number }> {
    const from = this.#cookies.length;
    const t0 = performance.now();
    const realUpTo = Math.min(size, this.#s.realLogins);
    if (from < realUpTo) {
      const users = Array.from({ length: realUpTo - from }, (_, k) => userOf(from + k));
      this.#ctx.dex.users.push(...users);
      this.#ctx.log(`many sessions: ${users.length} logins through the Dex stand-in`);
      const got: string[] = new Array(users.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let k = next++; k < users.length; k = next++) got[k] = await login(service.port, users[k]!);
        }),
      );
      this.#cookies.push(...got);
      for (const _ of got) this.#made.push('logins');
    }
    const sealedFrom = this.#cookies.length;
    if (sealedFrom < size) {
      this.#ctx.log(`many sessions: ${size - sealedFrom} sessions sealed as logins seal them`);
      const users = Array.from({ length: size - sealedFrom }, (_, k) => userOf(sealedFrom + k));
      const settings = { ...TEST_DEFAULTS, ...this.#ctx.serviceEnv(this.#ctx.redisUrl) };
      const host = appHost(service.port);
      this.#cookies.push(...(await sealSessions(users, { settings, dex: this.#ctx.dex, host })));
      for (const _ of users) this.#made.push('sealed');
    }
    const count = this.#cookies.length - from;
    const kinds = new Set(this.#made.slice(0, size));
    return { how: [...kinds].join(' + '), seconds: (performance.now() - t0) / 1000, count };
  }

  /** The bare server, answering the headers of a real 200 of a 2-group user. */
  async #bare(port: number, servicePort: number): Promise<TrackedProcess> {
    this.#headers = forwardAuthHeaders(servicePort, this.#cookies[0] as string);
    const answer = await get(servicePort, '/auth', this.#headers);
    if (answer.status !== 200) throw new Error(`many sessions: /auth answered ${answer.status}`);
    const skip = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);
    const headers: Record<string, string> = {};
    for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
      const name = answer.rawHeaders[i] as string;
      if (!skip.has(name.toLowerCase())) headers[name] = answer.rawHeaders[i + 1] as string;
    }
    const file = join(this.#dir, 'headers.json');
    writeFileSync(file, JSON.stringify({ headers }));
    delete this.#headers['Cookie'];
    return this.#ctx.startBare(port, file);
  }

  /**
   * The bare server answering each of the first `size` sessions its own 200: the headers the
   * service answered for that cookie (its ID token, its groups), captured here.
   */
  async #sessionsBare(servicePort: number, size: number) {
    const skip = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);
    const sessions: [string, Record<string, string>][] = new Array(size);
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let k = next++; k < size; k = next++) {
          const cookie = this.#cookies[k] as string;
          const answer = await get(servicePort, '/auth', {
            ...this.#headers,
            Cookie: `${SESSION_COOKIE}=${cookie}`,
          });
          if (answer.status !== 200) throw new Error(`many sessions: /auth answered ${answer.status}`);
          const headers: Record<string, string> = {};
          for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
            const name = answer.rawHeaders[i] as string;
            if (!skip.has(name.toLowerCase())) headers[name] = answer.rawHeaders[i + 1] as string;
          }
          sessions[k] = [cookie, headers];
        }
      }),
    );
    const file = join(this.#dir, `sessions-${size}.json`);
    writeFileSync(file, JSON.stringify({ cookieName: SESSION_COOKIE, sessions }));
    const port = await freePort();
    const proc = await this.#ctx.startSessionsBare(port, file);
    return { port, pid: proc.child.pid, proc };
  }

  async #load(port: number, pid: number | undefined, scriptPath: string, cookiesFile: string, sec: number) {
    const cpu0 = cpuSeconds(pid);
    const load = await runLoad('wrk', {
      url: `http://127.0.0.1:${port}/auth`,
      headers: this.#headers,
      connections: this.#s.connections,
      threads: this.#s.threads,
      durationSec: sec,
      script: { path: scriptPath, args: [cookiesFile] },
    });
    const cpu1 = cpuSeconds(pid);
    return { load, cpu: cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0 };
  }

  #cookiesFile(size: number): string {
    const file = join(this.#dir, `cookies-${size}.txt`);
    writeFileSync(file, `${this.#cookies.slice(0, size).join('\n')}\n`);
    return file;
  }

  /** Rounds of the service (and, interleaved, of the bare server when `bare` is given). */
  async #rounds(service: ServiceProcess, bare: Bares | undefined, script: string, size: number) {
    const file = this.#cookiesFile(size);
    const pid = service.process().child.pid;
    await this.#load(service.port, pid, script, file, this.#s.warmupSec);
    if (bare) await this.#load(bare.same.port, bare.same.pid, script, file, this.#s.warmupSec);
    const c0 = await counters(service.port);
    const ours: Measured[] = [];
    const bares: Measured[] = [];
    const sames: Measured[] = [];
    for (let r = 0; r < this.#s.rounds; r++) {
      if (bare) {
        bares.push(await this.#load(bare.one.port, bare.one.pid, script, file, this.#s.durationSec));
        sames.push(await this.#load(bare.same.port, bare.same.pid, script, file, this.#s.durationSec));
      }
      ours.push(await this.#load(service.port, pid, script, file, this.#s.durationSec));
    }
    const outcomes = delta(c0, await counters(service.port));
    return { ours, bares, sames, outcomes };
  }

  async #step(
    service: ServiceProcess,
    bare: Bares,
    script: string,
    size: number,
    made: { how: string; seconds: number; count: number },
    redisDelta: number,
    redisTotal: number,
  ): Promise<ManyRow> {
    const pid = service.process().child.pid;
    const rssAfterLogins = rssMiB(pid);
    const { ours, bares, sames, outcomes } = await this.#rounds(service, bare, script, size);
    const summary = summarise(ours);
    const bareRps = median(bares.map((m) => m.load.rps));
    const bareSummary = summarise(bares);
    const same = summarise(sames);
    const row: ManyRow = {
      sessions: size,
      made: made.how,
      makeSeconds: made.seconds,
      madeNow: made.count,
      ...summary,
      bareRps,
      bareP99Ms: median(bares.map((m) => m.load.p99Ms)),
      bareCpuUsPerRequest: bareSummary.cpuUsPerRequest,
      ratio: bareRps > 0 ? summary.rps / bareRps : 0,
      sameBareRps: same.rps,
      sameBareP99Ms: same.p99Ms,
      sameBareCpuUsPerRequest: same.cpuUsPerRequest,
      sameRatio: same.rps > 0 ? summary.rps / same.rps : 0,
      rssAfterLoginsMiB: rssAfterLogins,
      rssAfterLoadMiB: rssMiB(pid),
      rssAnonAfterLoadMiB: rssAnonMiB(pid),
      ...(await heapAndCaches(service.port)),
      redisBytesPerSession: made.count >= 100 ? redisDelta / made.count : undefined,
      redisMiB: redisTotal / 2 ** 20,
      outcomes,
    };
    this.#ctx.log(
      `many sessions: ${size} (${made.how}): ${Math.round(row.rps)} req/s (bare ${Math.round(bareRps)}, × ${row.ratio.toFixed(2)}; bare answering each session's own 200 ${Math.round(same.rps)}, × ${(row.sameRatio ?? 0).toFixed(2)}), p99 ${row.p99Ms.toFixed(2)} ms (bare ${row.bareP99Ms.toFixed(2)}), CPU per request ${row.cpuUsPerRequest?.toFixed(0)} µs (bare ${row.bareCpuUsPerRequest?.toFixed(0)}), RSS ${row.rssAfterLoginsMiB?.toFixed(0)} → ${row.rssAfterLoadMiB?.toFixed(0)} MiB (anonymous ${row.rssAnonAfterLoadMiB?.toFixed(0)}, heap used ${row.heapMiB.toFixed(0)}, caches ${row.cacheMiB.toFixed(0)}), outcomes ${JSON.stringify(outcomes)}`,
    );
    return row;
  }

  /** The same sessions with a 1 MiB cache budget: nearly every decision reads Redis and decrypts. */
  async #miss(size: number, rows: readonly ManyRow[], script: string): Promise<MissRow> {
    const large = rows.find((r) => r.sessions === size) as ManyRow;
    const service = await this.#service(await freePort(), { CACHE_MAX_BYTES: '1Mi' });
    try {
      const { ours, outcomes } = await this.#rounds(service, undefined, script, size);
      const small = summarise(ours);
      const row: MissRow = {
        sessions: size,
        small: { ...small, outcomes, rssAfterLoadMiB: rssMiB(service.process().child.pid) },
        large: { ...pick(large), outcomes: large.outcomes, rssAfterLoadMiB: large.rssAfterLoadMiB },
      };
      this.#ctx.log(
        `cache miss: ${size} sessions, CACHE_MAX_BYTES=1Mi: ${Math.round(small.rps)} req/s, p99 ${small.p99Ms.toFixed(2)} ms, ${small.cpuUsPerRequest?.toFixed(0)} µs CPU per request (default budget: ${large.cpuUsPerRequest?.toFixed(0)} µs), outcomes ${JSON.stringify(outcomes)}`,
      );
      return row;
    } finally {
      await service.close();
    }
  }
}

function pick(row: ManyRow) {
  return {
    rps: row.rps,
    p50Ms: row.p50Ms,
    p99Ms: row.p99Ms,
    cpuUsPerRequest: row.cpuUsPerRequest,
    bad: row.bad,
    errors: row.errors,
  };
}

function summarise(rounds: readonly Measured[]) {
  const requests = rounds.reduce((n, m) => n + m.load.requests, 0);
  const cpu = rounds.every((m) => m.cpu !== undefined)
    ? rounds.reduce((n, m) => n + (m.cpu as number), 0)
    : undefined;
  return {
    rps: median(rounds.map((m) => m.load.rps)),
    p50Ms: median(rounds.map((m) => m.load.p50Ms)),
    p99Ms: median(rounds.map((m) => m.load.p99Ms)),
    cpuUsPerRequest: cpu === undefined || requests === 0 ? undefined : (cpu * 1e6) / requests,
    bad: rounds.reduce((n, m) => n + m.load.bad, 0),
    errors: rounds.reduce((n, m) => n + m.load.errors, 0),
  };
}

/** The shipped Deployment's Node flags (deploy/kubernetes/base/deployment.yaml). */
export const DEPLOYMENT_FLAGS = `${RUNTIME_FLAGS} --max-old-space-size=192`;
