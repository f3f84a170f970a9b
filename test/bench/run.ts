import { execFileSync } from 'node:child_process';
/**
 * `npm run bench`: the forward-auth hot path against a bare `node:http` server and compositions
 * of our own dependencies, measured in the same run on this machine; then the login round trip,
 * a refresh storm over three replicas, session-count scaling, and many distinct sessions cycled
 * (issue 15: test/bench/many.ts). Benchmarks, not tests: never part of `npm test`.
 *
 * Everything runs on 127.0.0.1: a real redis-server, the Dex stand-in (in this process),
 * dex-forward-auth as child processes (in-memory and Redis stores), the reference servers in
 * ./servers, and `wrk` (else autocannon) as the load generator.
 *
 * Settings (environment): BENCH_QUICK=1 (fast smoke run), BENCH_ROUNDS (3), BENCH_DURATION
 * (seconds per round, 5), BENCH_CONNECTIONS (64), BENCH_THREADS (1), BENCH_MAX_SESSIONS
 * (1000000), BENCH_STORM_SESSIONS (1000), BENCH_STORM_TTL (seconds, 20), BENCH_LOGIN_SEQUENTIAL
 * (100), BENCH_LOGIN_CLIENTS (8), BENCH_LOADGEN (wrk | autocannon), BENCH_WAIT_QUIET (seconds
 * to wait for other processes to leave the machine idle, 0), BENCH_APACHE (0: leave out
 * mod_auth_openidc even when installed), BENCH_STORM_REPLICAS (3), BENCH_STORM_CONNECTIONS (1000),
 * BENCH_SWEEP (distinct sessions cycled, 1,1000,10000), BENCH_MANY_REAL_LOGINS (1000: beyond, sealed
 * as logins seal them), BENCH_CPU_PROF (directory: the services write CPU profiles there).
 * Flags: --write-readme (rewrite README.md's Performance section), --only=hot,login,scale,many,
 * --full (the README run: a 10,000-session storm), --100k (100,000 in the sweep),
 * --render (no measuring: re-render bench.md, and the README with --write-readme, from bench.json).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { sealData } from 'iron-session';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS, type Dex, type DexUser, startDex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import {
  makeTempDir,
  type RedisServer,
  spawnTracked,
  startRedis,
  type TrackedProcess,
  tcpAccepts,
  waitUntil,
} from '../support/redis.ts';
import { RUNTIME_FLAGS, type ServiceProcess, startServiceProcess } from '../support/serviceProcess.ts';
import { CLIENT_ID, CLIENT_SECRET, startStack } from '../support/stack.ts';
import { type Apache, apacheAvailable, startApache } from './apache.ts';
import { type LoadResult, type LoadTool, pickTool, runLoad, toolVersion } from './load.ts';
import { DEPLOYMENT_FLAGS, ManySessions } from './many.ts';
import { cpuSeconds, cpuSecondsOf, machineBusySeconds, rssMiBOf } from './proc.ts';
import { type HotRow, type Meta, type Results, type ScaleRow, toMarkdown, writeReadme } from './report.ts';
import {
  type Answer,
  appHost,
  burstAgent,
  entryShape,
  fillSessions,
  forwardAuthHeaders,
  get,
  handedCookie,
  login,
  loginAt,
  SESSION_COOKIE,
  syntheticUsers,
} from './sessions.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVERS = fileURLToPath(new URL('./servers/', import.meta.url));
const ARTIFACTS = join(ROOT, 'test-artifacts');

// ---- settings ---------------------------------------------------------------------------------

const env = process.env;
const quick = env['BENCH_QUICK'] === '1';

function intSetting(name: string, fallback: number, min = 1): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`${name} must be an integer >= ${min} (got ${JSON.stringify(raw)})\n`);
    process.exit(2);
  }
  return n;
}

const settings = {
  rounds: intSetting('BENCH_ROUNDS', quick ? 1 : 3),
  durationSec: intSetting('BENCH_DURATION', quick ? 2 : 5),
  warmupSec: quick ? 1 : 2,
  connections: intSetting('BENCH_CONNECTIONS', 64),
  threads: intSetting('BENCH_THREADS', 1),
  maxSessions: intSetting('BENCH_MAX_SESSIONS', quick ? 10_000 : 1_000_000),
  stormSessions: intSetting('BENCH_STORM_SESSIONS', quick ? 50 : 1_000),
  stormTtlSec: intSetting('BENCH_STORM_TTL', quick ? 5 : 20, 2),
  loginSequential: intSetting('BENCH_LOGIN_SEQUENTIAL', quick ? 10 : 100),
  loginClients: intSetting('BENCH_LOGIN_CLIENTS', 8),
  waitQuietSec: intSetting('BENCH_WAIT_QUIET', 0, 0),
  stormReplicas: intSetting('BENCH_STORM_REPLICAS', 3),
  stormConnections: intSetting('BENCH_STORM_CONNECTIONS', 1_000),
  manyRealLogins: intSetting('BENCH_MANY_REAL_LOGINS', quick ? 50 : 1_000, 0),
};
const args = process.argv.slice(2);
/**
 * `--full`: the README run (a 10,000-session refresh storm over 3 replicas; the session sweep
 * 1, 1k, 10k, plus 100k with `--100k`).
 */
const full = args.includes('--full');
const with100k = args.includes('--100k');
function sweepSetting(): number[] {
  const base = quick ? '1,1000' : '1,1000,10000';
  const raw = env['BENCH_SWEEP'] ?? (with100k ? `${base},100000` : base);
  const sizes = raw.split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1) || sizes.some((n, i) => i > 0 && n <= sizes[i - 1]!)) {
    process.stderr.write(`BENCH_SWEEP must be increasing session counts, e.g. 1,1000,10000 (got ${raw})\n`);
    process.exit(2);
  }
  return sizes;
}
const sweep = sweepSetting();
if (full && env['BENCH_STORM_SESSIONS'] === undefined) settings.stormSessions = 10_000;
// The 10,000 refreshes take about a minute at the stand-in's pace: tokens that live 120 s are
// not yet due again (30 s before expiry) when the second pass replays the handed cookies.
if (full && env['BENCH_STORM_TTL'] === undefined) settings.stormTtlSec = 120;
const writeToReadme = args.includes('--write-readme');
const onlyArg = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const SECTIONS = ['hot', 'login', 'scale', 'many'];
const sections = new Set(onlyArg === undefined ? SECTIONS : onlyArg.split(','));
for (const s of sections) {
  if (!SECTIONS.includes(s)) {
    process.stderr.write(`unknown section ${s} in --only (${SECTIONS.join(', ')})\n`);
    process.exit(2);
  }
}

const log = (text: string): void => {
  process.stderr.write(`[bench] ${text}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function medianOf(values: readonly (number | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length === 0 ? undefined : median(known);
}

function countStatuses(answers: readonly Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) {
    const key = a.status === -1 ? 'network error' : String(a.status);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

// ---- processes --------------------------------------------------------------------------------

const cleanups: (() => Promise<void>)[] = [];

function serviceEnv(dex: Dex, redisUrl: string | undefined): Record<string, string> {
  return {
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
    LOG_LEVEL: 'warn',
    // The audit stream as shipped (every decision): each line built and written, to /dev/null.
    // Piped into this process, the harness's own reading would be measured instead (and a file
    // would grow by gigabytes over a run).
    AUDIT_LOG: '/dev/null',
    AUDIT_ALLOW: 'all',
    // Every login of the benchmark comes from 127.0.0.1 and targets the same page.
    LOGIN_RATE_LIMIT_BURST: '0',
    LOGIN_LOOP_LIMIT: '0',
    ...(redisUrl === undefined ? {} : { REDIS_URL: redisUrl }),
  };
}

/** BENCH_CPU_PROF=<dir>: the services write CPU profiles there (written when they exit gracefully). */
const profileDir = env['BENCH_CPU_PROF'];
const profileFlags = profileDir === undefined ? '' : ` --cpu-prof --cpu-prof-dir=${profileDir}`;

async function startService(dex: Dex, redisUrl: string | undefined, port: number): Promise<ServiceProcess> {
  const service = await startServiceProcess(serviceEnv(dex, redisUrl), port, {
    fromDist: true,
    nodeFlags: `${RUNTIME_FLAGS}${profileFlags}`,
  });
  // With a profile to write, stop gracefully (close() kills). The methods use no `this`.
  const closing = profileDir === undefined ? service : { ...service, close: () => service.stop('SIGTERM') };
  cleanups.push(() => closing.close());
  return closing;
}

async function startReference(
  file: string,
  port: number,
  extra: Record<string, string>,
): Promise<TrackedProcess> {
  const proc = spawnTracked(
    process.execPath,
    ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', join(SERVERS, file)],
    {
      name: file,
      cwd: ROOT,
      env: { PATH: env['PATH'], HOME: env['HOME'], BENCH_PORT: String(port), ...extra },
    },
  );
  cleanups.push(() => proc.stop('SIGKILL'));
  await waitUntil(`${file} to listen`, () => tcpAccepts(port), { proc, timeoutMs: 20_000 });
  return proc;
}

const pidsOf = (proc: TrackedProcess): number[] =>
  proc.running() && proc.child.pid !== undefined ? [proc.child.pid] : [];

// ---- the hot path -----------------------------------------------------------------------------

interface Target {
  readonly id: string;
  readonly label: string;
  readonly port: number;
  /** The server's processes (one, or Apache's parent and workers). */
  readonly pids: () => number[];
  readonly headers: Readonly<Record<string, string>>;
  readonly usesRedis: boolean;
}

/** The response headers of a real `/auth` 200, as sent (hop-by-hop and Date left out). */
function capturedHeaders(answer: Answer): Record<string, string> {
  const skip = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
    const name = answer.rawHeaders[i] as string;
    if (!skip.has(name.toLowerCase())) out[name] = answer.rawHeaders[i + 1] as string;
  }
  return out;
}

function headerOf(answer: Answer, name: string): string | undefined {
  for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
    if ((answer.rawHeaders[i] as string).toLowerCase() === name) return answer.rawHeaders[i + 1];
  }
  return undefined;
}

/** One request must answer 200 with the expected Authorization, or the numbers mean nothing. */
async function check(target: Target, authorization: string): Promise<void> {
  const answer = await get(target.port, '/auth', target.headers);
  if (answer.status !== 200 || headerOf(answer, 'authorization') !== authorization) {
    throw new Error(
      `${target.label} answered ${answer.status} (Authorization ${headerOf(answer, 'authorization') === authorization ? 'as expected' : 'missing or different'})`,
    );
  }
}

interface Round {
  readonly load: LoadResult;
  readonly cpuServer: number | undefined;
  readonly cpuRedis: number | undefined;
  /** CPU seconds used meanwhile by everything else on the machine (other work skews the numbers). */
  readonly cpuOthers: number | undefined;
}

async function measure(
  tool: LoadTool,
  target: Target,
  durationSec: number,
  redisPid: () => number | undefined,
): Promise<Round> {
  // On a shared machine, each measurement waits (bounded) for the others to pause too.
  if (settings.waitQuietSec > 0) await waitForQuiet(Math.min(30, settings.waitQuietSec), 1_000);
  const server0 = cpuSecondsOf(target.pids());
  const redis0 = target.usesRedis ? cpuSeconds(redisPid()) : undefined;
  const machine0 = machineBusySeconds();
  const load = await runLoad(tool, {
    url: `http://127.0.0.1:${target.port}/auth`,
    headers: target.headers,
    connections: settings.connections,
    threads: settings.threads,
    durationSec,
  });
  const server1 = cpuSecondsOf(target.pids());
  const redis1 = target.usesRedis ? cpuSeconds(redisPid()) : undefined;
  const machine = machineBusySeconds() - machine0;
  const cpuServer = server0 === undefined || server1 === undefined ? undefined : server1 - server0;
  const cpuRedis = redis0 === undefined || redis1 === undefined ? undefined : redis1 - redis0;
  const ours = (cpuServer ?? 0) + (cpuRedis ?? 0) + (load.cpuSeconds ?? 0);
  return { load, cpuServer, cpuRedis, cpuOthers: machine > 0 ? Math.max(0, machine - ours) : undefined };
}

function summarise(target: Target, rounds: readonly Round[], bareRps: number): HotRow {
  const rps = median(rounds.map((r) => r.load.rps));
  return {
    id: target.id,
    label: target.label,
    rps,
    p50Ms: median(rounds.map((r) => r.load.p50Ms)),
    p99Ms: median(rounds.map((r) => r.load.p99Ms)),
    rssMiB: rssMiBOf(target.pids()),
    cpuServer: medianOf(rounds.map((r) => r.cpuServer)),
    cpuLoad: medianOf(rounds.map((r) => r.load.cpuSeconds)),
    cpuRedis: medianOf(rounds.map((r) => r.cpuRedis)),
    cpuOthers: medianOf(rounds.map((r) => r.cpuOthers)),
    ratio: bareRps > 0 ? rps / bareRps : 0,
    bad: rounds.reduce((sum, r) => sum + r.load.bad, 0),
    errors: rounds.reduce((sum, r) => sum + r.load.errors, 0),
    roundsRps: rounds.map((r) => Math.round(r.load.rps)),
  };
}

interface HotContext {
  readonly redis: RedisServer;
  readonly redisService: ServiceProcess;
  readonly redisServiceHeaders: Record<string, string>;
  readonly authorization: string;
  bareRps: number;
}

async function hotPath(
  tool: LoadTool,
  redis: RedisServer,
  dex: Dex,
  ports: { readonly memory: number; readonly redis: number; readonly apache: number | undefined },
  results: Results,
): Promise<HotContext> {
  const { memory: memoryPort, redis: redisPort } = ports;
  log('starting dex-forward-auth (in-memory store and Redis store)');
  const redisService = await startService(dex, redis.url, redisPort);
  const memoryService = await startService(dex, undefined, memoryPort);

  const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
  const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
  log('logging in through the Dex stand-in');
  const redisCookie = await login(redisPort, admin);
  const memoryCookie = await login(memoryPort, dev);
  const redisServiceHeaders = forwardAuthHeaders(redisPort, redisCookie);
  const memoryHeaders = forwardAuthHeaders(memoryPort, memoryCookie);

  // The response the reference servers imitate: a real /auth 200 of the Redis-backed service.
  const real = await get(redisPort, '/auth', redisServiceHeaders);
  if (real.status !== 200) throw new Error(`/auth with a fresh session answered ${real.status}`);
  const headers = capturedHeaders(real);
  const authorization = headerOf(real, 'authorization');
  if (authorization?.startsWith('Bearer ') !== true)
    throw new Error('/auth 200 carried no Bearer Authorization');
  const headerBytes = Object.entries(headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
  (results.meta as { headerBytes: number }).headerBytes = headerBytes;
  const memoryAnswer = await get(memoryPort, '/auth', memoryHeaders);
  const memoryAuthorization = headerOf(memoryAnswer, 'authorization') ?? '';

  // Reference data: the ID token under a clear session id, and that id sealed two ways.
  const dir = await makeTempDir('bench');
  const headersFile = join(dir, 'headers.json');
  writeFileSync(headersFile, JSON.stringify({ headers }));
  const sid = randomBytes(32).toString('base64url');
  const keyPrefix = 'bench:ref:';
  const bench = new Redis(redis.url);
  await bench.set(keyPrefix + sid, authorization.slice('Bearer '.length));
  bench.disconnect();
  const aesKey = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', aesKey, iv);
  const aesCookie = Buffer.concat([
    iv,
    cipher.update(sid, 'utf8'),
    cipher.final(),
    cipher.getAuthTag(),
  ]).toString('base64url');
  const ironPassword = randomBytes(32).toString('hex');
  const ironCookie = await sealData({ sid }, { password: ironPassword });
  const common = {
    BENCH_HEADERS_FILE: headersFile,
    BENCH_REDIS_URL: redis.url,
    BENCH_KEY_PREFIX: keyPrefix,
    BENCH_COOKIE_NAME: 'ref_session',
  };
  // Same request as Traefik sends to /auth, with the reference server's cookie after ours.
  const withCookie = (value: string): Record<string, string> => ({
    ...redisServiceHeaders,
    Cookie: `${SESSION_COOKIE}=${redisCookie}; ref_session=${value}`,
  });

  const references: [string, string, string, Record<string, string>, Record<string, string>, boolean][] = [
    [
      'bare',
      'bare `node:http` answering 200 with the same headers',
      'bare.ts',
      {},
      redisServiceHeaders,
      false,
    ],
    ['redis', 'same + one ioredis GET per request', 'redisGet.ts', {}, withCookie(sid), true],
    [
      'redis-pipelined',
      'same with ioredis auto-pipelining',
      'redisGet.ts',
      { BENCH_AUTOPIPELINING: '1' },
      withCookie(sid),
      true,
    ],
    [
      'express',
      'Express 5 + ioredis GET (session id in clear, no unseal)',
      'expressRedis.ts',
      {},
      withCookie(sid),
      true,
    ],
    [
      'express-aes',
      'Express 5 + AES-256-GCM cookie unseal + ioredis GET',
      'expressAesRedis.ts',
      { BENCH_AES_KEY: aesKey.toString('hex') },
      withCookie(aesCookie),
      true,
    ],
    [
      'express-iron',
      'Express 5 + iron-session `unsealData` + ioredis GET',
      'expressIronRedis.ts',
      { BENCH_IRON_PASSWORD: ironPassword },
      withCookie(ironCookie),
      true,
    ],
  ];
  const targets: Target[] = [];
  const referenceProcs: TrackedProcess[] = [];
  for (const [id, label, file, extra, requestHeaders, usesRedis] of references) {
    const port = await freePort();
    const proc = await startReference(file, port, { ...common, ...extra });
    referenceProcs.push(proc);
    targets.push({ id, label, port, pids: () => pidsOf(proc), headers: requestHeaders, usesRedis });
  }
  targets.push(
    {
      id: 'service-memory',
      label: '**dex-forward-auth `/auth`, in-memory store**',
      port: memoryPort,
      pids: () => pidsOf(memoryService.process()),
      headers: memoryHeaders,
      usesRedis: false,
    },
    {
      id: 'service-redis',
      label: '**dex-forward-auth `/auth`, Redis store**',
      port: redisPort,
      pids: () => pidsOf(redisService.process()),
      headers: redisServiceHeaders,
      usesRedis: true,
    },
  );
  const expectedAuth = new Map<string, string>([['service-memory', memoryAuthorization]]);
  let stopApache: (() => Promise<void>) | undefined;
  if (ports.apache !== undefined) {
    const peer = await apacheTarget(ports.apache, dex, redis);
    if (peer) {
      targets.push(peer.target);
      expectedAuth.set('apache', peer.authorization);
      cleanups.push(() => peer.stop());
      stopApache = peer.stop;
    }
  }
  const expected = (t: Target): string => expectedAuth.get(t.id) ?? authorization;
  for (const t of targets) await check(t, expected(t));

  log(`warming up (${settings.warmupSec} s each)`);
  for (const t of targets) await measure(tool, t, settings.warmupSec, () => redis.pid());
  const rounds = new Map<string, Round[]>(targets.map((t) => [t.id, []]));
  for (let r = 1; r <= settings.rounds; r++) {
    // Interleaved: every configuration once per round, so drift hits all of them alike.
    for (const t of targets) {
      const round = await measure(tool, t, settings.durationSec, () => redis.pid());
      rounds.get(t.id)!.push(round);
      log(
        `round ${r}/${settings.rounds} ${t.id}: ${Math.round(round.load.rps)} req/s, p99 ${round.load.p99Ms.toFixed(2)} ms` +
          (round.load.bad + round.load.errors > 0
            ? `, ${round.load.bad} bad, ${round.load.errors} errors`
            : ''),
      );
    }
  }
  for (const t of targets) await check(t, expected(t));
  const bareRps = median(rounds.get('bare')!.map((r) => r.load.rps));
  results.hot = targets.map((t) => summarise(t, rounds.get(t.id)!, bareRps));
  for (const row of results.hot) {
    // A peer's trouble is reported in its row; only our service and our reference servers fail the run.
    if (row.bad + row.errors > 0 && row.id !== 'apache')
      results.failures.push(`${row.label}: ${row.bad} non-2xx answers, ${row.errors} socket errors`);
  }

  for (const p of referenceProcs) await p.stop('SIGKILL');
  await stopApache?.();
  await memoryService.close();
  return { redis, redisService, redisServiceHeaders, authorization, bareRps };
}

/**
 * Apache mod_auth_openidc (when installed), logged in through the same Dex stand-in, its session
 * cache in the same Redis. Anything going wrong here only drops the row (it is not our product).
 */
async function apacheTarget(
  port: number,
  dex: Dex,
  redis: RedisServer,
): Promise<{ target: Target; authorization: string; stop: () => Promise<void> } | undefined> {
  let apache: Apache | undefined;
  try {
    apache = await startApache({
      port,
      host: appHost(port),
      issuer: dex.issuer,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redisPort: redis.port,
    });
    const browser = new Browser({ navigation: true, timeoutMs: 30_000 });
    const user = syntheticUsers(1)[0]!;
    const { final } = await loginThroughDex(browser, `http://${appHost(port)}/auth`, user);
    const cookie = browser.jar.header(`http://${appHost(port)}/auth`);
    if (final.status !== 200 || cookie === undefined) throw new Error(`login ended with ${final.status}`);
    // mod_auth_openidc binds its session to the host it was created on (as a proxy in front of it would send).
    const headers = { Host: appHost(port), ...forwardAuthHeaders(port, ''), Cookie: cookie };
    const answer = await get(port, '/auth', headers);
    const authorization = headerOf(answer, 'authorization');
    if (answer.status !== 200 || authorization === undefined || authorization.length < 100) {
      throw new Error(`/auth answered ${answer.status} without the ID token`);
    }
    const running = apache;
    log(`${running.version()} with mod_auth_openidc: logged in`);
    return {
      target: {
        id: 'apache',
        label: `${running.version()} mod_auth_openidc with Redis cache (uses both cores)`,
        port,
        pids: () => running.pids(),
        headers,
        usesRedis: true,
      },
      authorization,
      stop: () => running.stop(),
    };
  } catch (error) {
    log(`mod_auth_openidc left out: ${(error as Error).message.split('\n')[0]}`);
    await apache?.stop();
    return undefined;
  }
}

// ---- login round trip and refresh storm -------------------------------------------------------

async function loginAndStorm(results: Results): Promise<void> {
  const n = settings.stormSessions;
  const users = syntheticUsers(n);
  // The whole chain: the Traefik emulator in front of the dashboard, N replica processes sharing a
  // private Redis deciding for it and serving the login pages, the stand-in (each session its own
  // user: the sessions of one user share a token chain).
  const stack = await startStack({
    dex: { users, idTokenTtl: settings.stormTtlSec },
    // The load generator stands for the proxy: named exactly, as a deployment names its Traefik,
    // it may hold more than a quarter of MAX_CONNECTIONS (its 1,000 sockets would be cut otherwise).
    env: {
      LOG_LEVEL: 'warn',
      LOGIN_RATE_LIMIT_BURST: '0',
      LOGIN_LOOP_LIMIT: '0',
      TRUSTED_PROXIES: '127.0.0.1',
    },
    replicas: { count: settings.stormReplicas, processes: true, inProcess: false, fromDist: true },
  });
  cleanups.push(() => stack.close());
  const { dex, replicas, appUrl } = stack;
  const port = stack.port;
  const ports = replicas.map((r) => r.port);
  const replicasCpu = () => {
    const each = replicas.map((r) => cpuSeconds(r.process().child.pid));
    return each.some((c) => c === undefined)
      ? undefined
      : each.reduce((a, b) => (a as number) + (b as number), 0);
  };
  const login = (user: DexUser) => loginAt(appUrl, user);

  const cookies: string[] = new Array(n);
  const sequential = Math.min(settings.loginSequential, n);
  log(`login round trip: ${sequential} sequential logins`);
  const cpu0 = process.cpuUsage();
  const svc0 = replicasCpu();
  let started = performance.now();
  for (let i = 0; i < sequential; i++) cookies[i] = await login(users[i]!);
  const sequentialSeconds = (performance.now() - started) / 1000;

  const clients = settings.loginClients;
  log(`login round trip: ${n - sequential} logins from ${clients} concurrent clients`);
  let next = sequential;
  started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < n; i = next++) cookies[i] = await login(users[i]!);
    }),
  );
  const concurrentSeconds = (performance.now() - started) / 1000;
  const lastLoginAt = Date.now();
  const cpu = process.cpuUsage(cpu0);
  const svc1 = replicasCpu();
  results.login = {
    through: 'the Traefik emulator',
    sequential: { count: sequential, seconds: sequentialSeconds, perSecond: sequential / sequentialSeconds },
    concurrent: {
      clients,
      count: n - sequential,
      seconds: concurrentSeconds,
      perSecond: n - sequential > 0 ? (n - sequential) / concurrentSeconds : 0,
    },
    serviceCpuMsPerLogin: svc0 === undefined || svc1 === undefined ? undefined : ((svc1 - svc0) * 1000) / n,
    benchCpuMsPerLogin: (cpu.user + cpu.system) / 1000 / n,
  };

  // Every ID token has now been issued; wait until the last one has expired.
  const waitMs = Math.max(0, lastLoginAt + settings.stormTtlSec * 1000 + 1_500 - Date.now());
  log(`refresh storm: waiting ${(waitMs / 1000).toFixed(1)} s for all ${n} ID tokens to expire`);
  await sleep(waitMs);

  // Every request is sent at once; the pool keeps at most BENCH_STORM_CONNECTIONS sockets open
  // (split over the replicas), as a proxy's pool would.
  const connections = Math.min(n, settings.stormConnections);
  const agent = burstAgent(Math.max(1, Math.ceil(connections / replicas.length)));
  const fire = async (values: readonly string[]) => {
    const t0 = performance.now();
    const answers = await Promise.all(
      values.map((c, i) =>
        // The session is bound to the host it logged in on; replica i % N decides for it.
        get(ports[i % ports.length] as number, '/auth', forwardAuthHeaders(port, c), agent).catch(
          (): Answer => ({ status: -1, rawHeaders: [], setCookie: [], ms: 0 }),
        ),
      ),
    );
    return { answers, seconds: (performance.now() - t0) / 1000 };
  };
  const grants0 = dex.counts.refreshGrants;
  const calls0 = { ...dex.counts };
  log(
    `refresh storm: ${n} /auth requests at once over ${replicas.length} replicas (${connections} connections)`,
  );
  const stormCpu0 = process.cpuUsage();
  const stormSvc0 = replicasCpu();
  const storm = await fire(cookies);
  const stormCpu = process.cpuUsage(stormCpu0);
  const stormSvc1 = replicasCpu();
  const grants1 = dex.counts.refreshGrants;
  const providerCalls = Object.fromEntries(
    Object.entries(dex.counts).map(([k, v]) => [k, v - (calls0[k as keyof typeof calls0] ?? 0)]),
  );
  const handed = storm.answers.map((a, i) => handedCookie(a) ?? (cookies[i] as string));
  const again = await fire(handed);
  const grants2 = dex.counts.refreshGrants;
  agent.destroy();

  const statuses = countStatuses(storm.answers);
  const okStatuses = statuses['200'] === n;
  const secondOk = countStatuses(again.answers)['200'] === n;
  const refreshGrants = grants1 - grants0;
  results.storm = {
    sessions: n,
    ttlSec: settings.stormTtlSec,
    concurrency: connections,
    replicas: replicas.length,
    providerCalls,
    seconds: storm.seconds,
    serviceCpuSeconds: stormSvc0 === undefined || stormSvc1 === undefined ? undefined : stormSvc1 - stormSvc0,
    benchCpuSeconds: (stormCpu.user + stormCpu.system) / 1e6,
    statuses,
    refreshGrants,
    newCookies: storm.answers.filter((a) => handedCookie(a) !== undefined).length,
    secondPass: {
      seconds: again.seconds,
      statuses: countStatuses(again.answers),
      refreshGrants: grants2 - grants1,
    },
    ok: refreshGrants === n && okStatuses && secondOk && grants2 === grants1,
  };
  if (refreshGrants !== n)
    results.failures.push(`refresh storm: ${refreshGrants} refresh grants for ${n} sessions`);
  if (!okStatuses)
    results.failures.push(`refresh storm: answers ${JSON.stringify(statuses)}, expected ${n}× 200`);
  if (!secondOk || grants2 !== grants1) {
    results.failures.push(
      `refresh storm, second pass: answers ${JSON.stringify(countStatuses(again.answers))}, ${grants2 - grants1} further refreshes`,
    );
  }
  log(
    `refresh storm: ${storm.seconds.toFixed(2)} s, ${JSON.stringify(statuses)}, ${refreshGrants} refresh grants for ${n} sessions`,
  );
  // A profile (BENCH_CPU_PROF with DFA_NODE_FLAGS carrying --cpu-prof) is written on a graceful exit.
  if (profileDir !== undefined) for (const r of replicas) await r.stop('SIGTERM');
  await stack.close();
}

// ---- session-count scaling --------------------------------------------------------------------

async function scale(tool: LoadTool, ctx: HotContext, results: Results): Promise<void> {
  const sizes = [1_000, 100_000, 1_000_000].filter((s) => s < settings.maxSessions);
  sizes.push(settings.maxSessions);
  const client = new Redis(ctx.redis.url);
  try {
    // The shape of the session that drives the load (a user with two groups), before a few more
    // real sessions join it (one of them with 150 groups).
    const shape = await entryShape(client, 'dfa:s:');
    const port = ctx.redisService.port;
    for (const user of DEMO_USERS.filter((u) => u.login !== 'admin@example.com')) await login(port, user);
    const real = (await client.keys('dfa:s:*')).length;
    log(`scaling: real entries ${real}, key ${shape.keyLength} chars, value ${shape.valueLength} bytes`);
    // Never fill more than half the free memory (an entry costs its key and value plus ~100 bytes).
    const perEntry = shape.keyPrefix.length + shape.keyLength + shape.valueLength + 100;
    const affordable = Math.floor(freemem() / 2 / perEntry);
    if (sizes.at(-1)! > affordable) {
      results.failures.push(
        `scaling capped at ${affordable.toLocaleString('en-US')} sessions: ${sizes.at(-1)!.toLocaleString('en-US')} would not fit in half the free memory`,
      );
      while (sizes.length > 0 && sizes.at(-1)! > affordable) sizes.pop();
      sizes.push(affordable);
    }
    const target: Target = {
      id: 'scale',
      label: 'scale',
      port,
      pids: () => pidsOf(ctx.redisService.process()),
      headers: ctx.redisServiceHeaders,
      usesRedis: true,
    };
    let synthetic = 0;
    const seed = randomBytes(16).toString('hex');
    for (const size of sizes) {
      const t0 = performance.now();
      synthetic += await fillSessions(client, shape, synthetic, Math.max(0, size - real), seed);
      const insertSeconds = (performance.now() - t0) / 1000;
      const total = await client.dbsize();
      const info = await client.info('memory');
      const used = Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0) / 1024 / 1024;
      log(`scaling: ${total} keys (${insertSeconds.toFixed(1)} s to insert), Redis ${Math.round(used)} MiB`);
      await check(target, ctx.authorization);
      const rssBefore = rssMiBOf(target.pids());
      await measure(tool, target, settings.warmupSec, () => ctx.redis.pid());
      const rounds: Round[] = [];
      for (let r = 0; r < settings.rounds; r++)
        rounds.push(await measure(tool, target, settings.durationSec, () => ctx.redis.pid()));
      await check(target, ctx.authorization);
      const row = summarise(target, rounds, ctx.bareRps);
      const scaleRow: ScaleRow = {
        sessions: synthetic + real,
        insertSeconds,
        rps: row.rps,
        p50Ms: row.p50Ms,
        p99Ms: row.p99Ms,
        ratio: row.ratio,
        serviceRssBeforeMiB: rssBefore,
        serviceRssMiB: row.rssMiB,
        redisMemMiB: used,
        cpuOthers: row.cpuOthers,
      };
      results.scale.push(scaleRow);
      if (row.bad + row.errors > 0)
        results.failures.push(`scaling at ${size}: ${row.bad} non-2xx, ${row.errors} errors`);
      log(
        `scaling: ${scaleRow.sessions} sessions: ${Math.round(row.rps)} req/s, p99 ${row.p99Ms.toFixed(2)} ms`,
      );
    }
  } finally {
    client.disconnect();
  }
}

// ---- many sessions ---------------------------------------------------------------------------

async function manySessions(tool: LoadTool, results: Results): Promise<void> {
  if (tool !== 'wrk') {
    results.failures.push('many sessions: needs wrk (a Lua script cycles the cookies); left out');
    return;
  }
  const redis = await startRedis();
  cleanups.push(() => redis.close());
  const port = await freePort();
  const dex = await startDex({
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        redirectUris: [`http://${appHost(port)}/oauth2/callback`],
      },
    ],
    users: [],
  });
  cleanups.push(() => dex.close());
  const many = new ManySessions(
    {
      sweep,
      realLogins: settings.manyRealLogins,
      rounds: settings.rounds,
      durationSec: settings.durationSec,
      warmupSec: settings.warmupSec,
      connections: settings.connections,
      threads: settings.threads,
      // BENCH_CPU_PROF=<dir>: the sweep's service writes a CPU profile there (no cache-miss run then).
      nodeFlags: `${DEPLOYMENT_FLAGS}${profileFlags}`,
      withMiss: profileDir === undefined,
    },
    {
      dex,
      port,
      redisUrl: redis.url,
      redisPid: () => redis.pid(),
      startBare: (barePort, headersFile) =>
        startReference('bare.ts', barePort, { BENCH_HEADERS_FILE: headersFile }),
      startSessionsBare: (barePort, sessionsFile) =>
        startReference('bare-sessions.ts', barePort, { BENCH_SESSION_HEADERS_FILE: sessionsFile }),
      serviceEnv: (url) => serviceEnv(dex, url),
      log,
      cleanups,
    },
  );
  results.many = await many.run();
  for (const row of results.many.rows) {
    const refused = Object.entries(row.outcomes).filter(
      ([k, v]) => k !== 'allow' && !k.startsWith('cache_') && v > 0,
    );
    if (row.bad + row.errors > 0 || refused.length > 0)
      results.failures.push(
        `many sessions at ${row.sessions}: ${row.bad} non-2xx, ${row.errors} errors, decisions ${JSON.stringify(row.outcomes)}`,
      );
  }
  await dex.close();
  await redis.close();
}

// ---- main -------------------------------------------------------------------------------------

async function versionOfRedis(): Promise<string> {
  const proc = spawnTracked('/usr/bin/redis-server', ['--version'], { name: 'redis-server --version' });
  await proc.exited;
  return /v=(\S+)/.exec(proc.output())?.[1] ?? 'unknown';
}

/** Cores kept busy by other processes, sampled over `ms` (this process is idle meanwhile). */
async function othersBusy(ms: number): Promise<number> {
  const before = machineBusySeconds();
  await sleep(ms);
  return (machineBusySeconds() - before) / (ms / 1000);
}

/** Waits (up to `maxSec`) until other work leaves the machine nearly idle; returns the cores it used. */
async function waitForQuiet(maxSec: number, sampleMs = 2_000): Promise<number> {
  const deadline = Date.now() + maxSec * 1000;
  let logged = 0;
  for (;;) {
    const busy = await othersBusy(sampleMs);
    if (busy < 0.15 || Date.now() >= deadline) return busy;
    if (Date.now() - logged > 30_000) {
      logged = Date.now();
      log(
        `the machine is busy (${busy.toFixed(2)} cores used by other processes); waiting for it to calm down`,
      );
    }
    await sleep(3_000);
  }
}

async function main(): Promise<number> {
  // Measure what production runs: the compiled service (npm run build), with its runtime flags.
  log('building the service (npm run build)');
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  const tool = pickTool();
  const busyAtStart = await waitForQuiet(settings.waitQuietSec);
  if (busyAtStart >= 0.15) {
    log(`⚠ other processes keep ${busyAtStart.toFixed(2)} cores busy: the numbers will be low and noisy`);
  }
  const meta: Meta = {
    date: new Date().toISOString().slice(0, 10),
    cpu: cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    node: process.version,
    loadTool: await toolVersion(tool),
    redis: await versionOfRedis(),
    connections: settings.connections,
    threads: settings.threads,
    rounds: settings.rounds,
    durationSec: settings.durationSec,
    quick,
    headerBytes: 0,
    loadAverage: loadavg()[0] ?? 0,
    busyAtStart,
  };
  const results: Results = { meta, hot: [], scale: [], failures: [] };
  log(
    `sections: ${[...sections].join(', ')}; session sweep ${sweep.join(', ')}; storm ${settings.stormSessions}`,
  );
  log(
    `${meta.loadTool}, ${settings.rounds} × ${settings.durationSec} s, ${settings.connections} connections${quick ? ' (quick)' : ''}`,
  );

  let failed = false;
  try {
    if (sections.has('hot') || sections.has('scale')) {
      const redis = await startRedis();
      cleanups.push(() => redis.close());
      const withApache = env['BENCH_APACHE'] !== '0' && apacheAvailable();
      const ports = {
        memory: await freePort(),
        redis: await freePort(),
        apache: withApache ? await freePort() : undefined,
      };
      const redirectUris = [ports.memory, ports.redis, ports.apache]
        .filter((p) => p !== undefined)
        .map((p) => `http://${appHost(p)}/oauth2/callback`);
      const dex = await startDex({
        clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris }],
        users: [...DEMO_USERS, ...syntheticUsers(1)],
      });
      cleanups.push(() => dex.close());
      const ctx = await hotPath(tool, redis, dex, ports, results);
      if (sections.has('login')) await loginAndStorm(results);
      if (sections.has('scale')) await scale(tool, ctx, results);
    } else if (sections.has('login')) {
      await loginAndStorm(results);
    }
    if (sections.has('many')) await manySessions(tool, results);
  } catch (error) {
    failed = true;
    results.failures.push(`the run stopped: ${(error as Error).message.split('\n')[0]}`);
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }

  const markdown = toMarkdown(results);
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(join(ARTIFACTS, 'bench.md'), `${markdown}\n`);
  writeFileSync(join(ARTIFACTS, 'bench.json'), `${JSON.stringify({ settings, ...results }, null, 2)}\n`);
  process.stdout.write(`\n${markdown}\n`);
  log('written to test-artifacts/bench.md and test-artifacts/bench.json');
  if (writeToReadme) {
    if (failed) log('not writing README.md: the run did not complete');
    else {
      writeReadme(join(ROOT, 'README.md'), markdown);
      log("README.md's Performance section rewritten");
    }
  }
  return results.failures.length > 0 ? 1 : 0;
}

/** `--render`: rewrite bench.md (and, with --write-readme, the README) from the last bench.json. */
function render(): number {
  const saved = JSON.parse(readFileSync(join(ARTIFACTS, 'bench.json'), 'utf8')) as Results;
  const markdown = toMarkdown(saved);
  writeFileSync(join(ARTIFACTS, 'bench.md'), `${markdown}\n`);
  process.stdout.write(`${markdown}\n`);
  if (writeToReadme) writeReadme(join(ROOT, 'README.md'), markdown);
  return 0;
}

process.exit(args.includes('--render') ? render() : await main());
