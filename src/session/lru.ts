/**
 * A bounded map with least-recently-used eviction and a per-entry deadline. Used for the
 * in-process caches of the hot path; whatever it holds must never outlive its deadline.
 */
export class Lru<V> {
  readonly #max: number;
  readonly #map = new Map<string, { value: V; until: number }>();

  constructor(max: number) {
    this.#max = max;
  }

  get(key: string, now: number): V | undefined {
    const hit = this.#map.get(key);
    if (hit === undefined) return undefined;
    if (hit.until <= now) {
      this.#map.delete(key);
      return undefined;
    }
    // Refresh recency only occasionally would be cheaper; correctness first.
    this.#map.delete(key);
    this.#map.set(key, hit);
    return hit.value;
  }

  /** Like get, without refreshing recency (cheaper; for the hot path). */
  peek(key: string, now: number): V | undefined {
    const hit = this.#map.get(key);
    if (hit === undefined) return undefined;
    if (hit.until <= now) {
      this.#map.delete(key);
      return undefined;
    }
    return hit.value;
  }

  set(key: string, value: V, until: number): void {
    this.#map.delete(key);
    if (this.#map.size >= this.#max) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, { value, until });
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  get size(): number {
    return this.#map.size;
  }
}
