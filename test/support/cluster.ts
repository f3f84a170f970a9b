import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import {
  makeTempDir,
  spawnTracked,
  type TrackedProcess,
  tcpAccepts,
  waitUntil,
  withRedisClient,
} from './redis.ts';

export interface RedisCluster {
  readonly nodes: { host: string; port: number }[];
  close(): Promise<void>;
}

/**
 * A real three-master Redis Cluster on loopback (`redis-server --cluster-enabled yes`, joined
 * with `redis-cli --cluster create`), for the Cluster mode of the store.
 */
export async function startRedisCluster(): Promise<RedisCluster> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const procs: TrackedProcess[] = [];
  for (const port of ports) {
    const dir = await makeTempDir(`cluster-${port}`);
    const proc = spawnTracked(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, 'nodes.conf'),
        '--cluster-node-timeout',
        '2000',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ],
      { name: `redis-cluster:${port}` },
    );
    procs.push(proc);
    await waitUntil(`redis cluster node ${port}`, () => tcpAccepts(port), { proc });
  }
  await new Promise<void>((resolve, reject) => {
    const create = spawn(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    create.stdout.on('data', (d: Buffer) => (out += d.toString()));
    create.stderr.on('data', (d: Buffer) => (out += d.toString()));
    create.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`redis-cli --cluster create failed:\n${out}`)),
    );
  });
  for (const port of ports) {
    await waitUntil(
      `cluster_state:ok on ${port}`,
      () => withRedisClient(port, async (c) => (await c.cluster('INFO')).includes('cluster_state:ok')),
      { timeoutMs: 15_000 },
    );
  }
  return {
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    async close() {
      await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    },
  };
}
