import type { Account, CacheStats, MemoryBudget } from '../memory/budget.ts';
import { stringBytes } from '../memory/size.ts';

/** Bookkeeping per name besides the string: the Map slot. */
const ENTRY_OVERHEAD = 48;

/**
 * One copy of each group name, shared by every session whose user is in the group (issue 15: a
 * platform's users share their groups — a team's members hold the same few hundred names — and
 * 150 groups of 40 characters were 8 KB per session). A session holding the pool's copies is
 * charged a pointer for each; the pool charges each name once, to the same budget.
 *
 * The pool never gives a name up: sessions charged only pointers may hold it, and a name evicted
 * from here would be counted nowhere. It takes names while it is within its share of the budget
 * and then no more: later names stay their sessions' own, charged to them in full. So an identity
 * provider sending thousands of names no one shares fills the pool once and costs what it holds.
 */
export class GroupNames implements Account {
  readonly name = 'group-names';
  readonly share: number;
  readonly #names = new Map<string, string>();
  #budget: MemoryBudget;
  #bytes = 0;
  #hits = 0;
  #misses = 0;

  constructor(budget: MemoryBudget, share: number) {
    this.share = share;
    this.#budget = budget;
    budget.register(this);
  }

  get size(): number {
    return this.#names.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The pool's copy of `name` (added now while there is room), or undefined when it is full. */
  intern(name: string): string | undefined {
    const known = this.#names.get(name);
    if (known !== undefined) {
      this.#hits++;
      return known;
    }
    this.#misses++;
    const bytes = ENTRY_OVERHEAD + stringBytes(name);
    if (this.#bytes + bytes > this.share * this.#budget.maxBytes) return undefined;
    this.#names.set(name, name);
    this.#bytes += bytes;
    this.#budget.charged(bytes);
    return name;
  }

  stats(): CacheStats {
    return {
      name: this.name,
      bytes: this.#bytes,
      entries: this.#names.size,
      hits: this.#hits,
      misses: this.#misses,
      evictions: 0,
    };
  }

  /** Never: a name here may be held by sessions charged only a pointer for it. */
  evictOldest(): boolean {
    return false;
  }

  moveTo(budget: MemoryBudget): void {
    if (budget === this.#budget) return;
    this.#budget.unregister(this);
    this.#budget = budget;
    budget.register(this);
  }
}

/**
 * Puts the pool's copy of each name into `groups` in place (same contents: nothing anyone reads
 * changes). Returns the bytes of the names that are now the pool's, which their session is not
 * charged for again.
 */
export function internGroups(groups: readonly string[], pool: GroupNames): number {
  if (groups.length === 0 || Object.isFrozen(groups)) return 0;
  const names = groups as string[];
  let shared = 0;
  for (let i = 0; i < names.length; i++) {
    const pooled = pool.intern(names[i] as string);
    if (pooled === undefined) continue;
    names[i] = pooled;
    shared += stringBytes(pooled);
  }
  return shared;
}
