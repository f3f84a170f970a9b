import { type Account, type BoundedCache, type CacheOptions, MemoryBudget } from './budget.ts';

/**
 * Memos that belong to a module rather than to an app (compiled URL patterns, CEL regular
 * expressions, validated hosts): bounded by bytes like every cache, under a budget of their own
 * until an app's budget adopts them (buildDeps), from then on charged to and evicted by it.
 */
const unadopted = new MemoryBudget(16 * 1024 * 1024);
const memos: Account[] = [];

export function sharedMemo<V>(name: string, options: CacheOptions<V>): BoundedCache<V> {
  const cache = unadopted.cache(name, options);
  memos.push(cache);
  return cache;
}

/** Puts every module memo under `budget` (the last app built in a process owns them). */
export function adoptSharedMemos(budget: MemoryBudget): void {
  for (const memo of memos) budget.adopt(memo);
}

/** Memos never expire by time: they hold what a pure function computed. */
export const FOREVER = Number.POSITIVE_INFINITY;
