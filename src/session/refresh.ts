import { createHmac, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { BoundedCache } from '../memory/budget.ts';
import { type OidcProvider, RefreshError, type RefreshResult, type TokenResult } from '../oidc/provider.ts';
import type { CallBudget } from './callBudget.ts';
import type { CookieCodec } from './codec.ts';
import { decrypt, encrypt } from './crypto.ts';
import type { Endings } from './endings.ts';
import {
  isNewer,
  type SessionCookieData,
  type SessionRecord,
  type SharedResult,
  type Unsealed,
} from './model.ts';
import type { RecordStore } from './recordStore.ts';
import { type Store, StoreUnavailableError } from './store.ts';

/**
 * The refresh coordinator (DESIGN §5, STYLE 8): single-flight in this process (one promise per
 * refresh token), across replicas by a store lock (owner token, compare-and-delete release, lease
 * renewed while the token call runs) — lock, re-read, then decide; waiters re-read instead of
 * calling the provider. The result — with the new sealed cookie — is kept for a grace period
 * under a hash of the *old* refresh token, so requests still carrying the old cookie, on any
 * replica, are handed the same new cookie. A refresh always uses the newest refresh token known:
 * a stale cookie can never replay a rotated one. At most `budget.limit` provider calls per
 * session per minute; transient failures are retried (`retryDelaysMs`), a refusal ends the session.
 */

export interface RefreshEvents {
  refresh(result: 'ok' | 'terminal' | 'transient' | 'coalesced'): void;
  lockWait(): void;
  /** A session was over its provider-call budget: no call was made. */
  throttled(): void;
}

export interface RefreshOptions {
  readonly store: Store;
  readonly oidc: Pick<OidcProvider, 'refresh'>;
  readonly codec: CookieCodec;
  readonly records: RecordStore;
  readonly endings: Endings;
  readonly budget: CallBudget;
  /** refresh token hash → outcome, for the grace period. */
  readonly results: BoundedCache<SessionRecord | 'terminal'>;
  readonly events: RefreshEvents;
  readonly log: Logger;
  readonly clock: Clock;
  readonly graceMs: number;
  readonly leaseMs: number;
  readonly lockWaitMs: number;
  readonly retryDelaysMs: readonly number[];
  /** Tokens → the record of `session` (identity mapping included). */
  readonly recordFrom: (tokens: TokenResult, session: Unsealed) => SessionRecord;
  readonly needsRefresh: (record: SessionRecord, now: number) => boolean;
}

const KEY = {
  lock: (lookup: string) => `lk:${lookup}`,
  result: (rtHash: string) => `rr:${rtHash}`,
};

/** How many times a stale cookie may be followed to a newer one in one request. */
const MAX_CHAIN = 3;

export class RefreshCoordinator {
  readonly #o: RefreshOptions;
  readonly #inflight = new Map<string, Promise<SessionRecord>>();

  constructor(options: RefreshOptions) {
    this.#o = options;
  }

  /**
   * A fresh record for `session`. `patient`: retry transient failures; `skipLocal`: the store lost
   * the session, so what this replica remembers is not trusted.
   */
  refresh(session: Unsealed, depth = 0, patient = true, skipLocal = false): Promise<SessionRecord> {
    if (session.data.rt === '')
      return Promise.reject(new RefreshError('terminal', 'no refresh token in session'));
    const now = this.#o.clock.now();
    const local = skipLocal ? undefined : this.#o.results.get(session.rtHash, now);
    if (local === 'terminal') return Promise.reject(new RefreshError('terminal', 'refresh already refused'));
    if (local) {
      const next = this.#follow(local, session, depth, now);
      if (next) return next;
    }
    const running = this.#inflight.get(session.rtHash);
    if (running) {
      this.#o.events.refresh('coalesced');
      return running;
    }
    const task = this.#acrossReplicas(session, depth, patient).finally(() =>
      this.#inflight.delete(session.rtHash),
    );
    this.#inflight.set(session.rtHash, task);
    return task;
  }

  /**
   * A newer record than `session` is known: serve it when fresh, or refresh with *its* refresh
   * token (never the stale one). Undefined when the record is not newer.
   */
  #follow(
    record: SessionRecord,
    session: Unsealed,
    depth: number,
    now: number,
  ): Promise<SessionRecord> | undefined {
    if (!this.#o.needsRefresh(record, now)) {
      this.#o.events.refresh('coalesced');
      return Promise.resolve(record);
    }
    if (!isNewer(record, session) || depth >= MAX_CHAIN) return undefined;
    return this.#o.codec
      .unseal(record.cookie, now)
      .then((newer) =>
        newer && newer.data.sid === session.data.sid
          ? this.refresh(newer, depth + 1)
          : this.refresh(session, MAX_CHAIN),
      );
  }

  async #acrossReplicas(session: Unsealed, depth: number, patient: boolean): Promise<SessionRecord> {
    const lock = await this.#lockOrResult(session, depth);
    if ('record' in lock) return lock.record;
    const renew = lock.held ? this.#renewing(lock.key, lock.owner) : undefined;
    try {
      const answer = await this.#callProviderWithRetries(session, depth, patient);
      if ('record' in answer) return answer.record;
      return await this.#apply(session, answer.tokens);
    } catch (error) {
      if (error instanceof RefreshError && error.kind === 'terminal') await this.#refused(session, error);
      else this.#o.events.refresh('transient');
      throw error;
    } finally {
      if (renew) clearInterval(renew);
      if (lock.held) await this.#o.store.deleteIfEquals(lock.key, lock.owner).catch(() => undefined);
    }
  }

  /**
   * Lock, re-read, then decide: what another request already did for this session, or the store
   * lock (held: false when the store is down — this process's single-flight is then all we have).
   */
  async #lockOrResult(
    session: Unsealed,
    depth: number,
  ): Promise<{ record: SessionRecord } | { held: boolean; key: string; owner: string }> {
    const deadline = this.#o.clock.now() + this.#o.lockWaitMs;
    const key = KEY.lock(session.keys.lookup);
    const owner = randomBytes(16).toString('base64url');
    let waited = false;
    for (;;) {
      const newer = await this.#newerThan(session, depth).catch((error: unknown) => {
        if (error instanceof RefreshError) throw error; // a refusal stored by another request
        return 'down' as const;
      });
      if (newer === 'down') return { held: false, key, owner };
      if (newer) return { record: newer };
      const acquired = await this.#o.store
        .setIfAbsent(key, owner, this.#o.leaseMs)
        .catch(() => 'down' as const);
      if (acquired === 'down') return { held: false, key, owner };
      if (acquired) {
        // Re-read once more under the lock: the previous holder may have just finished.
        const settled = await this.#newerThan(session, depth).catch((error: unknown) =>
          error instanceof RefreshError ? error : undefined,
        );
        if (settled === undefined) return { held: true, key, owner };
        await this.#o.store.deleteIfEquals(key, owner).catch(() => undefined);
        if (settled instanceof RefreshError) throw settled;
        return { record: settled };
      }
      if (!waited) {
        waited = true;
        this.#o.events.lockWait();
      }
      if (this.#o.clock.now() >= deadline)
        throw new RefreshError('transient', 'timed out waiting for another refresh');
      await sleep(25);
    }
  }

  #renewing(key: string, owner: string): NodeJS.Timeout {
    return setInterval(
      () => {
        this.#o.store.expireIfEquals(key, owner, this.#o.leaseMs).catch(() => undefined);
      },
      Math.max(50, Math.floor(this.#o.leaseMs / 3)),
    );
  }

  /** The provider's answer, saved and shared: the new record (and cookie, when the token rotated). */
  async #apply(session: Unsealed, tokens: RefreshResult): Promise<SessionRecord> {
    const now = this.#o.clock.now();
    const newRt = tokens.refreshToken ?? session.data.rt;
    let next = session;
    if (newRt !== session.data.rt) {
      const data: SessionCookieData = { ...session.data, rt: newRt, g: (session.data.g ?? 0) + 1, r: now };
      next = await this.#o.codec.seal(data, now);
    }
    const record =
      tokens.idToken === undefined ? this.#finalRecord(session, next) : this.#o.recordFrom(tokens, next);
    await this.#o.records.save(session.keys, record, session.data.exp);
    await this.#unlessEndedMeanwhile(session, newRt);
    await this.#writeShared(session, { record });
    this.#o.results.set(session.rtHash, record, now + this.#o.graceMs);
    this.#o.events.refresh('ok');
    this.#o.log.info({ user: record.identity.user, rotated: next !== session }, 'token refreshed');
    return record;
  }

  /** The provider refused: the session ends, and the refusal is shared (never asked again). */
  async #refused(session: Unsealed, error: RefreshError): Promise<void> {
    this.#o.events.refresh('terminal');
    this.#o.results.set(session.rtHash, 'terminal', this.#o.clock.now() + this.#o.graceMs);
    await this.#writeShared(session, { terminal: true });
    await this.#o.records.remove(session.keys.lookup);
    this.#o.log.info({ reason: error.message }, 'refresh refused; session ended');
  }

  /**
   * A refresh answered without an ID token: the current one is served until it expires, with the
   * rotated refresh token's cookie, and then the session ends (never a refresh loop on the spent token).
   */
  #finalRecord(session: Unsealed, next: Unsealed): SessionRecord {
    const now = this.#o.clock.now();
    const current = this.#o.records.known(session.keys.lookup, now);
    if (!current || current.tokenExp <= now) {
      throw new RefreshError(
        'terminal',
        'the refresh response has no id_token and the current one has expired',
      );
    }
    return {
      ...current,
      cookie: next.value,
      rtHash: next.rtHash,
      gen: next.data.g ?? 0,
      rotatedAt: next.data.r ?? next.data.iat,
      final: true,
    };
  }

  /**
   * Saved, then checked (a sign-out writes its tombstone before deleting the record): a session
   * ended while its refresh was in flight stays ended, and the new refresh token is revoked too.
   */
  async #unlessEndedMeanwhile(session: Unsealed, newRt: string): Promise<void> {
    const { lookup } = session.keys;
    const now = this.#o.clock.now();
    const { endings } = this.#o;
    const ended =
      endings.endedHere(lookup, now) || (await endings.endedInStore(lookup, now).catch(() => false));
    if (!ended) return;
    await this.#o.records.remove(lookup);
    await endings.end({ lookup, until: session.data.exp, refreshToken: newRt });
    throw new RefreshError('terminal', 'the session was ended while it was being refreshed');
  }

  /**
   * What another request may already have done for this session: a fresh record in the store, a
   * newer cookie to refresh with instead, or a stored result (or refusal) under the old refresh
   * token's hash. Throws StoreUnavailableError when the store is down.
   */
  async #newerThan(session: Unsealed, depth: number): Promise<SessionRecord | undefined> {
    const now = this.#o.clock.now();
    const record = await this.#o.records.load(session.keys);
    if (record) {
      const followed = this.#follow(record, session, depth, now);
      if (followed) return followed;
    }
    const shared = await this.#readShared(session);
    if (shared?.terminal) throw new RefreshError('terminal', 'refresh refused (shared result)');
    if (shared?.record) {
      this.#o.results.set(session.rtHash, shared.record, now + this.#o.graceMs);
      return this.#follow(shared.record, session, depth, now);
    }
    return undefined;
  }

  async #callProviderWithRetries(
    session: Unsealed,
    depth: number,
    patient: boolean,
  ): Promise<{ tokens: RefreshResult } | { record: SessionRecord }> {
    for (let attempt = 0; ; attempt++) {
      this.#spendBudget(session);
      try {
        return { tokens: await this.#o.oidc.refresh(session.data.rt) };
      } catch (error) {
        const refreshError =
          error instanceof RefreshError ? error : new RefreshError('transient', String(error));
        const delay = patient ? this.#o.retryDelaysMs[attempt] : undefined;
        if (refreshError.kind === 'terminal' || delay === undefined) throw refreshError;
        await sleep(delay);
        // A 5xx may have been a lost race with another refresher: look for its result first.
        const newer = await this.#newerThan(session, depth).catch(() => undefined);
        if (newer) return { record: newer };
      }
    }
  }

  /** One call of the session's budget, or a transient refusal (metric and one log line per minute). */
  #spendBudget(session: Unsealed): void {
    const answer = this.#o.budget.take(session.keys.lookup, this.#o.clock.now());
    if (answer === 'ok') return;
    this.#o.events.throttled();
    if (answer === 'just_exhausted') {
      this.#o.log.warn(
        { limit: this.#o.budget.limit },
        'this session made its provider calls for the minute; no more refresh calls until the minute is over',
      );
    }
    throw new RefreshError('transient', 'provider call budget of this session used up for the minute');
  }

  #resultKey(session: Unsealed): Buffer {
    return createHmac('sha256', session.data.rt).update('refresh-result').digest();
  }

  async #readShared(session: Unsealed): Promise<SharedResult | undefined> {
    const blob = await this.#o.store.get(KEY.result(session.rtHash));
    if (blob === null) return undefined;
    const json = decrypt(blob, this.#resultKey(session), session.rtHash);
    return json === undefined ? undefined : (JSON.parse(json) as SharedResult);
  }

  async #writeShared(session: Unsealed, result: SharedResult): Promise<void> {
    try {
      await this.#o.store.set(
        KEY.result(session.rtHash),
        encrypt(JSON.stringify(result), this.#resultKey(session), session.rtHash),
        this.#o.graceMs,
      );
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
    }
  }

  /** Forgets every shared result this replica holds (it may have missed a sign-out). */
  forgetResults(): void {
    this.#o.results.clear();
  }
}
