import { createHmac, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt } from 'jose';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { identityFromClaims } from '../identity/claims.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import { type OidcProvider, RefreshError, type RefreshResult, type TokenResult } from '../oidc/provider.ts';
import { Activity } from './activity.ts';
import { CallBudget } from './callBudget.ts';
import {
  decrypt,
  deriveSessionKeys,
  encrypt,
  fingerprint,
  newSessionId,
  type SessionKeys,
} from './crypto.ts';
import { Endings } from './endings.ts';
import { Lru } from './lru.ts';
import {
  isNewer,
  type Loaded,
  NONE,
  type Resolution,
  type SessionCookieData,
  type SessionRecord,
  type SharedResult,
  type Unsealed,
  type Valid,
} from './model.ts';
import type { Sealer } from './seal.ts';
import { type Store, StoreUnavailableError } from './store.ts';

export type { NoSessionReason, Resolution, SessionCookieData, SessionRecord, Valid } from './model.ts';

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
 * cookie. A browser that presents the cookie just before the session's current one, within that
 * grace period, is handed the current one; an older cookie, or one presented later, is refused
 * (a copy taken before a rotation is not upgraded forever). A refresh always uses the newest
 * refresh token known: a stale cookie can never replay a rotated refresh token (which Dex, and
 * oidc-provider even more strictly, punish).
 *
 * A session ends at its absolute end (SESSION_TTL), after SESSION_IDLE_TIMEOUT without use
 * (activity.ts), at sign-out, or when the provider refuses a refresh. Sign-out and the idle end
 * hold even after Redis loses its data (endings.ts). A host-only session (no COOKIE_DOMAIN) is
 * bound to the host it was created for: its cookie replayed on another host is no session there.
 */

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
   * another replica takes effect at once when its message arrives, and within this time anyway.
   */
  readonly hotCacheMs?: number;
  /** Calls to the provider one session may cause per minute in this process (default 10). */
  readonly providerCallsPerMinute?: number;
  /** How long sign-out waits for the provider's revocation before going on in the background. */
  readonly revokeWaitMs?: number;
  /** Delays between background retries of a revocation the provider could not take. */
  readonly revokeRetryDelaysMs?: readonly number[];
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

/** A 200's headers as Node's writeHead takes them: name, value, name, value… */
export type ReplyHeaders = readonly (string | readonly string[])[];

interface HotEntry {
  readonly resolution: Extract<Resolution, { kind: 'valid' }>;
  readonly lookup: string;
}

const KEY = {
  record: (lookup: string) => `s:${lookup}`,
  lock: (lookup: string) => `lk:${lookup}`,
  result: (rtHash: string) => `rr:${rtHash}`,
  once: (name: string) => `once:${name}`,
};

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
  readonly #replyHeaders = new WeakMap<Valid, ReplyHeaders>();
  readonly #budget: CallBudget;
  /** Last use per session, when SESSION_IDLE_TIMEOUT is on. */
  readonly #activity: Activity | undefined;
  readonly #endings: Endings;
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
    const idleMs = this.#config.sessionIdleTimeoutMs;
    this.#activity = idleMs > 0 ? new Activity({ store: this.#store, idleMs }) : undefined;
    this.#endings = new Endings({
      store: this.#store,
      oidc: this.#oidc,
      clock: this.#clock,
      log: this.#log,
      dropCaches: (lookup) => this.#dropCaches(lookup),
      ...(options.revokeWaitMs !== undefined ? { revokeWaitMs: options.revokeWaitMs } : {}),
      ...(options.revokeRetryDelaysMs ? { retryDelaysMs: options.revokeRetryDelaysMs } : {}),
    });
  }

  /** True while the store is unreachable and sessions run on the cookie and local caches. */
  get degraded(): boolean {
    return this.#degraded;
  }

  /**
   * Creates a session from a fresh login on `host`; returns the sealed cookie value. A host-only
   * session (no COOKIE_DOMAIN) is bound to that host.
   */
  async create(
    tokens: TokenResult,
    host?: string,
  ): Promise<{ cookie: string; record: SessionRecord; sessionEnd: number }> {
    const now = this.#clock.now();
    const data: SessionCookieData = {
      v: 1,
      sid: newSessionId(),
      rt: tokens.refreshToken ?? '',
      iat: now,
      exp: now + this.#config.sessionTtlMs,
      r: now,
      ...(host !== undefined && this.#config.cookieDomain === undefined ? { h: host } : {}),
    };
    const keys = deriveSessionKeys(data.sid);
    const cookie = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
    const unsealed: Unsealed = { value: cookie, data, keys, rtHash: fingerprint(data.rt) };
    this.#unsealed.set(fingerprint(cookie), unsealed, data.exp);
    const record = this.#recordFrom(tokens, unsealed);
    await this.#saveRecord(keys, record, data.exp);
    await this.#activity?.started(keys.lookup, data.exp, now);
    return { cookie, record, sessionEnd: data.exp };
  }

  /**
   * The hot path, synchronously: a session resolved less than hotCacheMs ago, still backed by the
   * same record (sign-out and refresh, here or announced by another replica, replace or drop it),
   * before its end, not yet due for refresh, and on its own host. Undefined when the full
   * resolve() is needed.
   */
  peekHot(cookie: string, host?: string, now = this.#clock.now()): Valid | undefined {
    const hot = this.#hot.peek(cookie, now);
    if (hot === undefined) return undefined;
    const resolution = hot.resolution;
    if (
      resolution.sessionEnd <= now ||
      this.#records.peek(hot.lookup, now) !== resolution.record ||
      !(this.#identities?.isCurrent(resolution.record.identity) ?? true) ||
      this.#needsRefresh(resolution.record, now) ||
      (resolution.host !== undefined && host !== undefined && resolution.host !== host)
    ) {
      return undefined;
    }
    this.#activity?.touch(hot.lookup, resolution.sessionEnd, now);
    return resolution;
  }

  /**
   * The answer headers of a resolved session, built once by `build` and kept with the session's
   * cached resolution (the hot path's 200).
   */
  replyHeaders(session: Valid, build: () => ReplyHeaders): ReplyHeaders {
    let headers = this.#replyHeaders.get(session);
    if (headers === undefined) {
      headers = build();
      this.#replyHeaders.set(session, headers);
    }
    return headers;
  }

  /** Resolves a session cookie, presented on `host`, to a fresh ID token, refreshing when needed. */
  async resolve(cookie: string, host?: string): Promise<Resolution> {
    const now = this.#clock.now();
    const hot = this.peekHot(cookie, host, now);
    if (hot) return hot;
    const resolution = await this.#resolveSlow(cookie, now, host);
    if (resolution.kind === 'valid') {
      const lookup = (await this.#unseal(cookie, now))?.keys.lookup;
      if (lookup) {
        this.#activity?.touch(lookup, resolution.sessionEnd, now);
        if (this.#hotCacheMs > 0) this.#hot.set(cookie, { resolution, lookup }, now + this.#hotCacheMs);
      }
    }
    return resolution;
  }

  async #resolveSlow(cookie: string, now: number, host: string | undefined): Promise<Resolution> {
    const presented = await this.#unseal(cookie, now);
    if (!presented) return NONE.invalid;
    if (presented.data.exp <= now) return NONE.expired;
    if (presented.data.h !== undefined && host !== undefined && presented.data.h !== host) {
      return NONE.otherHost;
    }
    const { lookup } = presented.keys;
    if (this.#endings.endedHere(lookup, now)) {
      // Also puts the tombstone back into a store that lost it (for replicas started later).
      await this.#endings.endedInStore(lookup, now).catch(() => true);
      return NONE.signedOut;
    }

    const loaded = await this.#load(presented, now);
    if (loaded === undefined) return NONE.signedOut;
    if (!loaded.storeDown && this.#activity && (await this.#activity.isIdle(lookup, now))) {
      this.#log.info('session unused for SESSION_IDLE_TIMEOUT; ended');
      await this.#endSession(presented, loaded.record ?? loaded.fallback);
      return NONE.idle;
    }
    const current = await this.#currentCookie(presented, loaded.record ?? loaded.fallback, now);
    if (current === undefined) {
      this.#log.info(
        'a cookie older than the session’s current one came after the rotation grace; refused (if this repeats for every user, the proxy does not pass Set-Cookie from 2xx auth answers: Traefik addAuthCookiesToResponse)',
      );
      return NONE.stale;
    }
    // Nothing can renew it: at its ID token's expiry the session ends (a new login, silent if it can be).
    const known = loaded.record ?? loaded.fallback;
    if (known?.final && known.tokenExp <= now) return NONE.idTokenExpired;
    const fresh = await this.#fresh(current, loaded, now);
    if (fresh === undefined) return NONE.refreshRefused;
    return this.#valid(fresh.record, presented, cookie, fresh.refreshed, loaded.storeDown, now);
  }

  /**
   * The record behind a session: from the store; while the store is down, what this replica last
   * knew. Undefined when a tombstone says the session was ended.
   */
  async #load(presented: Unsealed, now: number): Promise<Loaded | undefined> {
    const { keys } = presented;
    try {
      const record = await this.#loadRecord(keys);
      this.#setDegraded(false);
      if (record !== undefined) return { record, fallback: undefined, storeDown: false };
      // Missing: expired, flushed or ended. A tombstone says which.
      if (await this.#endings.endedInStore(keys.lookup, now)) return undefined;
      // Flushed or restarted empty: not trusted as it stands (this replica may have missed a
      // sign-out); the provider is asked again, and what we knew is served only if it cannot answer.
      return { record: undefined, fallback: this.#records.get(keys.lookup, now), storeDown: false };
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#events.storeError();
      this.#setDegraded(true);
      return { record: this.#records.get(keys.lookup, now), fallback: undefined, storeDown: true };
    }
  }

  /**
   * The cookie to go on with: the presented one, or the session's current one when the presented
   * one is its immediate predecessor and the rotation is within the grace period (concurrent
   * requests that left before the new cookie arrived). Undefined: an older copy, refused.
   */
  async #currentCookie(
    presented: Unsealed,
    reference: SessionRecord | undefined,
    now: number,
  ): Promise<Unsealed | undefined> {
    if (reference === undefined || !isNewer(reference, presented)) return presented;
    const previous = reference.gen === (presented.data.g ?? 0) + 1;
    if (!previous || now - (reference.rotatedAt ?? 0) > this.#graceMs) return undefined;
    const adopted = await this.#unseal(reference.cookie, now);
    return adopted && adopted.data.sid === presented.data.sid ? adopted : presented;
  }

  /** A record fresh enough to serve, refreshing when due; undefined when the provider refused. */
  async #fresh(
    current: Unsealed,
    loaded: Loaded,
    now: number,
  ): Promise<{ record: SessionRecord; refreshed: boolean } | undefined> {
    const { record } = loaded;
    if (record !== undefined && !this.#needsRefresh(record, now)) return { record, refreshed: false };
    const fallback = record ?? loaded.fallback;
    try {
      // While the current token is still valid, one attempt: a failure serves it as is. Once it
      // has expired, retry a few times before answering 503.
      const patient = fallback === undefined || fallback.tokenExp <= now;
      const skipLocal = !loaded.storeDown && record === undefined;
      return { record: await this.#refresh(current, 0, patient, skipLocal), refreshed: true };
    } catch (error) {
      if (error instanceof RefreshError && error.kind === 'terminal') return undefined;
      // Transient: serve the current token while it is still valid (DESIGN §5).
      if (fallback !== undefined && fallback.tokenExp > this.#clock.now()) {
        this.#log.warn(
          { reason: (error as Error).message },
          'refresh failed transiently; serving current token',
        );
        return { record: fallback, refreshed: false };
      }
      throw new AppError(
        'session_unavailable',
        'Your session could not be renewed right now. Please retry in a moment.',
        { detail: (error as Error).message, headers: { 'Retry-After': '5' } },
      );
    }
  }

  async #valid(
    record: SessionRecord,
    presented: Unsealed,
    cookie: string,
    refreshed: boolean,
    storeDown: boolean,
    now: number,
  ): Promise<Valid> {
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
      ...(presented.data.h !== undefined ? { host: presented.data.h } : {}),
    };
  }

  /**
   * Signs out: the session ends everywhere and for good — its newest refresh token revoked at the
   * provider, a tombstone in the store, every replica told to drop its caches (endings.ts).
   */
  async destroy(cookie: string): Promise<void> {
    const now = this.#clock.now();
    const presented = await this.#unseal(cookie, now);
    if (!presented) return;
    let record: SessionRecord | undefined;
    try {
      record = await this.#loadRecord(presented.keys);
    } catch {
      // store down: what this replica knows will do
    }
    await this.#endSession(presented, record ?? this.#records.get(presented.keys.lookup, now));
    this.#hot.delete(cookie);
    this.#unsealed.delete(fingerprint(cookie));
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

  /** Stops background work (retries of revocations, the subscription). */
  close(): void {
    this.#endings.close();
  }

  // ---- internals ------------------------------------------------------------------------------

  /** Ends the session behind `presented`, revoking the newest refresh token known for it. */
  async #endSession(presented: Unsealed, record: SessionRecord | undefined): Promise<void> {
    let newest = presented;
    if (record && isNewer(record, presented)) {
      const adopted = await this.#unseal(record.cookie, this.#clock.now());
      if (adopted?.data.sid === presented.data.sid) newest = adopted;
    }
    await this.#endings.end({
      lookup: presented.keys.lookup,
      until: presented.data.exp,
      refreshToken: newest.data.rt,
    });
  }

  /** Drops what this replica holds for a session (undefined: for every session). */
  #dropCaches(lookup: string | undefined): void {
    if (lookup === undefined) {
      this.#records.clear();
      this.#blobs.clear();
      this.#hot.clear();
      this.#results.clear();
      return;
    }
    this.#records.delete(lookup);
    this.#blobs.delete(lookup);
    this.#activity?.forget(lookup);
  }

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
      typeof data.iat !== 'number' ||
      (data.h !== undefined && typeof data.h !== 'string') ||
      (data.r !== undefined && typeof data.r !== 'number')
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
      rotatedAt: session.data.r ?? session.data.iat,
      ...(session.data.rt === '' ? { final: true } : {}),
    };
  }

  /**
   * A refresh answered without an ID token: the current one is served until it expires, with the
   * rotated refresh token's cookie, and then the session ends (never a refresh loop on the spent token).
   */
  #finalRecord(session: Unsealed, next: Unsealed): SessionRecord {
    const now = this.#clock.now();
    const current = this.#records.peek(session.keys.lookup, now);
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

  #setDegraded(value: boolean): void {
    if (this.#degraded === value) return;
    this.#degraded = value;
    this.#events.degraded(value);
    if (value)
      this.#log.warn('session store unavailable: degraded mode, serving from cookies and local cache');
    else this.#log.info('session store available again');
  }

  /** Single-flight in this process (per refresh token), then across replicas through the store. */
  #refresh(session: Unsealed, depth = 0, patient = true, skipLocal = false): Promise<SessionRecord> {
    if (session.data.rt === '')
      return Promise.reject(new RefreshError('terminal', 'no refresh token in session'));
    const now = this.#clock.now();
    // skipLocal: the store lost the session, so what this replica remembers is not trusted.
    const local = skipLocal ? undefined : this.#results.get(session.rtHash, now);
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
      const newer = await this.#newerThan(session, depth).catch((error: unknown) => {
        if (error instanceof RefreshError) throw error; // a refusal stored by another request
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
        const settled = await this.#newerThan(session, depth).catch((error: unknown) =>
          error instanceof RefreshError ? error : undefined,
        );
        if (settled) {
          await this.#store.deleteIfEquals(lockKey, owner).catch(() => undefined);
          if (settled instanceof RefreshError) throw settled;
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
        const data: SessionCookieData = {
          ...session.data,
          rt: newRt,
          g: (session.data.g ?? 0) + 1,
          r: now,
        };
        const value = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
        next = { value, data, keys: session.keys, rtHash: fingerprint(newRt) };
        this.#unsealed.set(fingerprint(value), next, data.exp);
      }
      const record =
        tokens.idToken === undefined ? this.#finalRecord(session, next) : this.#recordFrom(tokens, next);
      await this.#saveRecord(session.keys, record, session.data.exp);
      await this.#unlessEndedMeanwhile(session, newRt);
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
   * Saved, then checked (a sign-out writes its tombstone before deleting the record): a session
   * ended while its refresh was in flight stays ended, and the new refresh token is revoked too.
   */
  async #unlessEndedMeanwhile(session: Unsealed, newRt: string): Promise<void> {
    const { lookup } = session.keys;
    const now = this.#clock.now();
    const ended =
      this.#endings.endedHere(lookup, now) ||
      (await this.#endings.endedInStore(lookup, now).catch(() => false));
    if (!ended) return;
    await this.#store.del(KEY.record(lookup)).catch(() => undefined);
    this.#records.delete(lookup);
    await this.#endings.end({ lookup, until: session.data.exp, refreshToken: newRt });
    throw new RefreshError('terminal', 'the session was ended while it was being refreshed');
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
