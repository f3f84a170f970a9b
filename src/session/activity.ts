import type { BoundedCache } from '../memory/budget.ts';
import type { Store } from './store.ts';

/**
 * When each session was last used, for SESSION_IDLE_TIMEOUT (issue 11 item 8). Every replica
 * notes uses in memory (a field update: it runs on the hot path) and writes the time to the store
 * at most once per `intervalMs` per session, so the store sees no write on the hot path. A replica
 * reads the shared time only when it has not itself seen the session for the idle timeout.
 *
 * "Redis lost its data: nobody logged out" holds: a session whose time is missing from the store
 * (flushed, restarted empty) or cannot be read (Redis down) is never called idle.
 */

export interface Seen {
  /** Last use seen by this replica, ms. */
  at: number;
  /** When this replica last wrote the time to the store, ms. */
  written: number;
}

const key = (lookup: string) => `ls:${lookup}`;

export class Activity {
  readonly #store: Store;
  readonly #idleMs: number;
  readonly #intervalMs: number;
  readonly #seen: BoundedCache<Seen>;

  /** `seen`: the cache of last uses (lookup → times), charged to the memory budget. */
  constructor(options: { store: Store; idleMs: number; seen: BoundedCache<Seen>; intervalMs?: number }) {
    this.#store = options.store;
    this.#idleMs = options.idleMs;
    // Precision of the timeout: an eighth of it, between 250 ms and 5 minutes.
    this.#intervalMs = options.intervalMs ?? Math.min(300_000, Math.max(250, options.idleMs / 8));
    this.#seen = options.seen;
  }

  get idleMs(): number {
    return this.#idleMs;
  }

  /** A use of the session now. At most one store write per interval; never waits for it. */
  touch(lookup: string, sessionEnd: number, now: number): void {
    let seen = this.#seen.peek(lookup, now);
    if (seen === undefined) {
      seen = { at: now, written: Number.NEGATIVE_INFINITY };
      this.#seen.set(lookup, seen, sessionEnd);
    } else if (now > seen.at) {
      seen.at = now;
    }
    if (now - seen.written < this.#intervalMs || sessionEnd <= now) return;
    seen.written = now;
    this.#store.set(key(lookup), String(now), sessionEnd - now).catch(() => undefined);
  }

  /** Records the login itself (awaited, so that another replica's first look finds it). */
  async started(lookup: string, sessionEnd: number, now: number): Promise<void> {
    this.#seen.set(lookup, { at: now, written: now }, sessionEnd);
    await this.#store.set(key(lookup), String(now), Math.max(1, sessionEnd - now)).catch(() => undefined);
  }

  /** Whether nobody used the session for the idle timeout, on any replica. */
  async isIdle(lookup: string, now: number): Promise<boolean> {
    const seen = this.#seen.peek(lookup, now);
    if (seen !== undefined && now - seen.at < this.#idleMs) return false;
    let stored: string | null;
    try {
      stored = await this.#store.get(key(lookup));
    } catch {
      return false; // Redis down: never a reason to end a session
    }
    const shared = stored === null ? Number.NaN : Number(stored);
    if (!Number.isFinite(shared)) return false; // unknown (Redis lost its data): not idle
    return now - Math.max(shared, seen?.at ?? shared) >= this.#idleMs;
  }

  forget(lookup: string): void {
    this.#seen.delete(lookup);
  }

  clear(): void {
    this.#seen.clear();
  }
}
