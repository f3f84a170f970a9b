import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { BoundedCache } from '../memory/budget.ts';
import type { RecordStore } from './recordStore.ts';
import type { Store } from './store.ts';

/**
 * Ended sessions (sign-out, idle timeout) and how the end outlives Redis (issue 11 item 6):
 *
 * 1. at the provider (`action`): the user's refresh token is revoked (RFC 7009) or spent when
 *    this was the user's last session, or the user's token chain is moved on (rotated) when other
 *    sessions of the user go on — either way the refresh token in a kept copy of the cookie is
 *    of no more use, not even after Redis lost every key and every replica restarted;
 * 2. in Redis: a tombstone `so:<lookup>` until the session's absolute end, and the record deleted;
 * 3. on every replica: a message on the `session-ended` channel makes each drop its caches for the
 *    session and keep a tombstone of its own in memory, which outlives a Redis restart (and is
 *    written back to an empty Redis when the cookie comes again). A replica that may have missed
 *    messages (its subscription reconnected) drops all its caches and asks Redis again.
 *
 * What the store or the provider could not take right away is retried in the background.
 */

export const ENDED_CHANNEL = 'session-ended';

/** What ending a session asks of the provider; its answer is logged. Throws when it must be retried. */
export type ProviderAction = () => Promise<string>;

export interface Ending {
  readonly lookup: string;
  /** The session's absolute end, ms: tombstones are kept until then. */
  readonly until: number;
  /** Revoke or rotate at the provider; undefined when there is nothing to do there. */
  readonly action: ProviderAction | undefined;
}

interface Pending extends Ending {
  stored: boolean;
  /** Told the other replicas (pub/sub). */
  announced: boolean;
  revoked: boolean;
  attempts: number;
  /** The provider call in flight (never two at once for one token). */
  revoking: Promise<void> | undefined;
}

export interface EndingsOptions {
  /** The pub/sub channel between replicas. */
  readonly store: Pick<Store, 'publish' | 'subscribe'>;
  /** Tombstones and records in the store. */
  readonly records: Pick<RecordStore, 'isEnded' | 'markEnded' | 'restoreTombstone'>;
  /** lookup → the session's end, for sessions ended here or announced: this replica's tombstones. */
  readonly local: BoundedCache<number>;
  readonly clock: Clock;
  readonly log: Logger;
  /** Told to drop every cache it holds for a session (undefined: for every session). */
  readonly dropCaches: (lookup: string | undefined) => void;
  /** How long an end() waits for the provider before going on in the background, ms. */
  readonly revokeWaitMs?: number;
  /** Delays between background retries, ms. */
  readonly retryDelaysMs?: readonly number[];
}

export class Endings {
  readonly #store: Pick<Store, 'publish' | 'subscribe'>;
  readonly #records: Pick<RecordStore, 'isEnded' | 'markEnded' | 'restoreTombstone'>;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #dropCaches: (lookup: string | undefined) => void;
  readonly #revokeWaitMs: number;
  readonly #retryDelays: readonly number[];
  /** lookup → the session's end: sessions ended here or announced by another replica. */
  readonly #local: BoundedCache<number>;
  readonly #pending = new Set<Pending>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #unsubscribe: () => void;

  constructor(options: EndingsOptions) {
    this.#store = options.store;
    this.#records = options.records;
    this.#local = options.local;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#dropCaches = options.dropCaches;
    this.#revokeWaitMs = options.revokeWaitMs ?? 3_000;
    this.#retryDelays = options.retryDelaysMs ?? [2_000, 10_000, 60_000, 300_000];
    this.#unsubscribe = this.#store.subscribe(
      ENDED_CHANNEL,
      (message) => this.#announced(message),
      () => this.#dropCaches(undefined),
    );
  }

  /** Ended as far as this replica knows (synchronous; no store call). */
  endedHere(lookup: string, now: number): boolean {
    return this.#local.peek(lookup, now) !== undefined;
  }

  /**
   * Ended as far as the store knows; a tombstone this replica holds but the store lost (Redis
   * restarted empty) is written back. Throws StoreUnavailableError when the store is down.
   */
  async endedInStore(lookup: string, now: number): Promise<boolean> {
    if (await this.#records.isEnded(lookup)) return true;
    const until = this.#local.peek(lookup, now);
    if (until === undefined) return false;
    await this.#records.restoreTombstone(lookup, until);
    return true;
  }

  /** Ends a session everywhere (see the class comment). Never throws. */
  async end(ending: Ending): Promise<void> {
    this.#local.set(ending.lookup, ending.until, ending.until);
    this.#dropCaches(ending.lookup);
    const pending: Pending = {
      ...ending,
      stored: false,
      announced: false,
      revoked: ending.action === undefined,
      attempts: 0,
      revoking: undefined,
    };
    await this.#storeIt(pending);
    await this.#revokeWithin(pending);
    if (!this.#done(pending)) this.#retryLater(pending);
  }

  /**
   * A provider action outside any session's end (the refresh token a login replaced): waited for
   * at most revokeWaitMs, then retried in the background until `until`. Never throws.
   */
  async act(action: ProviderAction, until: number): Promise<void> {
    const pending: Pending = {
      lookup: '',
      until,
      action,
      stored: true,
      announced: true,
      revoked: false,
      attempts: 0,
      revoking: undefined,
    };
    await this.#revokeWithin(pending);
    if (!this.#done(pending)) this.#retryLater(pending);
  }

  close(): void {
    this.#unsubscribe();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  // ---- internals ------------------------------------------------------------------------------

  #announced(message: string): void {
    const space = message.indexOf(' ');
    const lookup = space === -1 ? message : message.slice(0, space);
    const until = Number(message.slice(space + 1));
    const now = this.#clock.now();
    if (lookup === '' || !Number.isFinite(until) || until <= now) return;
    this.#local.set(lookup, until, until);
    this.#dropCaches(lookup);
  }

  /** Tombstone first, then the record (a refresher saving a record checks the tombstone after). */
  async #storeIt(pending: Pending): Promise<void> {
    try {
      if (!pending.stored) {
        await this.#records.markEnded(pending.lookup, pending.until);
        pending.stored = true;
      }
      if (!pending.announced) {
        await this.#store.publish(ENDED_CHANNEL, `${pending.lookup} ${pending.until}`);
        pending.announced = true;
      }
    } catch (error) {
      this.#log.warn(
        { reason: (error as Error).message },
        'could not record the end of a session in the store; will retry',
      );
    }
  }

  /** The provider call, waited for at most revokeWaitMs (sign-out never hangs on Dex). */
  async #revokeWithin(pending: Pending): Promise<void> {
    const action = pending.action;
    if (pending.revoked || action === undefined) return;
    pending.revoking ??= Promise.resolve()
      .then(action)
      .then(
        (outcome) => {
          pending.revoked = true;
          this.#log.info({ outcome }, 'refresh token ended at the provider');
        },
        (error: unknown) => {
          this.#log.warn(
            { reason: (error as Error).message },
            'could not end the refresh token at the provider; will retry',
          );
        },
      )
      .finally(() => {
        pending.revoking = undefined;
      });
    const call = pending.revoking;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#revokeWaitMs);
      timer.unref();
    });
    await Promise.race([call, waited]);
    clearTimeout(timer);
  }

  #done(pending: Pending): boolean {
    return pending.stored && pending.announced && pending.revoked;
  }

  #retryLater(pending: Pending): void {
    const delay = this.#retryDelays[pending.attempts];
    if (delay === undefined || pending.until <= this.#clock.now()) {
      this.#pending.delete(pending);
      if (!pending.revoked) this.#log.warn('gave up ending a refresh token at the provider');
      return;
    }
    if (this.#pending.size >= 10_000 && !this.#pending.has(pending)) return; // bounded
    this.#pending.add(pending);
    pending.attempts++;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      void this.#retry(pending);
    }, delay);
    timer.unref();
    this.#timers.add(timer);
  }

  async #retry(pending: Pending): Promise<void> {
    await this.#storeIt(pending);
    await this.#revokeWithin(pending);
    if (this.#done(pending)) this.#pending.delete(pending);
    else this.#retryLater(pending);
  }
}
