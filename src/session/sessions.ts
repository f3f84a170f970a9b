import { createHmac, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt } from 'jose';
import { type Identity, identityFromClaims } from '../authz/identity.ts';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type OidcProvider, RefreshError, type RefreshResult, type TokenResult } from '../oidc/provider.ts';
import { CallBudget } from './callBudget.ts';
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
 * session end}; the store holds the ID token, the identity and the session's *current* sealed
 * cookie under HMAC(sid), encrypted with a key derived from sid.
 *
 * Refresh is single-flight per session: within a process by a promise per refresh token, across
 * replicas by a store lock (owner token, compare-and-delete release, lease renewed while the
 * token call runs). Waiters re-read instead of calling Dex. The result — with the new sealed
 * cookie — is also kept for a grace period under a hash of the *old* refresh token, so every
 * request still carrying the old cookie, on any replica, is served and handed the same new
 * cookie. A browser that presents a cookie older than the session's current one is handed the
 * current one, and a refresh always uses the newest refresh token known: a stale cookie can never
 * replay a rotated refresh token (which Dex, and oidc-provider even more strictly, punish).
 */

export interface SessionCookieData {
  readonly v: 1;
  readonly sid: string;
  readonly rt: string;
  /** Login time, ms. */
  readonly iat: number;
  /** Absolute session end, ms. */
  readonly exp: number;
  /** Generation: +1 at every refresh-token rotation, so older and newer cookies can be told apart. */
  readonly g?: number;
}

export interface SessionRecord {
  readonly idToken: string;
  /** ID token expiry, ms. */
  readonly tokenExp: number;
  /** ID token issue time, ms. */
  readonly tokenIat: number;
  readonly identity: Identity;
  /** The session's current sealed cookie and the hash of its refresh token. */
  readonly cookie: string;
  readonly rtHash: string;
  /** The generation of that cookie. */
  readonly gen: number;
  /**
   * No renewal possible — no refresh token, or the provider re-issues no ID token on refresh
   * (OpenID Connect Core §12.2): the session ends cleanly when this ID token expires.
   */
  readonly final?: boolean;
}

export type Resolution =
  | {
      readonly kind: 'valid';
      readonly record: SessionRecord;
      /** A sealed cookie value to send (rotation, adoption of the current cookie, re-seal). */
      readonly setCookie?: string;
      /** Session end, ms (for the cookie's Max-Age). */
      readonly sessionEnd: number;
      readonly degraded: boolean;
      readonly refreshed: boolean;
    }
  | {
      readonly kind: 'none';
      /** id_token_expired: a session that could not be renewed reached its ID token's expiry. */
      readonly reason: 'invalid' | 'expired' | 'signed_out' | 'refresh_refused' | 'id_token_expired';
    };

interface Unsealed {
  readonly value: string;
  readonly data: SessionCookieData;
  readonly keys: SessionKeys;
  readonly rtHash: string;
}

interface SharedResult {
  readonly record?: SessionRecord;
  readonly terminal?: boolean;
}

export interface SessionEvents {
  refresh(result: 'ok' | 'terminal' | 'transient' | 'coalesced'): void;
  lockWait(): void;
  storeError(): void;
  degraded(value: boolean): void;
  /** A session was over its provider-call budget: no call was made. */
  throttled(): void;
}

const noEvents: SessionEvents = {
  refresh() {},
  lockWait() {},
  storeError() {},
  degraded() {},
  throttled() {},
};

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
  /** How long a record outlives its ID token, so a stale cookie can still find the current one. */
  readonly recordGraceMs?: number;
  /**
   * How long a resolved session is answered from memory without asking the store. A sign-out on
   * another replica takes effect within this time; on this replica at once.
   */
  readonly hotCacheMs?: number;
  /** Calls to the provider one session may cause per minute in this process (default 10). */
  readonly providerCallsPerMinute?: number;
  /**
   * AUTHENTICATION_CONFIG (src/identity/): claims → identity as the API server derives it, and
   * whether a stored identity was mapped with the file in force (else it is mapped again).
   */
  readonly identities?: SessionIdentities;
}

export interface SessionIdentities {
  identify(claims: Readonly<Record<string, unknown>>): Identity;
  isCurrent(identity: Identity): boolean;
}

interface HotEntry {
  readonly resolution: Extract<Resolution, { kind: 'valid' }>;
  readonly lookup: string;
}

const KEY = {
  record: (lookup: string) => `s:${lookup}`,
  signedOut: (lookup: string) => `so:${lookup}`,
  lock: (lookup: string) => `lk:${lookup}`,
  result: (rtHash: string) => `rr:${rtHash}`,
  once: (name: string) => `once:${name}`,
};

/** True when the record holds a newer cookie (a later rotation) than the one presented. */
function isNewer(record: SessionRecord, presented: Unsealed): boolean {
  return record.rtHash !== presented.rtHash && (record.gen ?? 0) > (presented.data.g ?? 0);
}

/** How many times a stale cookie may be followed to a newer one in one request. */
const MAX_CHAIN = 3;

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
  readonly #recordGraceMs: number;

  /** sha256(cookie) → unsealed cookie and derived keys, until the session ends. */
  readonly #unsealed = new Lru<Unsealed>(50_000);
  /** lookup → last known record: carries sessions while the store is down. */
  readonly #records = new Lru<SessionRecord>(100_000);
  /** sha256(old refresh token) → refresh outcome, for the grace period. */
  readonly #results = new Lru<SessionRecord | 'terminal'>(20_000);
  readonly #inflight = new Map<string, Promise<SessionRecord>>();
  /** lookup → the encrypted blob behind the record in #records (skip decrypting it again). */
  readonly #blobs = new Lru<string>(100_000);
  /** cookie → its last resolution, for hotCacheMs. */
  readonly #hot = new Lru<HotEntry>(50_000);
  readonly #hotCacheMs: number;
  readonly #budget: CallBudget;
  readonly #identities: SessionIdentities | undefined;
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
    this.#recordGraceMs = options.recordGraceMs ?? 15 * 60_000;
    this.#hotCacheMs = options.hotCacheMs ?? 1_000;
    this.#budget = new CallBudget(options.providerCallsPerMinute ?? 10);
    this.#identities = options.identities;
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
    const cookie = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
    const unsealed: Unsealed = { value: cookie, data, keys, rtHash: fingerprint(data.rt) };
    this.#unsealed.set(fingerprint(cookie), unsealed, data.exp);
    const record = this.#recordFrom(tokens, unsealed);
    await this.#saveRecord(keys, record, data.exp);
    return { cookie, record, sessionEnd: data.exp };
  }

  /**
   * The hot path, synchronously: a session resolved less than hotCacheMs ago, still backed by the
   * same record (sign-out and refresh on this replica replace or drop it), before its end and not
   * yet due for refresh. Undefined when the full resolve() is needed.
   */
  peekHot(cookie: string, now = this.#clock.now()): Extract<Resolution, { kind: 'valid' }> | undefined {
    const hot = this.#hot.peek(cookie, now);
    if (
      hot !== undefined &&
      hot.resolution.sessionEnd > now &&
      this.#records.peek(hot.lookup, now) === hot.resolution.record &&
      (this.#identities?.isCurrent(hot.resolution.record.identity) ?? true) &&
      !this.#needsRefresh(hot.resolution.record, now)
    ) {
      return hot.resolution;
    }
    return undefined;
  }

  /** Resolves a session cookie to a fresh ID token, refreshing when needed. */
  async resolve(cookie: string): Promise<Resolution> {
    const now = this.#clock.now();
    const hot = this.peekHot(cookie, now);
    if (hot) return hot;
    const resolution = await this.#resolveSlow(cookie, now);
    if (resolution.kind === 'valid' && this.#hotCacheMs > 0) {
      const lookup = (await this.#unseal(cookie, now))?.keys.lookup;
      if (lookup) this.#hot.set(cookie, { resolution, lookup }, now + this.#hotCacheMs);
    }
    return resolution;
  }

  async #resolveSlow(cookie: string, now: number): Promise<Resolution> {
    const presented = await this.#unseal(cookie, now);
    if (!presented) return { kind: 'none', reason: 'invalid' };
    if (presented.data.exp <= now) return { kind: 'none', reason: 'expired' };
    const { keys } = presented;

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
      if (known) {
        record = known; // Redis came back empty: write what we know back.
        await this.#saveRecord(keys, known, presented.data.exp);
      }
    }

    // A cookie older than the session's current one adopts the current one.
    let current = presented;
    if (record && isNewer(record, presented)) {
      const adopted = await this.#unseal(record.cookie, now);
      if (adopted && adopted.data.sid === presented.data.sid) current = adopted;
    }

    // Nothing can renew it: at its ID token's expiry the session ends (a new login, silent if it can be).
    if (record?.final && record.tokenExp <= now) return { kind: 'none', reason: 'id_token_expired' };

    let refreshed = false;
    if (record === undefined || this.#needsRefresh(record, now)) {
      try {
        // While the current token is still valid, one attempt: a failure serves it as is. Once it
        // has expired, retry a few times before answering 503.
        const patient = record === undefined || record.tokenExp <= now;
        record = await this.#refresh(current, 0, patient);
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
            { detail: (error as Error).message, headers: { 'Retry-After': '5' } },
          );
        }
      }
    }

    let setCookie: string | undefined = isNewer(record, presented) ? record.cookie : undefined;
    const held = setCookie ?? cookie;
    if (this.#sealer.isSealedWithOldSecret(held)) {
      const data = setCookie
        ? ((await this.#unseal(setCookie, now))?.data ?? presented.data)
        : presented.data;
      setCookie = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
    }
    return {
      kind: 'valid',
      record,
      sessionEnd: presented.data.exp,
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
    this.#blobs.delete(keys.lookup);
    this.#hot.delete(cookie);
    this.#unsealed.delete(fingerprint(cookie));
    try {
      await this.#store.del(KEY.record(keys.lookup));
      await this.#store.set(KEY.signedOut(keys.lookup), '1', Math.max(1_000, data.exp - now));
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#log.warn('store unavailable during sign-out; the cookie was cleared');
    }
  }

  /** The record behind a cookie as last stored, without refreshing (sign-out's id_token_hint). */
  async peekRecord(cookie: string): Promise<SessionRecord | undefined> {
    const now = this.#clock.now();
    const unsealed = await this.#unseal(cookie, now);
    if (!unsealed) return undefined;
    const known = () => this.#records.get(unsealed.keys.lookup, now);
    try {
      return (await this.#loadRecord(unsealed.keys)) ?? known();
    } catch {
      return known();
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
      typeof data.exp !== 'number' ||
      typeof data.iat !== 'number'
    ) {
      return undefined;
    }
    const unsealed: Unsealed = {
      value: cookie,
      data,
      keys: deriveSessionKeys(data.sid),
      rtHash: fingerprint(data.rt),
    };
    if (data.exp > now) this.#unsealed.set(key, unsealed, data.exp);
    return unsealed;
  }

  #needsRefresh(record: SessionRecord, now: number): boolean {
    if (record.final) return record.tokenExp <= now;
    // Never let the skew exceed half the token's lifetime, or short-lived tokens would refresh on
    // every request.
    const lifetime = Math.max(0, record.tokenExp - record.tokenIat);
    const skew = Math.min(this.#config.refreshSkewMs, lifetime / 2);
    return record.tokenExp - skew <= now;
  }

  #recordFrom(tokens: TokenResult, session: Unsealed): SessionRecord {
    const claims = tokens.claims;
    return {
      idToken: tokens.idToken,
      tokenExp: claims.exp * 1000,
      tokenIat: typeof claims.iat === 'number' ? claims.iat * 1000 : this.#clock.now(),
      identity: this.#identities
        ? this.#identities.identify(claims)
        : identityFromClaims(claims, this.#config),
      cookie: session.value,
      rtHash: session.rtHash,
      gen: session.data.g ?? 0,
      ...(session.data.rt === '' ? { final: true } : {}),
    };
  }

  /**
   * A refresh answered without an ID token: the current one is served until it expires, with the
   * rotated refresh token's cookie, and then the session ends (never a refresh loop on the spent token).
   */
  #finalRecord(session: Unsealed, next: Unsealed): SessionRecord {
    const current = this.#records.peek(session.keys.lookup, this.#clock.now());
    if (!current || current.tokenExp <= this.#clock.now()) {
      throw new RefreshError(
        'terminal',
        'the refresh response has no id_token and the current one has expired',
      );
    }
    return { ...current, cookie: next.value, rtHash: next.rtHash, gen: next.data.g ?? 0, final: true };
  }

  async #loadRecord(keys: SessionKeys): Promise<SessionRecord | undefined> {
    const blob = await this.#store.get(KEY.record(keys.lookup));
    if (blob === null) return undefined;
    const now = this.#clock.now();
    if (this.#blobs.peek(keys.lookup, now) === blob) {
      const known = this.#records.peek(keys.lookup, now);
      if (known) return this.#remapped(keys, known);
    }
    const json = decrypt(blob, keys.encryption, keys.lookup);
    if (json === undefined) return undefined;
    const record = this.#remapped(keys, JSON.parse(json) as SessionRecord);
    this.#records.set(keys.lookup, record, record.tokenExp + this.#recordGraceMs);
    this.#blobs.set(keys.lookup, blob, record.tokenExp + this.#recordGraceMs);
    return record;
  }

  /** A record whose identity was mapped with an older AUTHENTICATION_CONFIG, mapped again from its (verified) ID token. */
  #remapped(keys: SessionKeys, record: SessionRecord): SessionRecord {
    if (!this.#identities || this.#identities.isCurrent(record.identity)) return record;
    const remapped = { ...record, identity: this.#identities.identify(decodeJwt(record.idToken)) };
    this.#records.set(keys.lookup, remapped, record.tokenExp + this.#recordGraceMs);
    return remapped;
  }

  /** Stores a record for its token's life plus a grace (never beyond the session's end). */
  async #saveRecord(keys: SessionKeys, record: SessionRecord, sessionEnd: number): Promise<void> {
    const now = this.#clock.now();
    const until = Math.min(sessionEnd, record.tokenExp + this.#recordGraceMs);
    this.#records.set(keys.lookup, record, until);
    if (until <= now) return;
    const blob = encrypt(JSON.stringify(record), keys.encryption, keys.lookup);
    this.#blobs.set(keys.lookup, blob, until);
    try {
      await this.#store.set(KEY.record(keys.lookup), blob, until - now);
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
    this.#events.degraded(value);
    if (value)
      this.#log.warn('session store unavailable: degraded mode, serving from cookies and local cache');
    else this.#log.info('session store available again');
  }

  /** Single-flight in this process (per refresh token), then across replicas through the store. */
  #refresh(session: Unsealed, depth = 0, patient = true): Promise<SessionRecord> {
    if (session.data.rt === '')
      return Promise.reject(new RefreshError('terminal', 'no refresh token in session'));
    const now = this.#clock.now();
    const local = this.#results.get(session.rtHash, now);
    if (local === 'terminal') return Promise.reject(new RefreshError('terminal', 'refresh already refused'));
    if (local) {
      const next = this.#follow(local, session, depth, now);
      if (next) return next;
    }
    const running = this.#inflight.get(session.rtHash);
    if (running) {
      this.#events.refresh('coalesced');
      return running;
    }
    const task = this.#refreshAcrossReplicas(session, depth, patient).finally(() =>
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
    if (!this.#needsRefresh(record, now)) {
      this.#events.refresh('coalesced');
      return Promise.resolve(record);
    }
    if (!isNewer(record, session) || depth >= MAX_CHAIN) return undefined;
    return this.#unseal(record.cookie, now).then((newer) =>
      newer && newer.data.sid === session.data.sid
        ? this.#refresh(newer, depth + 1)
        : this.#refresh(session, MAX_CHAIN),
    );
  }

  async #refreshAcrossReplicas(session: Unsealed, depth: number, patient: boolean): Promise<SessionRecord> {
    const deadline = this.#clock.now() + this.#lockWaitMs;
    const lockKey = KEY.lock(session.keys.lookup);
    const owner = randomBytes(16).toString('base64url');
    let storeUp = true;
    let waited = false;

    // Lock, re-read, then decide (STYLE 8).
    for (;;) {
      const newer = await this.#newerThan(session, depth).catch(() => {
        storeUp = false;
        return undefined;
      });
      if (newer) return newer;
      if (!storeUp) break; // degraded: this process's single-flight is all we have
      let acquired: boolean;
      try {
        acquired = await this.#store.setIfAbsent(lockKey, owner, this.#leaseMs);
      } catch {
        storeUp = false;
        break;
      }
      if (acquired) {
        // Re-read once more under the lock: the previous holder may have just finished.
        const settled = await this.#newerThan(session, depth).catch(() => undefined);
        if (settled) {
          await this.#store.deleteIfEquals(lockKey, owner).catch(() => undefined);
          return settled;
        }
        break;
      }
      if (!waited) {
        waited = true;
        this.#events.lockWait();
      }
      if (this.#clock.now() >= deadline)
        throw new RefreshError('transient', 'timed out waiting for another refresh');
      await sleep(25);
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
      const answer = await this.#callProviderWithRetries(session, depth, patient);
      if ('record' in answer) return answer.record;
      const tokens = answer.tokens;
      const now = this.#clock.now();
      const newRt = tokens.refreshToken ?? session.data.rt;
      let next = session;
      if (newRt !== session.data.rt) {
        const data: SessionCookieData = { ...session.data, rt: newRt, g: (session.data.g ?? 0) + 1 };
        const value = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
        next = { value, data, keys: session.keys, rtHash: fingerprint(newRt) };
        this.#unsealed.set(fingerprint(value), next, data.exp);
      }
      const record =
        tokens.idToken === undefined ? this.#finalRecord(session, next) : this.#recordFrom(tokens, next);
      await this.#saveRecord(session.keys, record, session.data.exp);
      await this.#writeShared(session, { record });
      this.#results.set(session.rtHash, record, now + this.#graceMs);
      this.#events.refresh('ok');
      this.#log.info({ user: record.identity.user, rotated: next !== session }, 'token refreshed');
      return record;
    } catch (error) {
      if (error instanceof RefreshError && error.kind === 'terminal') {
        this.#events.refresh('terminal');
        this.#results.set(session.rtHash, 'terminal', this.#clock.now() + this.#graceMs);
        await this.#writeShared(session, { terminal: true });
        await this.#store.del(KEY.record(session.keys.lookup)).catch(() => undefined);
        this.#records.delete(session.keys.lookup);
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

  /**
   * What another request may already have done for this session: a fresh record in the store, a
   * newer cookie to refresh with instead, or a stored result (or refusal) under the old refresh
   * token's hash. Throws StoreUnavailableError when the store is down.
   */
  async #newerThan(session: Unsealed, depth: number): Promise<SessionRecord | undefined> {
    const now = this.#clock.now();
    const record = await this.#loadRecord(session.keys);
    if (record) {
      const followed = this.#follow(record, session, depth, now);
      if (followed) return followed;
    }
    const shared = await this.#readShared(session);
    if (shared?.terminal) throw new RefreshError('terminal', 'refresh refused (shared result)');
    if (shared?.record) {
      this.#results.set(session.rtHash, shared.record, now + this.#graceMs);
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
        return { tokens: await this.#oidc.refresh(session.data.rt) };
      } catch (error) {
        const refreshError =
          error instanceof RefreshError ? error : new RefreshError('transient', String(error));
        const delay = patient ? this.#retryDelays[attempt] : undefined;
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
    const answer = this.#budget.take(session.keys.lookup, this.#clock.now());
    if (answer === 'ok') return;
    this.#events.throttled();
    if (answer === 'just_exhausted') {
      this.#log.warn(
        { limit: this.#budget.limit },
        'this session made its provider calls for the minute; no more refresh calls until the minute is over',
      );
    }
    throw new RefreshError('transient', 'provider call budget of this session used up for the minute');
  }

  #resultKey(session: Unsealed): Buffer {
    return createHmac('sha256', session.data.rt).update('refresh-result').digest();
  }

  async #readShared(session: Unsealed): Promise<SharedResult | undefined> {
    const blob = await this.#store.get(KEY.result(session.rtHash));
    if (blob === null) return undefined;
    const json = decrypt(blob, this.#resultKey(session), session.rtHash);
    return json === undefined ? undefined : (JSON.parse(json) as SharedResult);
  }

  async #writeShared(session: Unsealed, result: SharedResult): Promise<void> {
    try {
      await this.#store.set(
        KEY.result(session.rtHash),
        encrypt(JSON.stringify(result), this.#resultKey(session), session.rtHash),
        this.#graceMs,
      );
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
    }
  }
}
