/**
 * The storage seam (DESIGN §5): a small key-value contract with expiry, implemented in memory
 * (one replica only) and on Redis. Values are opaque strings (or hashes of them, for indexes);
 * callers encrypt what is secret. Keys that belong together (one user's) carry a Redis Cluster
 * hash tag `{…}` so that they live in one slot.
 * One contract test suite (test/unit/store-contract.test.ts) runs against both.
 */
export interface Store {
  readonly kind: 'memory' | 'redis';
  get(key: string): Promise<string | null>;
  /**
   * The value, unless it still ends with `tail` (then false: what the caller holds is current,
   * and the value does not cross the wire); null when absent. One round trip either way.
   */
  getIfChanged(key: string, tail: string): Promise<string | null | false>;
  /** Sets with a time to live in milliseconds (> 0). */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Sets only when absent (SET NX PX); true when this call set it. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  del(key: string): Promise<void>;
  /** Deletes only when the current value equals `value` (lock release); true when deleted. */
  deleteIfEquals(key: string, value: string): Promise<boolean>;
  /** Extends the TTL only when the current value equals `value` (lock lease renewal). */
  expireIfEquals(key: string, value: string, ttlMs: number): Promise<boolean>;
  /**
   * Compare-and-set: writes `value` only when the current value equals `expected` (null: only when
   * absent); true when it wrote. For records several replicas may update (the token chain).
   */
  replaceIfEquals(key: string, expected: string | null, value: string, ttlMs: number): Promise<boolean>;
  /**
   * Sets one field of a hash, and extends the hash's time to live to at least `ttlMs` (never
   * shortens it). Indexes: a user's sessions, sessions by provider `sid`.
   */
  hashSet(key: string, field: string, value: string, ttlMs: number): Promise<void>;
  /** One field of a hash, or null. */
  hashGet(key: string, field: string): Promise<string | null>;
  /** Every field of a hash ({} when absent): one round trip. */
  hashGetAll(key: string): Promise<Record<string, string>>;
  hashDelete(key: string, fields: readonly string[]): Promise<void>;
  /** Increments a counter, setting its TTL when it is created; returns the new value. */
  increment(key: string, ttlMs: number): Promise<number>;
  /** Remaining TTL in ms, or -1 without one / -2 when absent. */
  ttl(key: string): Promise<number>;
  /** Tells every replica listening on `channel` (at most once: Redis pub/sub; in-process in memory). */
  publish(channel: string, message: string): Promise<void>;
  /**
   * Listens on `channel`. `onGap` runs whenever messages may have been missed (the subscription
   * connected or reconnected), so that the listener can resynchronise. Returns an unsubscribe.
   */
  subscribe(channel: string, listener: (message: string) => void, onGap?: () => void): () => void;
  /**
   * True while every message published on a subscribed channel reaches this process: the
   * subscription is connected and has been since its last gap (Redis pub/sub delivers on a live
   * connection and drops a subscriber it cannot keep up with, which is a gap). Absent: never.
   */
  subscriptionLive?(): boolean;
  /** True when the backing store answers. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** Thrown by stores when the backend cannot be reached: callers degrade, never log users out. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
