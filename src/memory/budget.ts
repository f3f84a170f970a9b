import { getHeapStatistics } from 'node:v8';
import { stringBytes } from './size.ts';

/**
 * One memory budget for every in-process cache, in bytes (issue 11 item 14, issue 15). Each cache
 * charges an estimate of its entries' bytes (size.ts) and keeps them in least-recently-used order;
 * when the budget is over, the cache furthest over its share gives up its least recently used
 * entries until the budget holds. A cache may use more than its share while others leave theirs
 * unused. Nothing a cache holds may be needed for correctness: an evicted session is read from
 * the store again, an evicted memo computed again.
 */

export interface CacheStats {
  readonly name: string;
  readonly bytes: number;
  readonly entries: number;
  readonly hits: number;
  readonly misses: number;
  readonly evictions: number;
}

export interface CacheOptions<V> {
  /** The fraction of the budget this cache is pushed back to under pressure (0 < share ≤ 1). */
  readonly share: number;
  /** Bytes of one entry's value (the key and the bookkeeping are added). */
  readonly sizeOf: (value: V) => number;
}

/** The default budget: a quarter of V8's heap limit (`--max-old-space-size` plus the young generation). */
export function defaultBudgetBytes(): number {
  return Math.floor(getHeapStatistics().heap_size_limit / 4);
}

/** What the budget sees of a cache. */
export interface Account {
  readonly name: string;
  readonly share: number;
  readonly size: number;
  readonly bytes: number;
  stats(): CacheStats;
  evictOldest(): boolean;
  moveTo(budget: MemoryBudget): void;
}

/** Bookkeeping per entry besides key and value: the Map slot and the node object. */
const ENTRY_OVERHEAD = 80;

interface Node<V> {
  value: V;
  until: number;
  bytes: number;
}

/** A bounded map with LRU order and a deadline per entry, charged to a MemoryBudget. */
export class BoundedCache<V> implements Account {
  readonly name: string;
  readonly share: number;
  readonly #sizeOf: (value: V) => number;
  readonly #map = new Map<string, Node<V>>();
  #budget: MemoryBudget;
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  constructor(budget: MemoryBudget, name: string, options: CacheOptions<V>) {
    this.name = name;
    this.share = options.share;
    this.#sizeOf = options.sizeOf;
    this.#budget = budget;
    budget.register(this);
  }

  /** The value, refreshing its recency; undefined when absent or past its deadline. */
  get(key: string, now: number): V | undefined {
    const node = this.#live(key, now);
    if (node === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, node);
    return node.value;
  }

  /** Like get, without refreshing recency (cheaper; for the hot path). */
  peek(key: string, now: number): V | undefined {
    return this.#live(key, now)?.value;
  }

  /** Stores `value` until `until` (ms); evicts elsewhere if the budget is over. */
  set(key: string, value: V, until: number): void {
    this.#drop(key);
    const bytes = ENTRY_OVERHEAD + stringBytes(key) + this.#sizeOf(value);
    this.#map.set(key, { value, until, bytes });
    this.#charge(bytes);
  }

  /** Charges an entry again after its value grew or shrank in place. */
  resize(key: string): void {
    const node = this.#map.get(key);
    if (node === undefined) return;
    const bytes = ENTRY_OVERHEAD + stringBytes(key) + this.#sizeOf(node.value);
    this.#charge(bytes - node.bytes);
    node.bytes = bytes;
  }

  delete(key: string): void {
    this.#drop(key);
  }

  clear(): void {
    this.#map.clear();
    this.#charge(-this.#bytes);
  }

  get size(): number {
    return this.#map.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  stats(): CacheStats {
    return {
      name: this.name,
      bytes: this.#bytes,
      entries: this.#map.size,
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
    };
  }

  /** Drops the least recently used entry; false when empty. Called by the budget. */
  evictOldest(): boolean {
    const oldest = this.#map.keys().next();
    if (oldest.done) return false;
    this.#drop(oldest.value);
    this.#evictions++;
    return true;
  }

  /** Moves this cache's charge to another budget (a process-wide memo adopted by an app's budget). */
  moveTo(budget: MemoryBudget): void {
    if (budget === this.#budget) return;
    this.#budget.unregister(this);
    this.#budget = budget;
    budget.register(this);
  }

  #live(key: string, now: number): Node<V> | undefined {
    const node = this.#map.get(key);
    if (node === undefined) {
      this.#misses++;
      return undefined;
    }
    if (node.until <= now) {
      this.#drop(key);
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    return node;
  }

  #drop(key: string): void {
    const node = this.#map.get(key);
    if (node === undefined) return;
    this.#map.delete(key);
    this.#charge(-node.bytes);
  }

  #charge(delta: number): void {
    this.#bytes += delta;
    this.#budget.charged(delta);
  }
}

export class MemoryBudget {
  #maxBytes: number;
  #used = 0;
  readonly #caches = new Set<Account>();

  constructor(maxBytes: number = defaultBudgetBytes()) {
    this.#maxBytes = maxBytes;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  get usedBytes(): number {
    return this.#used;
  }

  /** A new cache charged to this budget. */
  cache<V>(name: string, options: CacheOptions<V>): BoundedCache<V> {
    return new BoundedCache<V>(this, name, options);
  }

  /** Takes over a cache created elsewhere (process-wide memos: compiled patterns, hosts). */
  adopt(cache: Account): void {
    cache.moveTo(this);
  }

  setMaxBytes(bytes: number): void {
    this.#maxBytes = bytes;
    this.#shrink();
  }

  stats(): CacheStats[] {
    return [...this.#caches].map((c) => c.stats());
  }

  register(cache: Account): void {
    this.#caches.add(cache);
    this.#used += cache.bytes;
    this.#shrink();
  }

  unregister(cache: Account): void {
    if (this.#caches.delete(cache)) this.#used -= cache.bytes;
  }

  charged(delta: number): void {
    this.#used += delta;
    if (delta > 0 && this.#used > this.#maxBytes) this.#shrink();
  }

  /**
   * Evicts from the cache furthest over its share until the budget holds. An account that gives
   * nothing up (the group-names pool: bounded by its share on its own) is passed over.
   */
  #shrink(): void {
    const spent = new Set<Account>();
    while (this.#used > this.#maxBytes) {
      let victim: Account | undefined;
      let worst = -1;
      for (const cache of this.#caches) {
        if (cache.size === 0 || spent.has(cache)) continue;
        const ratio = cache.bytes / (cache.share * this.#maxBytes);
        if (ratio > worst) {
          worst = ratio;
          victim = cache;
        }
      }
      if (victim === undefined) return;
      if (!victim.evictOldest()) spent.add(victim);
    }
  }
}
