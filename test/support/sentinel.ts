/**
 * Test-harness launcher for a small Redis Sentinel deployment on 127.0.0.1:
 * one primary, one replica and (by default) three sentinels, tuned so that a
 * failover after `killPrimary()` completes in a few seconds.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import {
  LOOPBACK,
  makeTempDir,
  type RedisServer,
  redisPing,
  removeDir,
  spawnTracked,
  startRedis,
  type TrackedProcess,
  waitUntil,
  withRedisClient,
} from './redis.ts';

export interface SentinelAddress {
  host: string;
  port: number;
}

export interface SentinelSet {
  masterName: string;
  sentinels: SentinelAddress[];
  /** The node that was primary at start (it stays this object after a failover). */
  primary: RedisServer;
  /** The node that was the replica at start. */
  replica: RedisServer;
  /** The primary's port as reported by the sentinels right now. */
  currentPrimaryPort(): Promise<number>;
  /** SIGKILLs whichever node the sentinels currently consider primary. */
  killPrimary(): Promise<void>;
  /**
   * Resolves with the new primary's port once every sentinel reports a primary
   * other than the one killed last (or the initial one) and that node answers ROLE as master.
   */
  waitForFailover(timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
}

const REDIS_BIN = process.env['REDIS_SERVER_BIN'] ?? '/usr/bin/redis-server';
const DEFAULT_MASTER_NAME = 'mymaster';
const FAST_REPL = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0'];

type Fields = Record<string, string>;

function toFields(reply: unknown): Fields {
  const out: Fields = {};
  if (!Array.isArray(reply)) return out;
  for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
  return out;
}

async function sentinelCall(port: number, password: string | undefined, ...args: string[]): Promise<unknown> {
  return await withRedisClient(port, (c) => c.call('SENTINEL', ...args), password);
}

async function masterAddr(port: number, name: string, password?: string): Promise<number | undefined> {
  const reply = await sentinelCall(port, password, 'get-master-addr-by-name', name);
  if (!Array.isArray(reply) || reply.length < 2) return undefined;
  const n = Number(reply[1]);
  return Number.isInteger(n) ? n : undefined;
}

async function roleOf(port: number, password?: string): Promise<string | undefined> {
  const reply = await withRedisClient(port, (c) => c.call('ROLE'), password);
  return Array.isArray(reply) ? String(reply[0]) : undefined;
}

export interface SentinelSetOptions {
  /** Default 3. */
  sentinels?: number;
  /** Default 'mymaster'. */
  masterName?: string;
  /** One password for the nodes (requirepass, masterauth) and the sentinels, as the shipped Redis has. */
  password?: string;
}

export async function startSentinelSet(opts: SentinelSetOptions = {}): Promise<SentinelSet> {
  const count = opts.sentinels ?? 3;
  const MASTER_NAME = opts.masterName ?? DEFAULT_MASTER_NAME;
  const password = opts.password;
  const auth = password === undefined ? [] : ['--masterauth', password];
  if (count < 1) throw new Error('need at least one sentinel');
  const quorum = Math.floor(count / 2) + 1;
  const dir = await makeTempDir('sentinel');
  const sentinelProcs: TrackedProcess[] = [];
  const servers: RedisServer[] = [];
  let closed = false;

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await Promise.all(sentinelProcs.map((p) => p.stop('SIGKILL')));
    await Promise.all(servers.map((s) => s.close()));
    await removeDir(dir);
  };

  try {
    const primary = await startRedis({ args: [...FAST_REPL, ...auth], password });
    servers.push(primary);
    const replica = await startRedis({
      args: [...FAST_REPL, ...auth, '--replicaof', LOOPBACK, String(primary.port)],
      password,
    });
    servers.push(replica);
    await waitUntil(
      'replica to sync with primary',
      async () =>
        withRedisClient(
          replica.port,
          async (c) => (await c.info('replication')).includes('master_link_status:up'),
          password,
        ),
      { timeoutMs: 10_000 },
    );

    // Pre-seed every sentinel with its peers and the replica (the same lines Sentinel
    // itself writes on config rewrite) so nobody waits for hello/INFO discovery.
    const nodes = await Promise.all(
      Array.from({ length: count }, async () => ({
        port: await freePort(),
        id: randomBytes(20).toString('hex'),
      })),
    );
    for (const [i, node] of nodes.entries()) {
      const conf = [
        `port ${node.port}`,
        `bind ${LOOPBACK}`,
        'protected-mode no',
        'daemonize no',
        'logfile ""',
        `dir ${dir}`,
        `sentinel myid ${node.id}`,
        'sentinel resolve-hostnames no',
        'sentinel announce-hostnames no',
        `sentinel monitor ${MASTER_NAME} ${LOOPBACK} ${primary.port} ${quorum}`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 3000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        ...(password === undefined
          ? []
          : [`requirepass ${password}`, `sentinel auth-pass ${MASTER_NAME} ${password}`]),
        `sentinel known-replica ${MASTER_NAME} ${LOOPBACK} ${replica.port}`,
        ...nodes
          .filter((other) => other !== node)
          .map((other) => `sentinel known-sentinel ${MASTER_NAME} ${LOOPBACK} ${other.port} ${other.id}`),
        '',
      ].join('\n');
      const file = join(dir, `sentinel-${i}.conf`); // must stay writable: Sentinel rewrites it
      await writeFile(file, conf);
      sentinelProcs.push(
        spawnTracked(REDIS_BIN, [file, '--sentinel'], { name: `sentinel:${node.port}`, cwd: dir }),
      );
    }
    await Promise.all(
      nodes.map((node, i) =>
        waitUntil(`sentinel on port ${node.port}`, () => redisPing(node.port, password, 500), {
          proc: sentinelProcs[i],
          timeoutMs: 10_000,
        }),
      ),
    );
    // Every sentinel must see the primary, a healthy replica and all its peers.
    await Promise.all(
      nodes.map((node, i) =>
        waitUntil(
          `sentinel ${node.port} to see the topology`,
          async () => {
            const master = toFields(await sentinelCall(node.port, password, 'master', MASTER_NAME));
            if (master['flags'] !== 'master' || master['num-slaves'] !== '1') return false;
            const replicas = (await sentinelCall(node.port, password, 'replicas', MASTER_NAME)) as unknown[];
            const r = toFields(replicas[0]);
            if (r['flags'] !== 'slave' || r['master-link-status'] !== 'ok') return false;
            const peers = (
              (await sentinelCall(node.port, password, 'sentinels', MASTER_NAME)) as unknown[]
            ).map(toFields);
            return peers.length === count - 1 && peers.every((p) => p['flags'] === 'sentinel');
          },
          { proc: sentinelProcs[i], timeoutMs: 15_000, intervalMs: 100 },
        ),
      ),
    );

    const sentinels: SentinelAddress[] = nodes.map((n) => ({ host: LOOPBACK, port: n.port }));
    let previousPrimaryPort = primary.port;

    const currentPrimaryPort = async (): Promise<number> => {
      for (const s of sentinels) {
        try {
          const port = await masterAddr(s.port, MASTER_NAME, password);
          if (port !== undefined) return port;
        } catch {
          // try the next sentinel
        }
      }
      throw new Error('no sentinel answered get-master-addr-by-name');
    };

    return {
      masterName: MASTER_NAME,
      sentinels,
      primary,
      replica,
      currentPrimaryPort,
      async killPrimary(): Promise<void> {
        const port = await currentPrimaryPort();
        const node = servers.find((s) => s.port === port);
        if (node === undefined) throw new Error(`sentinels report unknown primary port ${port}`);
        previousPrimaryPort = port;
        await node.kill('SIGKILL');
      },
      async waitForFailover(timeoutMs = 20_000): Promise<number> {
        const live = sentinels.filter((_, i) => sentinelProcs[i]?.running());
        return await waitUntil(
          `sentinel failover away from port ${previousPrimaryPort}`,
          async () => {
            const ports = await Promise.all(live.map((s) => masterAddr(s.port, MASTER_NAME, password)));
            const first = ports[0];
            if (first === undefined || first === previousPrimaryPort) return undefined;
            if (!ports.every((p) => p === first)) return undefined;
            return (await roleOf(first, password)) === 'master' ? first : undefined;
          },
          { timeoutMs, intervalMs: 100 },
        );
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
