import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { defaultBudgetBytes, MemoryBudget } from '../../src/memory/budget.ts';
import { registerCacheMetrics } from '../../src/memory/metrics.ts';
import { estimateBytes, stringBytes } from '../../src/memory/size.ts';
import { GroupNames } from '../../src/session/groupNames.ts';

/**
 * One byte budget for every in-process cache (src/memory/): entries are charged by an estimate of
 * their bytes, the total never exceeds the budget, least recently used entries go first, and the
 * cache furthest over its share gives them up.
 */

const kib = (n: number) => 'x'.repeat(n * 1024);

describe('the memory budget', () => {
  it('passes over an account that gives nothing up (the group-names pool) and evicts the others until it holds', () => {
    const budget = new MemoryBudget(10_000);
    const pool = new GroupNames(budget, 0.1);
    for (let i = 0; pool.intern(`group-${String(i).padStart(30, '0')}`) !== undefined; i++);
    const held = pool.size;
    expect(pool.bytes).toBeLessThanOrEqual(1_000);
    const cache = budget.cache<string>('other', { share: 0.9, sizeOf: stringBytes });
    for (let i = 0; i < 20; i++) cache.set(`k${i}`, 'v'.repeat(100), Number.POSITIVE_INFINITY);
    // Shrunk, the pool is furthest over its share; it keeps its names, the other cache pays.
    budget.setMaxBytes(3_000);
    expect(budget.usedBytes).toBeLessThanOrEqual(3_000);
    expect(pool.size).toBe(held);
    expect(cache.size).toBeGreaterThan(0);
    expect(cache.size).toBeLessThan(20);
  });

  it('charges key and value bytes and never holds more than its limit, evicting the least recently used', () => {
    const budget = new MemoryBudget(64 * 1024);
    const cache = budget.cache<string>('c', { share: 1, sizeOf: stringBytes });
    for (let i = 0; i < 200; i++) {
      cache.set(`k${i}`, kib(1), Number.POSITIVE_INFINITY);
      expect(budget.usedBytes).toBeLessThanOrEqual(budget.maxBytes);
    }
    expect(cache.size).toBeGreaterThan(40);
    expect(cache.size).toBeLessThan(64);
    expect(cache.peek('k0', 0)).toBeUndefined(); // the oldest went first
    expect(cache.peek('k199', 0)).toBeDefined();
    expect(cache.stats().evictions).toBe(200 - cache.size);
    expect(cache.bytes).toBe(budget.usedBytes);
  });

  it('keeps what is used: get() makes an entry recent, peek() does not', () => {
    const budget = new MemoryBudget(8 * 1024);
    const cache = budget.cache<string>('c', { share: 1, sizeOf: stringBytes });
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, kib(1), Number.POSITIVE_INFINITY);
    cache.get('a', 0);
    cache.peek('b', 0);
    for (const k of ['e', 'f', 'g', 'h']) cache.set(k, kib(1), Number.POSITIVE_INFINITY);
    expect(cache.peek('a', 0)).toBeDefined();
    expect(cache.peek('b', 0)).toBeUndefined();
  });

  it('counts hits and misses, an entry past its deadline as a miss, and frees its bytes', () => {
    const budget = new MemoryBudget(1024 * 1024);
    const cache = budget.cache<string>('c', { share: 1, sizeOf: stringBytes });
    cache.set('a', 'value', 100);
    expect(cache.get('a', 99)).toBe('value');
    expect(cache.get('a', 100)).toBeUndefined();
    expect(cache.get('nothing', 0)).toBeUndefined();
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2, entries: 0, bytes: 0 });
    expect(budget.usedBytes).toBe(0);
  });

  it('under pressure, takes from the cache furthest over its share and leaves a cache within its share alone', () => {
    const budget = new MemoryBudget(100 * 1024);
    const big = budget.cache<string>('big', { share: 0.5, sizeOf: stringBytes });
    const small = budget.cache<string>('small', { share: 0.5, sizeOf: stringBytes });
    for (let i = 0; i < 20; i++) small.set(`s${i}`, kib(1), Number.POSITIVE_INFINITY);
    for (let i = 0; i < 500; i++) big.set(`b${i}`, kib(1), Number.POSITIVE_INFINITY);
    expect(small.size).toBe(20);
    expect(small.stats().evictions).toBe(0);
    expect(big.stats().evictions).toBeGreaterThan(400);
    expect(budget.usedBytes).toBeLessThanOrEqual(budget.maxBytes);
  });

  it('re-charges an entry that grew in place', () => {
    const budget = new MemoryBudget(1024 * 1024);
    const cache = budget.cache<{ parts: string[] }>('c', { share: 1, sizeOf: (v) => estimateBytes(v) });
    const value = { parts: ['a'] };
    cache.set('k', value, Number.POSITIVE_INFINITY);
    const before = budget.usedBytes;
    value.parts.push(kib(4));
    cache.resize('k');
    expect(budget.usedBytes - before).toBeGreaterThan(4 * 1024);
  });

  it('adopts a cache made under another budget, with its bytes, and can shrink to a new limit', () => {
    const home = new MemoryBudget(1024 * 1024);
    const memo = home.cache<string>('memo', { share: 0.1, sizeOf: stringBytes });
    for (let i = 0; i < 10; i++) memo.set(`m${i}`, kib(1), Number.POSITIVE_INFINITY);
    const app = new MemoryBudget(1024 * 1024);
    app.adopt(memo);
    expect(home.usedBytes).toBe(0);
    expect(app.usedBytes).toBe(memo.bytes);
    app.setMaxBytes(4 * 1024);
    expect(app.usedBytes).toBeLessThanOrEqual(4 * 1024);
  });

  it('estimates a session-sized identity by its strings: 150 groups of 40 characters are about 8 KB', () => {
    const groups = Array.from({ length: 150 }, (_, i) => `group-${String(i).padStart(33, '0')}`);
    const bytes = estimateBytes({ sub: 's', user: 'u@example.com', groups });
    expect(bytes).toBeGreaterThan(150 * 40);
    expect(bytes).toBeLessThan(150 * 40 * 2);
    // Characters beyond Latin-1 take two bytes each.
    expect(stringBytes('é'.repeat(100))).toBe(116);
    expect(stringBytes('€'.repeat(100))).toBe(216);
  });

  it('defaults to a quarter of the V8 heap limit', () => {
    expect(new MemoryBudget().maxBytes).toBe(defaultBudgetBytes());
    expect(defaultBudgetBytes()).toBeGreaterThan(10 * 1024 * 1024);
  });

  it('is exported as metrics: the limit, bytes and entries per cache, hits, misses and evictions', async () => {
    const budget = new MemoryBudget(4 * 1024);
    const cache = budget.cache<string>('sessions', { share: 1, sizeOf: stringBytes });
    for (let i = 0; i < 10; i++) cache.set(`k${i}`, kib(1), Number.POSITIVE_INFINITY);
    cache.get('k9', 0);
    cache.get('k0', 0);
    const registry = new Registry();
    registerCacheMetrics(registry, budget);
    const text = await registry.metrics();
    expect(text).toMatch(/^dex_forward_auth_cache_max_bytes 4096$/m);
    expect(text).toMatch(/^dex_forward_auth_cache_bytes\{cache="sessions"\} \d+$/m);
    expect(text).toMatch(/^dex_forward_auth_cache_entries\{cache="sessions"\} [1-3]$/m);
    expect(text).toMatch(/^dex_forward_auth_cache_hits_total\{cache="sessions"\} 1$/m);
    expect(text).toMatch(/^dex_forward_auth_cache_misses_total\{cache="sessions"\} 1$/m);
    expect(text).toMatch(/^dex_forward_auth_cache_evictions_total\{cache="sessions"\} [7-9]$/m);
  });
});

describe('CACHE_MAX_BYTES', () => {
  const base = {
    OIDC_ISSUER_URL: 'https://dex.example.com/',
    OIDC_CLIENT_ID: 'c',
    OIDC_CLIENT_SECRET: 's',
    COOKIE_SECRET: 'unit-test-cookie-secret-4f9a2c7e1b8d3056',
  };

  it('takes Kubernetes quantities and plain bytes; unset or auto leaves the heap-derived default', () => {
    expect(loadConfig({ ...base, CACHE_MAX_BYTES: '64Mi' }).cacheMaxBytes).toBe(64 * 1024 * 1024);
    expect(loadConfig({ ...base, CACHE_MAX_BYTES: '100M' }).cacheMaxBytes).toBe(100_000_000);
    expect(loadConfig({ ...base, CACHE_MAX_BYTES: '2097152' }).cacheMaxBytes).toBe(2 * 1024 * 1024);
    expect(loadConfig({ ...base, CACHE_MAX_BYTES: 'auto' }).cacheMaxBytes).toBeUndefined();
    expect(loadConfig(base).cacheMaxBytes).toBeUndefined();
  });

  it('refuses what is no size, or less than 1 MiB, naming the setting', () => {
    expect(() => loadConfig({ ...base, CACHE_MAX_BYTES: 'lots' })).toThrow(/CACHE_MAX_BYTES must be a size/);
    expect(() => loadConfig({ ...base, CACHE_MAX_BYTES: '10k' })).toThrow(/CACHE_MAX_BYTES must be at least/);
  });
});
