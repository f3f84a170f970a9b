import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Store } from './store.ts';

interface Entry {
  /** A string, or the fields of a hash. */
  value: string | Map<string, string>;
  expiresAt: number;
}

/**
 * In-process store for a single replica (REDIS_URL unset). Expired entries are dropped on read
 * and by a periodic sweep; the number of entries is capped so memory stays bounded.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  readonly #entries = new Map<string, Entry>();
  readonly #clock: Clock;
  readonly #maxEntries: number;
  readonly #sweeper: NodeJS.Timeout;
  readonly #channels = new Map<string, Set<(message: string) => void>>();

  constructor(options: { clock?: Clock; maxEntries?: number } = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
    this.#sweeper = setInterval(() => this.sweep(), 30_000);
    this.#sweeper.unref();
  }

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#clock.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #put(key: string, value: string | Map<string, string>, ttlMs: number): void {
    this.#entries.delete(key);
    if (this.#entries.size >= this.#maxEntries) {
      // Evict the oldest insertion: Map iteration order is insertion order.
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { value, expiresAt: this.#clock.now() + Math.max(1, ttlMs) });
  }

  async get(key: string): Promise<string | null> {
    const value = this.#live(key)?.value;
    return typeof value === 'string' ? value : null;
  }

  async getIfChanged(key: string, tail: string): Promise<string | null | false> {
    const value = await this.get(key);
    return value !== null && tail !== '' && value.endsWith(tail) ? false : value;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.#put(key, value, ttlMs);
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    if (this.#live(key)) return false;
    this.#put(key, value, ttlMs);
    return true;
  }

  async del(key: string): Promise<void> {
    this.#entries.delete(key);
  }

  async deleteIfEquals(key: string, value: string): Promise<boolean> {
    if (this.#live(key)?.value !== value) return false;
    this.#entries.delete(key);
    return true;
  }

  async expireIfEquals(key: string, value: string, ttlMs: number): Promise<boolean> {
    const entry = this.#live(key);
    if (entry?.value !== value) return false;
    entry.expiresAt = this.#clock.now() + Math.max(1, ttlMs);
    return true;
  }

  async increment(key: string, ttlMs: number): Promise<number> {
    const entry = this.#live(key);
    if (!entry) {
      this.#put(key, '1', ttlMs);
      return 1;
    }
    const next = (typeof entry.value === 'string' ? Number.parseInt(entry.value, 10) || 0 : 0) + 1;
    entry.value = String(next);
    return next;
  }

  async replaceIfEquals(
    key: string,
    expected: string | null,
    value: string,
    ttlMs: number,
  ): Promise<boolean> {
    const current = this.#live(key)?.value ?? null;
    if (current !== expected) return false;
    this.#put(key, value, ttlMs);
    return true;
  }

  async hashSet(key: string, field: string, value: string, ttlMs: number): Promise<void> {
    const entry = this.#live(key);
    if (entry && entry.value instanceof Map) {
      entry.value.set(field, value);
      entry.expiresAt = Math.max(entry.expiresAt, this.#clock.now() + Math.max(1, ttlMs));
      return;
    }
    this.#put(key, new Map([[field, value]]), ttlMs);
  }

  async hashGet(key: string, field: string): Promise<string | null> {
    const value = this.#live(key)?.value;
    return value instanceof Map ? (value.get(field) ?? null) : null;
  }

  async hashGetAll(key: string): Promise<Record<string, string>> {
    const value = this.#live(key)?.value;
    return value instanceof Map ? Object.fromEntries(value) : {};
  }

  async hashDelete(key: string, fields: readonly string[]): Promise<void> {
    const value = this.#live(key)?.value;
    if (!(value instanceof Map)) return;
    for (const field of fields) value.delete(field);
    if (value.size === 0) this.#entries.delete(key);
  }

  async ttl(key: string): Promise<number> {
    const entry = this.#live(key);
    return entry ? entry.expiresAt - this.#clock.now() : -2;
  }

  async publish(channel: string, message: string): Promise<void> {
    const listeners = this.#channels.get(channel);
    if (!listeners) return;
    // Delivered after the publisher goes on, as Redis delivers it.
    for (const listener of [...listeners]) queueMicrotask(() => listener(message));
  }

  /** In-process: every message is delivered. */
  subscriptionLive(): boolean {
    return true;
  }

  subscribe(channel: string, listener: (message: string) => void): () => void {
    let listeners = this.#channels.get(channel);
    if (!listeners) {
      listeners = new Set();
      this.#channels.set(channel, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }

  async ping(): Promise<boolean> {
    return true;
  }

  sweep(): void {
    const now = this.#clock.now();
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key);
  }

  /** Drops every entry, as a Redis restarted without persistence would (tests). */
  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#entries.clear();
    this.#channels.clear();
  }
}
