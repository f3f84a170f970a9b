/**
 * The load generator: `wrk` when installed (the reference numbers are wrk's), else
 * `autocannon` from node_modules. Either runs as a separate process under a tiny shell that
 * prints its /proc stat line afterwards, so the generator's own CPU time is known too.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { spawnTracked } from '../support/redis.ts';
import { cpuSecondsOfStat } from './proc.ts';

export type LoadTool = 'wrk' | 'autocannon';

export interface LoadOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly connections: number;
  readonly threads: number;
  readonly durationSec: number;
  /** wrk only: a Lua script and its arguments (the many-sessions section cycles cookies with one). */
  readonly script?: { readonly path: string; readonly args: readonly string[] };
}

export interface LoadResult {
  readonly tool: LoadTool;
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Answers that were not 2xx/3xx (wrk) or not 2xx (autocannon). */
  readonly bad: number;
  /** Connect, read, write errors and timeouts. */
  readonly errors: number;
  /** CPU seconds the generator used. */
  readonly cpuSeconds: number | undefined;
}

const WRK = process.env['WRK_BIN'] ?? '/usr/bin/wrk';
const STAT_MARK = '@@STAT ';
const WRAPPER = `"$@"; s=$?; printf '\\n${STAT_MARK}%s\\n' "$(cat /proc/$$/stat)"; exit $s`;

/** wrk unless BENCH_LOADGEN says otherwise or wrk is missing. */
export function pickTool(): LoadTool {
  const wanted = process.env['BENCH_LOADGEN'];
  if (wanted === 'autocannon') return 'autocannon';
  if (existsSync(WRK)) return 'wrk';
  if (wanted === 'wrk') throw new Error(`BENCH_LOADGEN=wrk but ${WRK} does not exist`);
  return 'autocannon';
}

async function runWrapped(command: string, args: string[], timeoutMs: number) {
  const proc = spawnTracked('/bin/sh', ['-c', WRAPPER, 'sh', command, ...args], { name: command });
  const timer = setTimeout(() => void proc.stop('SIGKILL'), timeoutMs);
  await proc.exited;
  clearTimeout(timer);
  const out = proc.output();
  const statLine = out
    .split('\n')
    .find((l) => l.startsWith(STAT_MARK))
    ?.slice(STAT_MARK.length);
  const code = proc.child.exitCode;
  if (code !== 0) throw new Error(`${command} exited with ${code ?? proc.child.signalCode}:\n${out}`);
  return { out, cpuSeconds: statLine === undefined ? undefined : cpuSecondsOfStat(statLine, true) };
}

/** "1.23ms", "512.00us", "1.01s", "2.00m" → milliseconds. */
export function parseWrkDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m?.[1] || !m[2]) throw new Error(`unexpected wrk duration: ${text}`);
  const value = Number(m[1]);
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as 'us' | 'ms' | 's' | 'm'];
  return value * scale;
}

export function parseWrk(out: string): Omit<LoadResult, 'tool' | 'cpuSeconds'> {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m?.[1]) throw new Error(`unexpected wrk output (no ${re}):\n${out}`);
    return Number(m[1]);
  };
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)\\s*$`, 'm').exec(out);
    if (!m?.[1]) throw new Error(`unexpected wrk output (no ${p}% latency):\n${out}`);
    return parseWrkDuration(m[1]);
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  const bad = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests: num(/^\s+(\d+) requests in /m),
    rps: num(/^Requests\/sec:\s+([\d.]+)/m),
    p50Ms: pct('50'),
    p99Ms: pct('99'),
    bad: bad?.[1] ? Number(bad[1]) : 0,
    errors,
  };
}

async function runWrk(o: LoadOptions): Promise<LoadResult> {
  const args = [
    `-t${o.threads}`,
    `-c${o.connections}`,
    `-d${o.durationSec}s`,
    '--timeout',
    '10s',
    '--latency',
  ];
  for (const [name, value] of Object.entries(o.headers)) args.push('-H', `${name}: ${value}`);
  if (o.script) args.push('-s', o.script.path);
  args.push(o.url);
  if (o.script) args.push('--', ...o.script.args);
  const { out, cpuSeconds } = await runWrapped(WRK, args, (o.durationSec + 30) * 1000);
  return { tool: 'wrk', ...parseWrk(out), cpuSeconds };
}

async function runAutocannon(o: LoadOptions): Promise<LoadResult> {
  const require = createRequire(import.meta.url);
  const bin = require.resolve('autocannon/autocannon.js');
  const args = [bin, '--json', '-c', String(o.connections), '-d', String(o.durationSec), '-t', '10'];
  for (const [name, value] of Object.entries(o.headers)) args.push('-H', `${name}=${value}`);
  args.push(o.url);
  const { out, cpuSeconds } = await runWrapped(process.execPath, args, (o.durationSec + 30) * 1000);
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`unexpected autocannon output:\n${out}`);
  const r = JSON.parse(line) as {
    requests: { total: number };
    duration: number;
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
    timeouts: number;
  };
  return {
    tool: 'autocannon',
    requests: r.requests.total,
    rps: r.requests.total / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    bad: r.non2xx,
    errors: r.errors + r.timeouts,
    cpuSeconds,
  };
}

export function runLoad(tool: LoadTool, options: LoadOptions): Promise<LoadResult> {
  if (options.script && tool !== 'wrk') throw new Error('a request script needs wrk');
  return tool === 'wrk' ? runWrk(options) : runAutocannon(options);
}

/** "wrk 4.1.0" / "autocannon 8.0.0": for the report's header. */
export async function toolVersion(tool: LoadTool): Promise<string> {
  if (tool === 'wrk') {
    const proc = spawnTracked(WRK, ['--version'], { name: 'wrk --version' });
    await proc.exited;
    const m = /wrk (\S+)/.exec(proc.output());
    return `wrk ${m?.[1] ?? 'unknown'}`;
  }
  const require = createRequire(import.meta.url);
  const pkg = require('autocannon/package.json') as { version: string };
  return `autocannon ${pkg.version}`;
}
