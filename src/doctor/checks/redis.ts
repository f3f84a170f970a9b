import { randomBytes } from 'node:crypto';
import type { Config } from '../../config.ts';
import { createRedisClient, RedisStore } from '../../session/redisStore.ts';
import { type DoctorCheck, type DoctorContext, type Finding, ok, problem, warning } from '../types.ts';

/** Redis (single, Sentinel or Cluster) is reachable and writable (a read-only replica is refused). */

function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'REDIS_URL';
  }
}

function describeRedis(redis: NonNullable<Config['redis']>): string {
  if (redis.mode === 'single') return redactUrl(redis.url);
  if (redis.mode === 'sentinel') {
    return `sentinel ${redis.name} via ${redis.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  }
  return `cluster ${redis.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
}

async function writeAndRead(store: RedisStore, where: string): Promise<Finding> {
  const key = randomBytes(8).toString('hex');
  const value = randomBytes(8).toString('hex');
  try {
    await store.set(key, value, 10_000);
    const back = await store.get(key);
    await store.del(key);
    if (back !== value) throw new Error('a value written could not be read back');
    return ok(`${where} is reachable and writable`);
  } catch (error) {
    return problem(
      `${where} answers but cannot be written: ${(error as Error).message.replace(/^redis: /, '')}`,
    );
  }
}

export async function checkRedis(ctx: DoctorContext): Promise<Finding[]> {
  const { redis } = ctx.config;
  if (!redis) return [warning('REDIS_URL is unset: sessions live in memory, so run exactly one replica')];
  const where = describeRedis(redis);
  const client = createRedisClient(redis);
  let lastError = '';
  client.on('error', (error: Error) => {
    lastError = error.message;
  });
  const store = new RedisStore(client, { prefix: 'dfa:doctor:' });
  try {
    if (!(await store.ready(ctx.timeoutMs))) {
      return [problem(`${where} is not reachable${lastError ? ` (${lastError})` : ''}`)];
    }
    return [await writeAndRead(store, where)];
  } finally {
    await store.close();
  }
}

export const check: DoctorCheck = { order: 90, topic: 'redis', run: checkRedis };
