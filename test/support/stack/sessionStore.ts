import { type RedisCluster, startRedisCluster } from '../cluster.ts';
import { type RedisServer, startRedis } from '../redis.ts';
import { type SentinelSet, startSentinelSet } from '../sentinel.ts';

/** Where a stack's sessions live: a private redis-server (true), memory (false), Sentinel, Cluster. */
export type SessionStoreKind = boolean | 'sentinel' | 'cluster';

export interface SessionStore {
  /** The settings that point the service at it ({} for memory). */
  readonly env: Readonly<Record<string, string>>;
  readonly redis: RedisServer | undefined;
  readonly sentinel: SentinelSet | undefined;
  readonly cluster: RedisCluster | undefined;
  close(): Promise<void>;
}

const hostPorts = (nodes: readonly { host: string; port: number }[]): string =>
  nodes.map((n) => `${n.host}:${n.port}`).join(',');

/** Starts the real Redis processes of `kind` on free loopback ports. */
export async function startSessionStore(kind: SessionStoreKind = true): Promise<SessionStore> {
  const none = { redis: undefined, sentinel: undefined, cluster: undefined };
  if (kind === false) return { ...none, env: {}, close: async () => {} };
  if (kind === 'sentinel') {
    const sentinel = await startSentinelSet();
    const env = { REDIS_SENTINELS: hostPorts(sentinel.sentinels), REDIS_SENTINEL_NAME: sentinel.masterName };
    return { ...none, sentinel, env, close: () => sentinel.close() };
  }
  if (kind === 'cluster') {
    const cluster = await startRedisCluster();
    return {
      ...none,
      cluster,
      env: { REDIS_CLUSTER_NODES: hostPorts(cluster.nodes) },
      close: () => cluster.close(),
    };
  }
  const redis = await startRedis();
  return { ...none, redis, env: { REDIS_URL: redis.url }, close: () => redis.close() };
}
