/**
 * Test-harness launcher for a real `redis-server` on 127.0.0.1, plus the small
 * child-process toolkit (tracking, readiness polling, guaranteed cleanup) that
 * the other launchers in this folder (sentinel.ts, proxies.ts) reuse.
 *
 * Cleanup guarantees for every process started through `spawnTracked`:
 *  - children are spawned attached (never `detached`), so a terminal Ctrl-C reaches them;
 *  - `close()`/`stop()` kills them and removes their temp dirs;
 *  - a process 'exit' hook SIGKILLs whatever is still running and removes temp dirs;
 *  - a tiny `sh` watchdog, fed the child pids over a pipe, SIGKILLs them when this
 *    process disappears without running its 'exit' hook (SIGKILL, SIGTERM, crash).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.ts';

export const LOOPBACK = '127.0.0.1';

// ---------------------------------------------------------------------------
// Child-process tracking
// ---------------------------------------------------------------------------

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;
let watchdog: ChildProcess | undefined;

// Reads "+pid"/"-pid" and "D<dir>"/"d<dir>" lines; on EOF (our death, however it
// happens) SIGKILLs the listed pids and removes the listed temp dirs.
const WATCHDOG_SCRIPT = `trap '' INT TERM HUP PIPE
pids=' '
dirs=''
while IFS= read -r line; do
  case "$line" in
    +*) pids="$pids\${line#+} " ;;
    -*) pids=$(printf '%s' "$pids" | sed "s/ \${line#-} / /") ;;
    D*) dirs="$dirs\${line#D}
" ;;
    d*) dirs=$(printf '%s' "$dirs" | grep -vxF -- "\${line#d}"; printf x); dirs=\${dirs%x} ;;
  esac
done
for p in $pids; do kill -9 "$p" 2>/dev/null; done
sleep 0.2
printf '%s' "$dirs" | while IFS= read -r d; do [ -n "$d" ] && rm -rf -- "$d"; done
exit 0`;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of liveDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  });
}

function tellWatchdog(line: string): void {
  try {
    if (watchdog === undefined || watchdog.exitCode !== null || watchdog.signalCode !== null) {
      const wd = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'] });
      wd.on('error', () => {});
      wd.stdin?.on('error', () => {});
      wd.unref();
      (wd.stdin as unknown as { unref?: () => void } | null)?.unref?.();
      watchdog = wd;
    }
    watchdog.stdin?.write(`${line}\n`);
  } catch {
    // The watchdog is a safety net only; the 'exit' hook and close() still apply.
  }
}

/** Registers a temp dir to be removed by the process 'exit' hook if nobody closes it. */
export function trackDir(dir: string): void {
  installExitHook();
  liveDirs.add(dir);
  tellWatchdog(`D${dir}`);
}

/** Removes a temp dir now and forgets it. */
export async function removeDir(dir: string): Promise<void> {
  liveDirs.delete(dir);
  tellWatchdog(`d${dir}`);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Creates a fresh temp dir (tracked for cleanup on exit). */
export async function makeTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `dfa-${prefix}-`));
  trackDir(dir);
  return dir;
}

export interface TrackedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves once the process has exited (or failed to spawn). Never rejects. */
  readonly exited: Promise<void>;
  running(): boolean;
  /** The last ~64 KiB of combined stdout/stderr (plus a spawn error, if any). */
  output(): string;
  /** Sends `signal` (default SIGTERM), escalates to SIGKILL after `graceMs`; resolves when exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const OUTPUT_LIMIT = 64 * 1024;

/**
 * Spawns an attached child whose output is captured (echoed to stderr when
 * DFA_HARNESS_DEBUG is set) and which is killed when this process goes away.
 */
export function spawnTracked(
  command: string,
  args: readonly string[],
  opts: { name?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): TrackedProcess {
  installExitHook();
  const name = opts.name ?? command;
  const echo = process.env['DFA_HARNESS_DEBUG'] !== undefined && process.env['DFA_HARNESS_DEBUG'] !== '';
  let out = '';
  const append = (chunk: Buffer | string): void => {
    const text = chunk.toString();
    if (echo) process.stderr.write(`[${name}] ${text}`);
    out += text;
    if (out.length > OUTPUT_LIMIT) out = out.slice(out.length - OUTPUT_LIMIT);
  };

  const child = spawn(command, [...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: false,
  });
  liveChildren.add(child);
  const pid = child.pid;
  if (pid !== undefined) tellWatchdog(`+${pid}`);
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);

  let done = false;
  const exited = new Promise<void>((resolve) => {
    const finish = (): void => {
      if (done) return;
      done = true;
      liveChildren.delete(child);
      if (pid !== undefined) tellWatchdog(`-${pid}`);
      resolve();
    };
    child.once('exit', finish);
    child.once('error', (err) => {
      append(`\n[spawn error] ${err.message}\n`);
      // 'exit' does not follow a failed spawn.
      if (child.pid === undefined) finish();
    });
  });

  const running = (): boolean => !done && child.exitCode === null && child.signalCode === null;

  return {
    name,
    child,
    exited,
    running,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
      if (!running()) {
        await exited;
        return;
      }
      child.kill(signal);
      if (signal === 'SIGKILL') {
        await exited;
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const escalate = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          if (running()) child.kill('SIGKILL');
          resolve();
        }, graceMs);
      });
      await Promise.race([exited, escalate]);
      clearTimeout(timer);
      await exited;
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` until it returns a value other than undefined/false, failing
 * after `timeoutMs` or as soon as `proc` (if given) exits.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  opts: { timeoutMs?: number; intervalMs?: number; proc?: TrackedProcess } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (opts.proc !== undefined && !opts.proc.running()) {
      throw new Error(`${opts.proc.name} exited while waiting for ${what}:\n${opts.proc.output()}`);
    }
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const tail = opts.proc === undefined ? '' : `\n${opts.proc.name} output:\n${opts.proc.output()}`;
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}${tail}`);
    }
    await sleep(intervalMs);
  }
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function tcpAccepts(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: LOOPBACK, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** True when a Redis (or Sentinel) on 127.0.0.1:port answers PING with PONG. */
export function redisPing(port: number, password?: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: LOOPBACK, port });
    let buf = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => {
      let cmd = '';
      if (password !== undefined) {
        cmd += `*2\r\n$4\r\nAUTH\r\n$${Buffer.byteLength(password)}\r\n${password}\r\n`;
      }
      cmd += '*1\r\n$4\r\nPING\r\n';
      socket.write(cmd);
    });
    socket.on('data', (chunk) => {
      buf += chunk.toString();
      // One simple-string/error line per command sent; decide once all have arrived.
      const lines = buf.split('\r\n').slice(0, -1);
      if (lines.length >= (password === undefined ? 1 : 2)) done(lines.includes('+PONG'));
    });
  });
}

/** Runs `fn` with a short-lived, non-retrying ioredis connection to 127.0.0.1:port. */
export async function withRedisClient<T>(
  port: number,
  fn: (client: Redis) => Promise<T>,
  password?: string,
): Promise<T> {
  const client = new Redis({
    host: LOOPBACK,
    port,
    password,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 2000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

export interface RedisServer {
  url: string;
  port: number;
  pid(): number | undefined;
  /** Default SIGKILL; resolves when the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** (Re)starts on the same port, empty (no persistence); resolves when it answers PING. */
  start(): Promise<void>;
  flushAll(): Promise<void>;
  dbSize(): Promise<number>;
  keys(pattern?: string): Promise<string[]>;
  get(key: string): Promise<string | null>;
  close(): Promise<void>;
}

export interface StartRedisOptions {
  port?: number;
  password?: string;
  /** Extra redis-server arguments, e.g. ['--replicaof', '127.0.0.1', '6379']. */
  args?: string[];
}

const REDIS_BIN = process.env['REDIS_SERVER_BIN'] ?? '/usr/bin/redis-server';
/** Whether startRedis() can work here (redis-server installed, or REDIS_SERVER_BIN names one). */
export const hasRedisServer = (): boolean => existsSync(REDIS_BIN);
const START_TIMEOUT_MS = 10_000;

export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  const dir = await makeTempDir('redis');
  let port = opts.port ?? (await freePort());
  let proc: TrackedProcess | undefined;
  let closed = false;

  const launch = async (): Promise<void> => {
    const args = [
      '--port',
      String(port),
      '--bind',
      LOOPBACK,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--logfile',
      '',
    ];
    if (opts.password !== undefined) args.push('--requirepass', opts.password);
    args.push(...(opts.args ?? []));
    const p = spawnTracked(REDIS_BIN, args, { name: `redis-server:${port}`, cwd: dir });
    proc = p;
    try {
      await waitUntil(`redis-server on port ${port}`, () => redisPing(port, opts.password, 500), {
        proc: p,
        timeoutMs: START_TIMEOUT_MS,
      });
    } catch (err) {
      await p.stop('SIGKILL');
      throw err;
    }
  };

  try {
    // An auto-picked port can be grabbed by someone else between freePort() and bind: retry.
    for (let attempt = 1; ; attempt++) {
      try {
        await launch();
        break;
      } catch (err) {
        const portClash = proc?.output().includes('Address already in use') ?? false;
        if (opts.port !== undefined || !portClash || attempt >= 3) throw err;
        port = await freePort();
      }
    }
  } catch (err) {
    await removeDir(dir);
    throw err;
  }

  const auth = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`;
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (proc !== undefined) await proc.stop(signal);
  };
  const client = <T>(fn: (c: Redis) => Promise<T>): Promise<T> => withRedisClient(port, fn, opts.password);

  return {
    url: `redis://${auth}${LOOPBACK}:${port}`,
    port,
    pid: () => (proc?.running() ? proc.child.pid : undefined),
    kill,
    async start(): Promise<void> {
      if (closed) throw new Error('redis server already closed');
      await kill('SIGKILL');
      await launch();
    },
    async flushAll(): Promise<void> {
      await client((c) => c.flushall());
    },
    dbSize: () => client((c) => c.dbsize()),
    keys: (pattern = '*') => client((c) => c.keys(pattern)),
    get: (key) => client((c) => c.get(key)),
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await kill('SIGKILL');
      await removeDir(dir);
    },
  };
}
