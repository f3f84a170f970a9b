import { Counter, Gauge, type Registry } from 'prom-client';
import type { MemoryBudget } from './budget.ts';

/**
 * The memory budget in Prometheus terms, read at each scrape: bytes and entries per cache, the
 * budget's limit, and per cache the hits, misses and evictions so far.
 */
export function registerCacheMetrics(registry: Registry, budget: MemoryBudget): void {
  const prefix = 'dex_forward_auth_cache_';
  new Gauge({
    name: `${prefix}max_bytes`,
    help: 'The byte budget of all in-process caches together (CACHE_MAX_BYTES).',
    registers: [registry],
    collect() {
      this.set(budget.maxBytes);
    },
  });
  const perCache = (
    name: string,
    help: string,
    read: (s: ReturnType<MemoryBudget['stats']>[number]) => number,
  ) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames: ['cache'],
      registers: [registry],
      collect() {
        for (const stats of budget.stats()) this.set({ cache: stats.name }, read(stats));
      },
    });
  perCache('bytes', 'Estimated bytes an in-process cache holds, by cache.', (s) => s.bytes);
  perCache('entries', 'Entries an in-process cache holds, by cache.', (s) => s.entries);
  const counter = (
    name: string,
    help: string,
    read: (s: ReturnType<MemoryBudget['stats']>[number]) => number,
  ) =>
    new Counter({
      name: `${prefix}${name}_total`,
      help,
      labelNames: ['cache'],
      registers: [registry],
      collect() {
        this.reset();
        for (const stats of budget.stats()) this.inc({ cache: stats.name }, read(stats));
      },
    });
  counter('hits', 'Look-ups an in-process cache answered, by cache.', (s) => s.hits);
  counter(
    'misses',
    'Look-ups an in-process cache could not answer (absent or expired), by cache.',
    (s) => s.misses,
  );
  counter(
    'evictions',
    'Entries an in-process cache gave up to stay within the byte budget, by cache.',
    (s) => s.evictions,
  );
}
