/**
 * The benchmark's results as data, as Markdown, and the README's Performance section (rewritten
 * between markers by `npm run bench -- --write-readme`).
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface Meta {
  readonly date: string;
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  readonly loadTool: string;
  readonly redis: string;
  readonly connections: number;
  readonly threads: number;
  readonly rounds: number;
  readonly durationSec: number;
  readonly quick: boolean;
  /** Bytes of the response header block a real `/auth` 200 carries (status line excluded). */
  readonly headerBytes: number;
  /** 1-minute load average when the run started (anything above ~0.5 means other work). */
  readonly loadAverage: number;
  /** Cores other processes kept busy just before the run (sampled over 2 s). */
  readonly busyAtStart: number;
}

export interface HotRow {
  readonly id: string;
  readonly label: string;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly rssMiB: number | undefined;
  /** CPU seconds in one round (median): the server, the load generator, redis-server. */
  readonly cpuServer: number | undefined;
  readonly cpuLoad: number | undefined;
  readonly cpuRedis: number | undefined;
  /** CPU seconds everything else on the machine used meanwhile (should be near 0). */
  readonly cpuOthers: number | undefined;
  readonly ratio: number;
  readonly bad: number;
  readonly errors: number;
  readonly roundsRps: readonly number[];
}

export interface LoginResult {
  /** The gateway the logins went through (older runs: directly to the service). */
  readonly through?: string;
  readonly sequential: { readonly count: number; readonly seconds: number; readonly perSecond: number };
  readonly concurrent: {
    readonly clients: number;
    readonly count: number;
    readonly seconds: number;
    readonly perSecond: number;
  };
  /** CPU milliseconds per login: the service, and the bench process (Dex stand-in + browsers). */
  readonly serviceCpuMsPerLogin: number | undefined;
  readonly benchCpuMsPerLogin: number;
}

export interface StormResult {
  readonly sessions: number;
  readonly ttlSec: number;
  readonly concurrency: number;
  /** Replica processes sharing the store, the requests spread over them (older runs: 1). */
  readonly replicas?: number;
  /** Requests the stand-in received meanwhile, by kind (DexCounts). */
  readonly providerCalls?: Readonly<Record<string, number>>;
  /** From sending the first request until the last answer arrived. */
  readonly seconds: number;
  /** CPU meanwhile: the service, and this process (the Dex stand-in minting 1,000 tokens, the clients). */
  readonly serviceCpuSeconds: number | undefined;
  readonly benchCpuSeconds: number;
  readonly statuses: Readonly<Record<string, number>>;
  readonly refreshGrants: number;
  readonly newCookies: number;
  readonly secondPass: {
    readonly seconds: number;
    readonly statuses: Readonly<Record<string, number>>;
    readonly refreshGrants: number;
  };
  readonly ok: boolean;
}

export interface ScaleRow {
  readonly sessions: number;
  readonly insertSeconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly ratio: number;
  /** Service RSS after the insert, before this size's load. */
  readonly serviceRssBeforeMiB: number | undefined;
  readonly serviceRssMiB: number | undefined;
  readonly redisMemMiB: number;
  /** CPU seconds per round used by other processes meanwhile. */
  readonly cpuOthers: number | undefined;
}

/** One size of the many-sessions sweep: N distinct sessions cycled, against the bare server in the same run. */
export interface ManyRow {
  readonly sessions: number;
  /** "logins", "sealed" or "logins + sealed". */
  readonly made: string;
  readonly makeSeconds: number;
  /** Sessions made for this size (the sweep adds to the previous size's). */
  readonly madeNow: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Service CPU microseconds per answered request. */
  readonly cpuUsPerRequest: number | undefined;
  readonly bad: number;
  readonly errors: number;
  readonly bareRps: number;
  readonly bareP99Ms: number;
  /** The bare server's CPU microseconds per request (a figure other load on the machine skews less). */
  readonly bareCpuUsPerRequest?: number | undefined;
  readonly ratio: number;
  /** The bare server answering each session's own 200 (bare-sessions.ts), and the ratio to it. */
  readonly sameBareRps?: number;
  readonly sameBareP99Ms?: number;
  readonly sameBareCpuUsPerRequest?: number | undefined;
  readonly sameRatio?: number;
  readonly rssAfterLoginsMiB: number | undefined;
  readonly rssAfterLoadMiB: number | undefined;
  /** RssAnon after load (what is not the node binary and other mapped files). */
  readonly rssAnonAfterLoadMiB?: number | undefined;
  /** After load: V8 heap used, and the bytes the caches are charged with (the service's gauges). */
  readonly heapMiB: number;
  readonly cacheMiB: number;
  /** Redis used_memory growth per session made for this size. */
  readonly redisBytesPerSession: number | undefined;
  readonly redisMiB: number;
  /** Decisions by outcome and session-cache hits/misses during the measured rounds. */
  readonly outcomes: Readonly<Record<string, number>>;
}

interface MissSide {
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuUsPerRequest: number | undefined;
  readonly bad: number;
  readonly errors: number;
  readonly outcomes: Readonly<Record<string, number>>;
  readonly rssAfterLoadMiB: number | undefined;
}

/** The cost of a cache miss: the same sessions with CACHE_MAX_BYTES=1Mi (small) and the default (large). */
export interface MissRow {
  readonly sessions: number;
  readonly small: MissSide;
  readonly large: MissSide;
}

export interface ManyResult {
  readonly rows: ManyRow[];
  readonly miss?: MissRow;
  /** The service's Node flags. */
  readonly nodeFlags?: string;
}

export interface Results {
  readonly meta: Meta;
  hot: HotRow[];
  login?: LoginResult;
  storm?: StormResult;
  scale: ScaleRow[];
  many?: ManyResult;
  readonly failures: string[];
}

/** The issue's reference numbers for peers that cannot be run here. */
export const NOT_MEASURED = [
  {
    id: 'apache',
    label: 'Apache mod_auth_openidc with Redis cache (uses both cores)',
    rps: '~2,600',
    ratio: '~0.10',
  },
  { id: 'express-openid-connect', label: 'express-openid-connect', rps: '~2,500', ratio: '~0.08' },
] as const;

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(1));
const mib = (n: number | undefined): string => (n === undefined ? '–' : `${Math.round(n)} MiB`);
const sec = (n: number | undefined): string => (n === undefined ? '–' : n.toFixed(2));
const ratio = (n: number): string => n.toFixed(2);

/** Pads every Markdown table in `lines` the way the README's formatter does (right-aligned `---:`). */
export function alignTables(lines: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    if (!lines[i]?.startsWith('|')) {
      out.push(lines[i] as string);
      i++;
      continue;
    }
    const block: string[][] = [];
    while (i < lines.length && lines[i]?.startsWith('|')) {
      block.push(
        (lines[i] as string)
          .slice(1, -1)
          .split('|')
          .map((c) => c.trim()),
      );
      i++;
    }
    const rule = block[1] ?? [];
    const right = rule.map((c) => c.endsWith(':'));
    const widths = rule.map((_, col) =>
      Math.max(3, ...block.map((row, n) => (n === 1 ? 3 : (row[col] ?? '').length))),
    );
    block.forEach((row, n) => {
      const cells = widths.map((w, col) => {
        if (n === 1) return right[col] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w);
        const cell = row[col] ?? '';
        return right[col] ? cell.padStart(w) : cell.padEnd(w);
      });
      out.push(`| ${cells.join(' | ')} |`);
    });
  }
  return out;
}

export function toMarkdown(r: Results): string {
  const m = r.meta;
  const load = m.loadTool.startsWith('wrk')
    ? `\`wrk -t${m.threads} -c${m.connections}\``
    : `autocannon -c ${m.connections}`;
  const lines: string[] = [];
  lines.push(
    `Measured ${m.date} on ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.loadTool}, Redis ${m.redis}; ` +
      `${load} against \`GET /auth\` with a valid session cookie and Traefik's headers, ` +
      `load generator, servers and Redis sharing the cores; the service writes its audit stream (every decision, \`AUDIT_ALLOW=all\`) to \`/dev/null\`; medians of ${m.rounds} round${m.rounds === 1 ? '' : 's'} ` +
      `of ${m.durationSec} s${m.quick ? ' (**quick smoke run, not representative**)' : ''}; ` +
      `before the run other processes kept ${m.busyAtStart.toFixed(2)} cores busy (load average ${m.loadAverage.toFixed(2)}).`,
    '',
  );
  if (r.hot.length > 0) {
    lines.push(
      '| configuration (Node 24) | req/s | p50 ms | p99 ms | RSS after load | CPU s per round: server / load gen / redis / others | × bare |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const row of r.hot) {
      const label = row.id === 'bare' ? `${row.label} (${m.headerBytes}-byte header)` : row.label;
      const flag = row.bad + row.errors > 0 ? ` ⚠ ${row.bad} bad answers, ${row.errors} socket errors` : '';
      lines.push(
        `| ${label}${flag} | ${int(row.rps)} | ${ms(row.p50Ms)} | ${ms(row.p99Ms)} | ${mib(row.rssMiB)} | ` +
          `${sec(row.cpuServer)} / ${sec(row.cpuLoad)} / ${sec(row.cpuRedis)} / ${sec(row.cpuOthers)} | ` +
          `${ratio(row.ratio)} |`,
      );
    }
    for (const peer of NOT_MEASURED.filter((p) => !r.hot.some((row) => row.id === p.id))) {
      lines.push(
        `| ${peer.label}: not measured here (the issue's reference number) | ${peer.rps} | – | – | – | – | ${peer.ratio} |`,
      );
    }
    const others = r.hot.map((row) => row.cpuOthers ?? 0);
    const busiest = Math.max(...others);
    if (busiest > 0.1 * m.durationSec) {
      lines.push(
        '',
        `⚠ Other processes used up to ${busiest.toFixed(2)} CPU s per ${m.durationSec}-s round (column "others"): ` +
          'the machine was not quiet, so these numbers are lower and noisier than they should be.',
      );
    }
    lines.push('');
  }
  if (r.login) {
    const l = r.login;
    lines.push(
      (l.through
        ? `**Login round trip** through ${l.through} (the dashboard → \`/oauth2/start\` → Dex stand-in's form → \`/oauth2/callback\` → the dashboard, a fresh browser each time): `
        : `**Login round trip** (\`/oauth2/start\` → Dex stand-in's form → \`/oauth2/callback\`, a fresh browser each time): `) +
        `${l.sequential.perSecond.toFixed(1)}/s sequentially (${l.sequential.count} logins), ` +
        `${l.concurrent.perSecond.toFixed(1)}/s with ${l.concurrent.clients} concurrent clients (${l.concurrent.count} logins); ` +
        `CPU per login: service ${l.serviceCpuMsPerLogin === undefined ? '–' : l.serviceCpuMsPerLogin.toFixed(1)} ms, ` +
        `${l.through ? 'gateway, dashboard, ' : ''}Dex stand-in and browsers ${l.benchCpuMsPerLogin.toFixed(1)} ms` +
        ((l.serviceCpuMsPerLogin ?? 0) < l.benchCpuMsPerLogin ? ' (the stand-in is the bottleneck).' : '.'),
      '',
    );
  }
  if (r.storm) {
    const s = r.storm;
    const statuses = Object.entries(s.statuses)
      .map(([k, v]) => `${v}× ${k}`)
      .join(', ');
    lines.push(
      `**Refresh storm**: ${int(s.sessions)} sessions whose ID tokens (${s.ttlSec} s lifetime) had all expired, one ` +
        `\`/auth\` request each, all at once over ${s.replicas ?? 1} replica process${(s.replicas ?? 1) === 1 ? '' : 'es'} sharing Redis (${s.concurrency} connections): answered in ${s.seconds.toFixed(2)} s ` +
        `(${statuses}; CPU meanwhile: the replicas ${sec(s.serviceCpuSeconds)} s, Dex stand-in and clients ` +
        `${sec(s.benchCpuSeconds)} s${(s.serviceCpuSeconds ?? 0) < s.benchCpuSeconds ? ': the stand-in sets the pace' : ''}); ` +
        `refresh grants at the provider: ` +
        `**${int(s.refreshGrants)}** for ${int(s.sessions)} sessions ${s.refreshGrants === s.sessions ? '(equal ✓)' : '(**not equal ✗**)'}; ` +
        (s.providerCalls
          ? `provider calls meanwhile: ${Object.entries(s.providerCalls)
              .filter(([, v]) => v > 0)
              .map(([k, v]) => `${int(v)} ${k}`)
              .join(', ')}; `
          : '') +
        `${int(s.newCookies)} rotated cookies handed out. The same requests again with the handed cookies: ` +
        `${s.secondPass.seconds.toFixed(2)} s, ${s.secondPass.refreshGrants} further refresh grants.`,
      '',
    );
  }
  if (r.scale.length > 0) {
    lines.push(
      '**Session count scaling** (the Redis store; synthetic entries of the real key and value size under `dfa:s:`, plus a few real sessions; `/auth` driven with one real session):',
      '',
      '| sessions in Redis | insert time | req/s | p50 ms | p99 ms | × bare | service RSS before → after load | Redis memory | CPU s of others per round |',
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const row of r.scale) {
      lines.push(
        `| ${int(row.sessions)} | ${row.insertSeconds.toFixed(1)} s | ${int(row.rps)} | ${ms(row.p50Ms)} | ${ms(row.p99Ms)} | ` +
          `${ratio(row.ratio)} | ${mib(row.serviceRssBeforeMiB)} → ${mib(row.serviceRssMiB)} | ${mib(row.redisMemMiB)} | ${sec(row.cpuOthers)} |`,
      );
    }
    lines.push('');
  }
  if (r.many) lines.push(...manyMarkdown(r.many, m));
  lines.push(...targetsMarkdown(r));
  if (r.failures.length > 0) {
    lines.push('**Checks that failed in this run:**', '', ...r.failures.map((f) => `- ${f}`), '');
  }
  return alignTables(lines).join('\n');
}

const missRate = (o: Readonly<Record<string, number>>): string => {
  const hits = o['cache_hits'] ?? 0;
  const misses = o['cache_misses'] ?? 0;
  return hits + misses === 0 ? '–' : `${((100 * misses) / (hits + misses)).toFixed(0)} %`;
};
const us = (n: number | undefined): string => (n === undefined ? '–' : `${Math.round(n)} µs`);

function manyMarkdown(many: ManyResult, m: Meta): string[] {
  const lines = [
    `**Many sessions** (issue 15: N distinct sessions, one user in ten with 150 groups of 40 characters; ` +
      `\`wrk -t${m.threads} -c${m.connections}\` with a Lua script giving each request the next session's cookie, round robin; ` +
      `the service with the Redis store${many.nodeFlags ? ` and the Deployment's flags \`${many.nodeFlags}\`` : ''}, ` +
      'the bare `node:http` server answering the 200 of one 2-group session to every request (column "× bare", what the targets are judged by) ' +
      'and a bare server answering each session its own 200 from a Map by cookie (its ID token and groups: column "× own-200 bare"), rounds interleaved; sessions are real logins through the Dex stand-in ' +
      'or, for larger N, sealed the way a login seals them — SessionService.create from stand-in-signed ID tokens into the same Redis, column "made"):',
    '',
    '| sessions | made | req/s | × bare | × own-200 bare | p50 ms | p99 ms (bare) | CPU per request (bare, own-200 bare) | service RSS after logins → after load (anonymous) | Redis per session | session-cache misses |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of many.rows) {
    const flag = row.bad + row.errors > 0 ? ` ⚠ ${row.bad} bad, ${row.errors} errors` : '';
    const perSession =
      row.redisBytesPerSession === undefined ? '–' : `${(row.redisBytesPerSession / 1024).toFixed(1)} KiB`;
    lines.push(
      `| ${int(row.sessions)}${flag} | ${row.made} (${row.makeSeconds.toFixed(0)} s) | ${int(row.rps)} | ${ratio(row.ratio)} | ${row.sameRatio === undefined ? '–' : ratio(row.sameRatio)} | ${ms(row.p50Ms)} | ` +
        `${ms(row.p99Ms)} (${ms(row.bareP99Ms)}) | ${us(row.cpuUsPerRequest)} (${us(row.bareCpuUsPerRequest)}, ${us(row.sameBareCpuUsPerRequest)}) | ${mib(row.rssAfterLoginsMiB)} → ${mib(row.rssAfterLoadMiB)} (${mib(row.rssAnonAfterLoadMiB)}) | ` +
        `${perSession} | ${missRate(row.outcomes)} |`,
    );
  }
  lines.push('');
  if (many.miss) {
    const { small, large, sessions } = many.miss;
    const extra =
      small.cpuUsPerRequest !== undefined && large.cpuUsPerRequest !== undefined
        ? `: a miss costs about ${Math.round(small.cpuUsPerRequest - large.cpuUsPerRequest)} µs of service CPU more than a hit`
        : '';
    lines.push(
      `**Cost of a cache miss** (${int(sessions)} sessions as above): \`CACHE_MAX_BYTES=1Mi\` ` +
        `${int(small.rps)} req/s, p99 ${ms(small.p99Ms)} ms, ${us(small.cpuUsPerRequest)} CPU per request, ` +
        `${missRate(small.outcomes)} session-cache misses, RSS ${mib(small.rssAfterLoadMiB)}; the default budget ` +
        `${int(large.rps)} req/s, p99 ${ms(large.p99Ms)} ms, ${us(large.cpuUsPerRequest)}, ${missRate(large.outcomes)} misses${extra}.`,
      '',
    );
  }
  return lines;
}

/** Issue 15's targets, each as measured in this run (✓ met, ✗ not, – not measured). */
export function targets(
  r: Results,
): { readonly target: string; readonly measured: string; readonly met: boolean | undefined }[] {
  const at = (n: number) => r.many?.rows.find((row) => row.sessions === n);
  const out: { target: string; measured: string; met: boolean | undefined }[] = [];
  const ratioTarget = (n: number, min: number, label: string) => {
    const row = at(n);
    out.push({
      target: `${label}: ≥ ${min}× bare`,
      measured: row
        ? `${ratio(row.ratio)}×${row.bad + row.errors > 0 ? `, ${row.bad + row.errors} errors` : ''}`
        : '–',
      met: row ? row.ratio >= min && row.bad + row.errors === 0 : undefined,
    });
  };
  ratioTarget(10_000, 0.6, '10,000 sessions');
  const ten = at(10_000);
  out.push({
    target: '10,000 sessions: p99 ≤ bare p99 + 5 ms',
    measured: ten ? `${ms(ten.p99Ms)} ms (bare ${ms(ten.bareP99Ms)} ms)` : '–',
    met: ten ? ten.p99Ms <= ten.bareP99Ms + 5 : undefined,
  });
  ratioTarget(100_000, 0.5, '100,000 sessions');
  for (const [n, max] of [
    [10_000, 150],
    [100_000, 200],
  ] as const) {
    const row = at(n);
    const rss = row?.rssAfterLoadMiB;
    const anon = row?.rssAnonAfterLoadMiB;
    const mb = (n: number) => `${Math.round((n * 2 ** 20) / 1e6)} MB`;
    out.push({
      target: `RSS after ${int(n)} sessions and load ≤ ${max} MB`,
      measured: rss === undefined ? '–' : `${mb(rss)}${anon === undefined ? '' : ` (${mb(anon)} anonymous)`}`,
      met: rss === undefined ? undefined : rss * 2 ** 20 <= max * 1e6,
    });
  }
  const one = at(1);
  out.push({
    target: 'one session: ≥ 0.7× bare, p99 ≤ 10 ms',
    measured: one ? `${ratio(one.ratio)}×, ${ms(one.p99Ms)} ms` : '–',
    met: one ? one.ratio >= 0.7 && one.p99Ms <= 10 : undefined,
  });
  const login = r.login;
  out.push({
    target: 'logins: ≥ 100/s',
    measured: login
      ? `${login.concurrent.perSecond.toFixed(1)}/s with ${login.concurrent.clients} clients`
      : '–',
    met: login ? login.concurrent.perSecond >= 100 : undefined,
  });
  out.push({
    target: "the service's CPU per login halved (9.4 ms before)",
    measured: login?.serviceCpuMsPerLogin === undefined ? '–' : `${login.serviceCpuMsPerLogin.toFixed(1)} ms`,
    met: login?.serviceCpuMsPerLogin === undefined ? undefined : login.serviceCpuMsPerLogin <= 4.7,
  });
  const storm = r.storm;
  out.push({
    target: 'refresh storm: 10,000 sessions over 3 replicas, one grant each, no errors',
    measured: storm
      ? `${int(storm.sessions)} sessions over ${storm.replicas ?? 1}: ${int(storm.refreshGrants)} grants, ${int(storm.sessions - (storm.statuses['200'] ?? 0))} errors, ${storm.seconds.toFixed(1)} s`
      : '–',
    met: storm ? storm.ok && storm.sessions >= 10_000 && (storm.replicas ?? 1) >= 3 : undefined,
  });
  return out;
}

function targetsMarkdown(r: Results): string[] {
  if (!r.many && !r.login && !r.storm) return [];
  const mark = (met: boolean | undefined) => (met === undefined ? '–' : met ? '✓' : '✗');
  return [
    "**Issue 15's targets in this run:**",
    '',
    '| target | measured | met |',
    '| --- | --- | ---: |',
    ...targets(r).map((t) => `| ${t.target} | ${t.measured} | ${mark(t.met)} |`),
    '',
  ];
}

export const README_BEGIN = '<!-- bench:begin — generated by `npm run bench -- --write-readme` -->';
export const README_END = '<!-- bench:end -->';

/** Replaces the generated part of README.md's Performance section (adds the section if missing). */
export function writeReadme(path: string, markdown: string): void {
  const readme = readFileSync(path, 'utf8');
  const begin = readme.indexOf('<!-- bench:begin');
  const end = readme.indexOf(README_END);
  const block = `${README_BEGIN}\n${markdown.trimEnd()}\n${README_END}`;
  let next: string;
  if (begin !== -1 && end > begin) {
    next = readme.slice(0, begin) + block + readme.slice(end + README_END.length);
  } else {
    next = `${readme.trimEnd()}\n\n## Performance\n\nReproduce with \`npm run bench\`.\n\n${block}\n`;
  }
  writeFileSync(path, next);
}
