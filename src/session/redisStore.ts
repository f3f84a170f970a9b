import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisSettings } from '../config.ts';
import type { Logger } from '../log.ts';
import { type Store, StoreUnavailableError } from './store.ts';

const DELETE_IF_EQUALS = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const EXPIRE_IF_EQUALS = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const REPLACE_IF_EQUALS = `local c = redis.call('GET', KEYS[1]) if (ARGV[1] == 'absent' and not c) or (ARGV[1] == 'equals' and c == ARGV[2]) then redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]) return 1 else return 0 end`;
const HASH_SET = `redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) local t = redis.call('PTTL', KEYS[1]) if t < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end return 1`;
const GET_IF_CHANGED = `local v = redis.call('GET', KEYS[1]) if v and #ARGV[1] > 0 and string.sub(v, -#ARGV[1]) == ARGV[1] then return 0 end return v`;
const INCREMENT = `local v = redis.call('INCR', KEYS[1]) if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return v`;

type Client = Redis | Cluster;

interface Scripts {
  dfaDeleteIfEquals(key: string, value: string): Promise<number>;
  dfaExpireIfEquals(key: string, value: string, ttl: number): Promise<number>;
  dfaIncrement(key: string, ttl: number): Promise<number>;
  dfaGetIfChanged(key: string, tail: string): Promise<string | number | null>;
  dfaReplaceIfEquals(
    key: string,
    mode: string,
    expected: string,
    value: string,
    ttl: number,
  ): Promise<number>;
  dfaHashSet(key: string, field: string, value: string, ttl: number): Promise<number>;
}

/** Builds the ioredis client for single, Sentinel or Cluster deployments (DESIGN §8). */
export function createRedisClient(settings: RedisSettings): Client {
  // Fail fast while Redis is away (no offline queue, one short retry): callers degrade instead
  // of piling up requests. Reconnect in the background with a capped back-off.
  const common: RedisOptions = {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 1_000,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 4), 1_000),
    lazyConnect: false,
    ...(settings.username ? { username: settings.username } : {}),
    ...(settings.password ? { password: settings.password } : {}),
  };
  switch (settings.mode) {
    case 'single':
      return new Redis(settings.url, common);
    case 'sentinel':
      return new Redis({
        ...common,
        sentinels: settings.sentinels.map((s) => ({ host: s.host, port: s.port })),
        name: settings.name,
        ...(settings.password ? { sentinelPassword: settings.password } : {}),
        ...(settings.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
      });
    case 'cluster':
      return new Cluster(
        settings.nodes.map((n) => ({ host: n.host, port: n.port })),
        {
          enableAutoPipelining: true,
          enableOfflineQueue: false,
          clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 4), 1_000),
          redisOptions: { ...common, ...(settings.tls ? { tls: {} } : {}) },
        },
      );
  }
}

/** The Store on Redis. Every failure surfaces as StoreUnavailableError. */
export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  readonly #client: Client & Scripts;
  readonly #prefix: string;
  readonly #observe: ((operation: string, seconds: number, ok: boolean) => void) | undefined;
  /** A second connection for pub/sub (a subscribed connection can do nothing else), made on demand. */
  #subscriber: Client | undefined;
  readonly #listeners = new Map<string, Set<(message: string) => void>>();
  readonly #gapListeners = new Set<() => void>();

  constructor(
    client: Client,
    options: {
      prefix?: string;
      log?: Logger;
      /** Told about every command's round trip (metrics). */
      observe?: (operation: string, seconds: number, ok: boolean) => void;
    } = {},
  ) {
    this.#prefix = options.prefix ?? 'dfa:';
    this.#observe = options.observe;
    client.defineCommand('dfaDeleteIfEquals', { numberOfKeys: 1, lua: DELETE_IF_EQUALS });
    client.defineCommand('dfaExpireIfEquals', { numberOfKeys: 1, lua: EXPIRE_IF_EQUALS });
    client.defineCommand('dfaIncrement', { numberOfKeys: 1, lua: INCREMENT });
    client.defineCommand('dfaGetIfChanged', { numberOfKeys: 1, lua: GET_IF_CHANGED });
    client.defineCommand('dfaReplaceIfEquals', { numberOfKeys: 1, lua: REPLACE_IF_EQUALS });
    client.defineCommand('dfaHashSet', { numberOfKeys: 1, lua: HASH_SET });
    let lastLogged = 0;
    client.on('error', (error: Error) => {
      // ioredis emits an error per reconnect attempt; log at most every 10 s.
      const now = Date.now();
      if (now - lastLogged > 10_000) {
        lastLogged = now;
        options.log?.warn({ err: { message: error.message } }, 'redis unavailable');
      }
    });
    this.#client = client as Client & Scripts;
  }

  get client(): Client {
    return this.#client;
  }

  async #run<T>(operation: string, op: () => Promise<T>): Promise<T> {
    const started = this.#observe ? performance.now() : 0;
    try {
      const result = await op();
      this.#observe?.(operation, (performance.now() - started) / 1000, true);
      return result;
    } catch (error) {
      this.#observe?.(operation, (performance.now() - started) / 1000, false);
      throw new StoreUnavailableError(`redis: ${(error as Error).message}`, { cause: error });
    }
  }

  get(key: string): Promise<string | null> {
    return this.#run('get', () => this.#client.get(this.#prefix + key));
  }

  async getIfChanged(key: string, tail: string): Promise<string | null | false> {
    const value = await this.#run('get', () => this.#client.dfaGetIfChanged(this.#prefix + key, tail));
    return typeof value === 'number' ? false : value;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.#run('set', () =>
      this.#client.set(this.#prefix + key, value, 'PX', Math.max(1, Math.ceil(ttlMs))),
    );
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    const result = await this.#run('setIfAbsent', () =>
      this.#client.set(this.#prefix + key, value, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX'),
    );
    return result === 'OK';
  }

  async del(key: string): Promise<void> {
    await this.#run('del', () => this.#client.del(this.#prefix + key));
  }

  async deleteIfEquals(key: string, value: string): Promise<boolean> {
    return (
      (await this.#run('deleteIfEquals', () => this.#client.dfaDeleteIfEquals(this.#prefix + key, value))) ===
      1
    );
  }

  async expireIfEquals(key: string, value: string, ttlMs: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    return (
      (await this.#run('expireIfEquals', () =>
        this.#client.dfaExpireIfEquals(this.#prefix + key, value, ttl),
      )) === 1
    );
  }

  async replaceIfEquals(
    key: string,
    expected: string | null,
    value: string,
    ttlMs: number,
  ): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const mode = expected === null ? 'absent' : 'equals';
    return (
      (await this.#run('replaceIfEquals', () =>
        this.#client.dfaReplaceIfEquals(this.#prefix + key, mode, expected ?? '', value, ttl),
      )) === 1
    );
  }

  async hashSet(key: string, field: string, value: string, ttlMs: number): Promise<void> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    await this.#run('hashSet', () => this.#client.dfaHashSet(this.#prefix + key, field, value, ttl));
  }

  hashGet(key: string, field: string): Promise<string | null> {
    return this.#run('hashGet', () => this.#client.hget(this.#prefix + key, field));
  }

  hashGetAll(key: string): Promise<Record<string, string>> {
    return this.#run('hashGetAll', () => this.#client.hgetall(this.#prefix + key));
  }

  async hashDelete(key: string, fields: readonly string[]): Promise<void> {
    if (fields.length === 0) return;
    await this.#run('hashDelete', () => this.#client.hdel(this.#prefix + key, ...fields));
  }

  increment(key: string, ttlMs: number): Promise<number> {
    return this.#run('increment', () =>
      this.#client.dfaIncrement(this.#prefix + key, Math.max(1, Math.ceil(ttlMs))),
    );
  }

  ttl(key: string): Promise<number> {
    return this.#run('ttl', () => this.#client.pttl(this.#prefix + key));
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#run('publish', () => this.#client.publish(this.#prefix + channel, message));
  }

  subscribe(channel: string, listener: (message: string) => void, onGap?: () => void): () => void {
    const subscriber = this.#subscriberConnection();
    const name = this.#prefix + channel;
    let listeners = this.#listeners.get(name);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(name, listeners);
      // Queued until connected; ioredis subscribes again by itself after every reconnect.
      subscriber.subscribe(name).catch(() => undefined);
    }
    listeners.add(listener);
    if (onGap) this.#gapListeners.add(onGap);
    return () => {
      listeners.delete(listener);
      if (onGap) this.#gapListeners.delete(onGap);
    };
  }

  subscriptionLive(): boolean {
    return this.#subscriber?.status === 'ready';
  }

  #subscriberConnection(): Client {
    if (this.#subscriber) return this.#subscriber;
    const client = this.#client;
    const subscriber =
      client instanceof Cluster
        ? client.duplicate(undefined, { enableOfflineQueue: true })
        : client.duplicate({
            enableOfflineQueue: true,
            maxRetriesPerRequest: null,
            commandTimeout: undefined,
          });
    subscriber.on('error', () => undefined); // the command connection logs Redis outages
    subscriber.on('message', (channel: string, message: string) => {
      for (const listener of this.#listeners.get(channel) ?? []) listener(message);
    });
    // Every (re)connection may follow a time in which messages were lost.
    subscriber.on('ready', () => {
      for (const onGap of this.#gapListeners) onGap();
    });
    this.#subscriber = subscriber;
    return subscriber;
  }

  /** Resolves when connected, or after `timeoutMs` (start-up never waits on Redis for long). */
  async ready(timeoutMs = 2_000): Promise<boolean> {
    if (this.#client.status === 'ready') return true;
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#client.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#client.once('ready', onReady);
    });
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.#run('ping', () => this.#client.ping())) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.#subscriber?.disconnect();
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
  }
}
