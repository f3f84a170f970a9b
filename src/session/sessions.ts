import { createHmac, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Identity, identityFromClaims } from '../authz/identity.ts';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type OidcProvider, RefreshError, type TokenResult } from '../oidc/provider.ts';
import {
  decrypt,
  deriveSessionKeys,
  encrypt,
  fingerprint,
  newSessionId,
  type SessionKeys,
} from './crypto.ts';
import { Lru } from './lru.ts';
import type { Sealer } from './seal.ts';
import { type Store, StoreUnavailableError } from './store.ts';

/**
 * Sessions (DESIGN §5). The browser holds a sealed cookie {sid, refresh token, login time,
 * session end}; the store holds the ID token and the identity under HMAC(sid), encrypted with a
 * key derived from sid. Refresh is single-flight per session across replicas: a store lock elects
 * the refresher, and its result — including the new sealed cookie — is kept for a grace period
 * under a hash of the *old* refresh token, so every request still carrying the old cookie, on any
 * replica, is served and handed the same new cookie.
 */

export interface SessionCookieData {
  readonly v: 1;
  readonly sid: string;
  readonly rt: string;
  /** Login time, ms. */
  readonly iat: number;
  /** Absolute session end, ms. */
  readonly exp: number;
}

export interface SessionRecord {
  readonly idToken: string;
  /** ID token expiry, ms. */
  readonly tokenExp: number;
  /** ID token issue time, ms. */
  readonly tokenIat: number;
  readonly identity: Identity;
}

export type Resolution =
  | {
      readonly kind: 'valid';
      readonly record: SessionRecord;
      /** A new sealed cookie value to send (rotation or re-seal). */
      readonly setCookie?: string;
      /** Session end, ms (for the cookie's Max-Age). */
      readonly sessionEnd: number;
      readonly degraded: boolean;
      readonly refreshed: boolean;
    }
  | { readonly kind: 'none'; readonly reason: 'invalid' | 'expired' | 'signed_out' | 'refresh_refused' };

interface RefreshOutcome {
  readonly record: SessionRecord;
  readonly cookie: string | undefined;
}

interface SharedResult {
  readonly cookie?: string;
  readonly record?: SessionRecord;
  readonly terminal?: boolean;
}

interface Unsealed {
  readonly data: SessionCookieData;
  readonly keys: SessionKeys;
}

export interface SessionEvents {
  refresh(result: 'ok' | 'terminal' | 'transient' | 'coalesced'): void;
  lockWait(): void;
  storeError(): void;
}

const noEvents: SessionEvents = { refresh() {}, lockWait() {}, storeError() {} };

export interface SessionServiceOptions {
  readonly config: Config;
  readonly store: Store;
  readonly oidc: OidcProvider;
  readonly sealer: Sealer;
  readonly clock: Clock;
  readonly log: Logger;
  readonly events?: SessionEvents;
  /** How long a refresh result stays available to requests carrying the old cookie. */
  readonly graceMs?: number;
  /** Lock lease, renewed while the token call is in flight. */
  readonly lockLeaseMs?: number;
  /** How long a request waits for another replica's refresh before giving up (503). */
  readonly lockWaitMs?: number;
  /** Delays between transient refresh retries. */
  readonly retryDelaysMs?: readonly number[];
}

const KEY = {
  record: (lookup: string) => `s:${lookup}`,
  signedOut: (lookup: string) => `so:${lookup}`,
  lock: (lookup: string) => `lk:${lookup}`,
  result: (rtHash: string) => `rr:${rtHash}`,
  once: (name: string) => `once:${name}`,
};

export class SessionService {
  readonly #config: Config;
  readonly #store: Store;
  readonly #oidc: OidcProvider;
  readonly #sealer: Sealer;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events: SessionEvents;
  readonly #graceMs: number;
  readonly #leaseMs: number;
  readonly #lockWaitMs: number;
  readonly #retryDelays: readonly number[];

  /** sha256(cookie) → unsealed cookie and derived keys, until the session ends. */
  readonly #unsealed = new Lru<Unsealed>(50_000);
  /** lookup → last known record: carries sessions while the store is down. */
  readonly #records = new Lru<SessionRecord>(100_000);
  /** sha256(old refresh token) → refresh outcome, for the grace period. */
  readonly #results = new Lru<RefreshOutcome | 'terminal'>(20_000);
  readonly #inflight = new Map<string, Promise<RefreshOutcome>>();
  #degraded = false;

  constructor(options: SessionServiceOptions) {
    this.#config = options.config;
    this.#store = options.store;
    this.#oidc = options.oidc;
    this.#sealer = options.sealer;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#events = options.events ?? noEvents;
    this.#graceMs = options.graceMs ?? 60_000;
    this.#leaseMs = options.lockLeaseMs ?? 5_000;
    this.#lockWaitMs = options.lockWaitMs ?? 8_000;
    this.#retryDelays = options.retryDelaysMs ?? [200, 600];
  }

  /** True while the store is unreachable and sessions run on the cookie and local caches. */
  get degraded(): boolean {
    return this.#degraded;
  }

  /** Creates a session from a fresh login; returns the sealed cookie value. */
  async create(tokens: TokenResult): Promise<{ cookie: string; record: SessionRecord; sessionEnd: number }> {
    const now = this.#clock.now();
    const data: SessionCookieData = {
      v: 1,
      sid: newSessionId(),
      rt: tokens.refreshToken ?? '',
      iat: now,
      exp: now + this.#config.sessionTtlMs,
    };
    const keys = deriveSessionKeys(data.sid);
    const record = this.#recordFrom(tokens);
    await this.#saveRecord(keys, record);
    const cookie = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
    this.#unsealed.set(fingerprint(cookie), { data, keys }, data.exp);
    return { cookie, record, sessionEnd: data.exp };
  }

  /** Resolves a session cookie to a fresh ID token, refreshing when needed. */
  async resolve(cookie: string): Promise<Resolution> {
    const now = this.#clock.now();
    const unsealed = await this.#unseal(cookie, now);
    if (!unsealed) return { kind: 'none', reason: 'invalid' };
    const { data, keys } = unsealed;
    if (data.exp <= now) return { kind: 'none', reason: 'expired' };

    let record: SessionRecord | undefined;
    let storeDown = false;
    try {
      record = await this.#loadRecord(keys);
      this.#setDegraded(false);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      storeDown = true;
      this.#events.storeError();
      this.#setDegraded(true);
      record = this.#records.get(keys.lookup, now);
    }

    if (record === undefined && !storeDown) {
      // Missing: expired, flushed or signed out. A tombstone says which.
      if (await this.#signedOut(keys)) return { kind: 'none', reason: 'signed_out' };
      const known = this.#records.get(keys.lookup, now);
      if (known && !this.#needsRefresh(known, now)) {
        record = known;
        await this.#saveRecord(keys, known).catch(() => undefined); // Redis came back empty: write back.
      }
    }

    let setCookie: string | undefined;
    let refreshed = false;
    if (record === undefined || this.#needsRefresh(record, now)) {
      try {
        const outcome = await this.#refresh(data, keys);
        record = outcome.record;
        setCookie = outcome.cookie;
        refreshed = true;
      } catch (error) {
        if (error instanceof RefreshError && error.kind === 'terminal') {
          return { kind: 'none', reason: 'refresh_refused' };
        }
        // Transient: serve the current token while it is still valid (DESIGN §5).
        if (record !== undefined && record.tokenExp > this.#clock.now()) {
          this.#log.warn(
            { reason: (error as Error).message },
            'refresh failed transiently; serving current token',
          );
        } else {
          throw new AppError(
            'session_unavailable',
            'Your session could not be renewed right now. Please retry in a moment.',
            {
              detail: (error as Error).message,
              headers: { 'Retry-After': '5' },
            },
          );
        }
      }
    }

    if (setCookie === undefined && this.#sealer.isSealedWithOldSecret(cookie)) {
      setCookie = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
    }
    return {
      kind: 'valid',
      record,
      sessionEnd: data.exp,
      degraded: storeDown,
      refreshed,
      ...(setCookie !== undefined ? { setCookie } : {}),
    };
  }

  /** Ends the session: store entry deleted, tombstone left so the old cookie cannot revive it. */
  async destroy(cookie: string): Promise<void> {
    const now = this.#clock.now();
    const unsealed = await this.#unseal(cookie, now);
    if (!unsealed) return;
    const { keys, data } = unsealed;
    this.#records.delete(keys.lookup);
    this.#unsealed.delete(fingerprint(cookie));
    try {
      await this.#store.del(KEY.record(keys.lookup));
      await this.#store.set(KEY.signedOut(keys.lookup), '1', Math.max(1_000, data.exp - now));
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#log.warn('store unavailable during sign-out; the cookie was cleared');
    }
  }

  /** The identity behind a cookie as last stored, without refreshing (for logs and pages). */
  async peekIdentity(cookie: string): Promise<Identity | undefined> {
    const now = this.#clock.now();
    const unsealed = await this.#unseal(cookie, now);
    if (!unsealed) return undefined;
    try {
      return (
        (await this.#loadRecord(unsealed.keys))?.identity ??
        this.#records.get(unsealed.keys.lookup, now)?.identity
      );
    } catch {
      return this.#records.get(unsealed.keys.lookup, now)?.identity;
    }
  }

  /** Marks a one-time value used (login state); false when it was already used. */
  async useOnce(name: string, ttlMs: number): Promise<boolean> {
    try {
      return await this.#store.setIfAbsent(KEY.once(fingerprint(name)), '1', ttlMs);
    } catch (error) {
      if (error instanceof StoreUnavailableError) return true; // the cookie is single-use anyway
      throw error;
    }
  }

  // ---- internals ------------------------------------------------------------------------------

  async #unseal(cookie: string, now: number): Promise<Unsealed | undefined> {
    const key = fingerprint(cookie);
    const hit = this.#unsealed.get(key, now);
    if (hit) return hit;
    const data = await this.#sealer.unseal<SessionCookieData>(cookie);
    if (
      data?.v !== 1 ||
      typeof data.sid !== 'string' ||
      typeof data.rt !== 'string' ||
      typeof data.exp !== 'number'
    ) {
      return undefined;
    }
    const unsealed = { data, keys: deriveSessionKeys(data.sid) };
    if (data.exp > now) this.#unsealed.set(key, unsealed, data.exp);
    return unsealed;
  }

  #needsRefresh(record: SessionRecord, now: number): boolean {
    // Never let the skew exceed half the token's lifetime, or short-lived tokens would refresh on
    // every request.
    const lifetime = Math.max(0, record.tokenExp - record.tokenIat);
    const skew = Math.min(this.#config.refreshSkewMs, lifetime / 2);
    return record.tokenExp - skew <= now;
  }

  #recordFrom(tokens: TokenResult): SessionRecord {
    const claims = tokens.claims;
    return {
      idToken: tokens.idToken,
      tokenExp: claims.exp * 1000,
      tokenIat: typeof claims.iat === 'number' ? claims.iat * 1000 : this.#clock.now(),
      identity: identityFromClaims(claims, this.#config),
    };
  }

  async #loadRecord(keys: SessionKeys): Promise<SessionRecord | undefined> {
    const blob = await this.#store.get(KEY.record(keys.lookup));
    if (blob === null) return undefined;
    const json = decrypt(blob, keys.encryption, keys.lookup);
    if (json === undefined) return undefined;
    const record = JSON.parse(json) as SessionRecord;
    this.#records.set(keys.lookup, record, record.tokenExp);
    return record;
  }

  async #saveRecord(keys: SessionKeys, record: SessionRecord): Promise<void> {
    const now = this.#clock.now();
    this.#records.set(keys.lookup, record, record.tokenExp);
    const ttl = record.tokenExp - now;
    if (ttl <= 0) return;
    try {
      await this.#store.set(
        KEY.record(keys.lookup),
        encrypt(JSON.stringify(record), keys.encryption, keys.lookup),
        ttl,
      );
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#events.storeError();
      this.#setDegraded(true);
    }
  }

  async #signedOut(keys: SessionKeys): Promise<boolean> {
    try {
      return (await this.#store.get(KEY.signedOut(keys.lookup))) !== null;
    } catch {
      return false;
    }
  }

  #setDegraded(value: boolean): void {
    if (this.#degraded === value) return;
    this.#degraded = value;
    if (value)
      this.#log.warn('session store unavailable: degraded mode, serving from cookies and local cache');
    else this.#log.info('session store available again');
  }

  /** Single-flight in this process, then across replicas through the store. */
  #refresh(data: SessionCookieData, keys: SessionKeys): Promise<RefreshOutcome> {
    if (data.rt === '') return Promise.reject(new RefreshError('terminal', 'no refresh token in session'));
    const rtHash = fingerprint(data.rt);
    const now = this.#clock.now();
    const local = this.#results.get(rtHash, now);
    if (local === 'terminal') return Promise.reject(new RefreshError('terminal', 'refresh already refused'));
    if (local && !this.#needsRefresh(local.record, now)) {
      this.#events.refresh('coalesced');
      return Promise.resolve(local);
    }
    const running = this.#inflight.get(rtHash);
    if (running) {
      this.#events.refresh('coalesced');
      return running;
    }
    const task = this.#refreshAcrossReplicas(data, keys, rtHash).finally(() => this.#inflight.delete(rtHash));
    this.#inflight.set(rtHash, task);
    return task;
  }

  async #refreshAcrossReplicas(
    data: SessionCookieData,
    keys: SessionKeys,
    rtHash: string,
  ): Promise<RefreshOutcome> {
    const deadline = this.#clock.now() + this.#lockWaitMs;
    const lockKey = KEY.lock(keys.lookup);
    const owner = randomBytes(16).toString('base64url');
    let storeUp = true;
    let waited = false;

    // Lock, re-read, then decide (STYLE 8).
    for (;;) {
      const shared = await this.#readShared(rtHash, data.rt).catch(() => {
        storeUp = false;
        return undefined;
      });
      if (shared?.terminal) throw new RefreshError('terminal', 'refresh refused (shared result)');
      if (shared?.record && !this.#needsRefresh(shared.record, this.#clock.now())) {
        this.#events.refresh('coalesced');
        return this.#remember(rtHash, { record: shared.record, cookie: shared.cookie });
      }
      if (!storeUp) break; // degraded: this process's single-flight is all we have
      let acquired: boolean;
      try {
        acquired = await this.#store.setIfAbsent(lockKey, owner, this.#leaseMs);
      } catch {
        storeUp = false;
        break;
      }
      if (acquired) break;
      if (!waited) {
        waited = true;
        this.#events.lockWait();
      }
      if (this.#clock.now() >= deadline)
        throw new RefreshError('transient', 'timed out waiting for another refresh');
      await sleep(40);
    }

    const renew = storeUp
      ? setInterval(
          () => {
            this.#store.expireIfEquals(lockKey, owner, this.#leaseMs).catch(() => undefined);
          },
          Math.max(50, Math.floor(this.#leaseMs / 3)),
        )
      : undefined;
    try {
      const answer = await this.#callProviderWithRetries(data.rt, rtHash);
      if ('shared' in answer) {
        this.#events.refresh('coalesced');
        return this.#remember(rtHash, answer.shared);
      }
      const tokens = answer.tokens;
      const now = this.#clock.now();
      const record = this.#recordFrom(tokens);
      const newRt = tokens.refreshToken ?? data.rt;
      const cookie =
        newRt === data.rt
          ? undefined
          : await this.#sealer.seal({ ...data, rt: newRt }, (data.exp - now) / 1000);
      const outcome: RefreshOutcome = { record, cookie };
      await this.#saveRecord(keys, record);
      await this.#writeShared(rtHash, data.rt, { record, ...(cookie !== undefined ? { cookie } : {}) });
      this.#events.refresh('ok');
      this.#log.info({ user: record.identity.user, rotated: cookie !== undefined }, 'token refreshed');
      return this.#remember(rtHash, outcome);
    } catch (error) {
      if (error instanceof RefreshError && error.kind === 'terminal') {
        this.#events.refresh('terminal');
        this.#results.set(rtHash, 'terminal', this.#clock.now() + this.#graceMs);
        await this.#writeShared(rtHash, data.rt, { terminal: true });
        await this.#store.del(KEY.record(keys.lookup)).catch(() => undefined);
        this.#records.delete(keys.lookup);
        this.#log.info({ reason: error.message }, 'refresh refused; session ended');
      } else {
        this.#events.refresh('transient');
      }
      throw error;
    } finally {
      if (renew) clearInterval(renew);
      if (storeUp) await this.#store.deleteIfEquals(lockKey, owner).catch(() => undefined);
    }
  }

  async #callProviderWithRetries(
    rt: string,
    rtHash: string,
  ): Promise<{ tokens: TokenResult } | { shared: RefreshOutcome }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return { tokens: await this.#oidc.refresh(rt) };
      } catch (error) {
        const refreshError =
          error instanceof RefreshError ? error : new RefreshError('transient', String(error));
        const delay = this.#retryDelays[attempt];
        if (refreshError.kind === 'terminal' || delay === undefined) throw refreshError;
        await sleep(delay);
        // A 5xx may have been a lost race with another refresher: look for its result first.
        const shared = await this.#readShared(rtHash, rt).catch(() => undefined);
        if (shared?.record) return { shared: { record: shared.record, cookie: shared.cookie } };
      }
    }
  }

  #remember(rtHash: string, outcome: RefreshOutcome): RefreshOutcome {
    this.#results.set(rtHash, outcome, this.#clock.now() + this.#graceMs);
    return outcome;
  }

  #resultKey(rt: string): Buffer {
    return createHmac('sha256', rt).update('refresh-result').digest();
  }

  async #readShared(rtHash: string, rt: string): Promise<SharedResult | undefined> {
    const blob = await this.#store.get(KEY.result(rtHash));
    if (blob === null) return undefined;
    const json = decrypt(blob, this.#resultKey(rt), rtHash);
    return json === undefined ? undefined : (JSON.parse(json) as SharedResult);
  }

  async #writeShared(rtHash: string, rt: string, result: SharedResult): Promise<void> {
    try {
      await this.#store.set(
        KEY.result(rtHash),
        encrypt(JSON.stringify(result), this.#resultKey(rt), rtHash),
        this.#graceMs,
      );
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
    }
  }
}
