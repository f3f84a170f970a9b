import type { BoundedCache } from '../memory/budget.ts';

/**
 * At most `limit` calls to the provider per session per minute (in this process), however many
 * requests the session makes and whatever the provider answers: a failing or refusing provider is
 * never hammered by one session. Fixed one-minute windows, kept in a bounded LRU.
 */

export type BudgetAnswer = 'ok' | 'exhausted' | 'just_exhausted';

export interface Window {
  used: number;
}

const WINDOW_MS = 60_000;

export class CallBudget {
  readonly limit: number;
  readonly #windows: BoundedCache<Window>;

  /** `windows`: the per-session counters, charged to the memory budget. */
  constructor(limit: number, windows: BoundedCache<Window>) {
    this.limit = limit;
    this.#windows = windows;
  }

  /** Takes one call for `session`; `just_exhausted` the first time in a window the limit is hit. */
  take(session: string, now: number): BudgetAnswer {
    let window = this.#windows.get(session, now);
    if (!window) {
      window = { used: 0 };
      this.#windows.set(session, window, now + WINDOW_MS);
    }
    if (window.used < this.limit) {
      window.used++;
      return 'ok';
    }
    window.used++;
    return window.used === this.limit + 1 ? 'just_exhausted' : 'exhausted';
  }
}
