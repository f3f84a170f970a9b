import type { BoundedCache } from '../memory/budget.ts';
import type { Store } from './store.ts';
import type { UserStore } from './users.ts';

/**
 * When each session was last used: the "last seen" of a user's session list, and
 * SESSION_IDLE_TIMEOUT (issue 11 item 8). Every replica notes uses in memory (a field update: it
 * runs on the hot path) and writes the time to the store at most once per `intervalMs` per
 * session, so the store sees no write on the hot path. A replica reads the shared time only when
 * it has not itself seen the session for the idle timeout.
 *
 * The time goes into the user's session list (users.ts) when the session's user is known, else
 * (a session from before the list existed) under `ls:<session>`.
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

const legacyKey = (lookup: string) => `ls:${lookup}`;

export interface ActivityOptions {
  readonly store: Store;
  readonly users: Pick<UserStore, 'noteSeen' | 'lastSeen'>;
  /** 0: no idle timeout (uses are still noted, for the session list). */
  readonly idleMs: number;
  readonly seen: BoundedCache<Seen>;
  readonly intervalMs?: number;
}

export class Activity {
  readonly #store: Store;
  readonly #users: Pick<UserStore, 'noteSeen' | 'lastSeen'>;
  readonly #idleMs: number;
  readonly #intervalMs: number;
  readonly #seen: BoundedCache<Seen>;

  constructor(options: ActivityOptions) {
    this.#store = options.store;
    this.#users = options.users;
    this.#idleMs = options.idleMs;
    // Precision: an eighth of the idle timeout, between 250 ms and 5 minutes (5 minutes without one).
    this.#intervalMs =
      options.intervalMs ??
      (options.idleMs > 0 ? Math.min(300_000, Math.max(250, options.idleMs / 8)) : 300_000);
    this.#seen = options.seen;
  }

  get idleMs(): number {
    return this.#idleMs;
  }

  /** A use of the session now. At most one store write per interval; never waits for it. */
  touch(lookup: string, sub: string | undefined, sessionEnd: number, now: number): void {
    let seen = this.#seen.peek(lookup, now);
    if (seen === undefined) {
      seen = { at: now, written: Number.NEGATIVE_INFINITY };
      this.#seen.set(lookup, seen, sessionEnd);
    } else if (now > seen.at) {
      seen.at = now;
    }
    if (now - seen.written < this.#intervalMs || sessionEnd <= now) return;
    seen.written = now;
    this.#write(lookup, sub, now, sessionEnd).catch(() => undefined);
  }

  /** Records the login itself (awaited, so that another replica's first look finds it). */
  async started(lookup: string, sub: string | undefined, sessionEnd: number, now: number): Promise<void> {
    this.#seen.set(lookup, { at: now, written: now }, sessionEnd);
    await this.#write(lookup, sub, now, sessionEnd).catch(() => undefined);
  }

  /** Whether nobody used the session for the idle timeout, on any replica (never without one). */
  async isIdle(lookup: string, sub: string | undefined, now: number): Promise<boolean> {
    if (this.#idleMs <= 0) return false;
    const seen = this.#seen.peek(lookup, now);
    if (seen !== undefined && now - seen.at < this.#idleMs) return false;
    let shared: number | undefined;
    try {
      shared = await this.#read(lookup, sub);
    } catch {
      return false; // Redis down: never a reason to end a session
    }
    if (shared === undefined) return false; // unknown (Redis lost its data): not idle
    const last = Math.max(shared, seen?.at ?? shared);
    if (now - last >= this.#idleMs) return true;
    // The store holds a use that recent: the touch that follows this resolution need not write
    // one again before the interval is over (issue 15: a session evicted from this replica's
    // memory wrote its last use at every read back, one more Redis call per cache miss).
    if (seen === undefined) this.#seen.set(lookup, { at: last, written: shared }, now + this.#idleMs);
    else seen.written = Math.max(seen.written, shared);
    return false;
  }

  forget(lookup: string): void {
    this.#seen.delete(lookup);
  }

  clear(): void {
    this.#seen.clear();
  }

  #write(lookup: string, sub: string | undefined, at: number, sessionEnd: number): Promise<void> {
    if (sub !== undefined) return this.#users.noteSeen(sub, lookup, at, sessionEnd);
    return this.#store.set(legacyKey(lookup), String(at), Math.max(1, sessionEnd - at));
  }

  async #read(lookup: string, sub: string | undefined): Promise<number | undefined> {
    if (sub !== undefined) {
      const at = await this.#users.lastSeen(sub, lookup);
      if (at !== undefined) return at;
    }
    const stored = await this.#store.get(legacyKey(lookup));
    const at = stored === null ? Number.NaN : Number(stored);
    return Number.isFinite(at) ? at : undefined;
  }
}
