import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { identityFromClaims } from '../identity/claims.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import { MemoryBudget } from '../memory/budget.ts';
import { estimateBytes } from '../memory/size.ts';
import { type OidcProvider, RefreshError, type TokenResult } from '../oidc/provider.ts';
import { Activity, type Seen } from './activity.ts';
import { CallBudget, type Window } from './callBudget.ts';
import { CookieCodec } from './codec.ts';
import { fingerprint, newSessionId } from './crypto.ts';
import { Endings } from './endings.ts';
import { entryBytes, type ReplyHeaders, type SessionEntries, type SessionEntry } from './entries.ts';
import { HotCache } from './hotCache.ts';
import {
  isNewer,
  type Loaded,
  NONE,
  needsRefresh,
  type Resolution,
  type SessionCookieData,
  type SessionRecord,
  type Unsealed,
  type Valid,
} from './model.ts';
import { type IdentityMapper, RecordStore } from './recordStore.ts';
import { RefreshCoordinator, type RefreshEvents } from './refresh.ts';
import type { Sealer } from './seal.ts';
import { type Store, StoreUnavailableError } from './store.ts';

export type { ReplyHeaders } from './entries.ts';
export type { NoSessionReason, Resolution, SessionCookieData, SessionRecord, Valid } from './model.ts';

/**
 * Sessions (DESIGN §5). The browser holds a sealed cookie {sid, refresh token, login time,
 * session end}; the store holds the ID token, the identity and the session's *current* sealed
 * cookie under HMAC(sid), encrypted with a key derived from sid.
 *
 * The service composes the parts, each with one job: the cookie codec (codec.ts), the record
 * store (recordStore.ts), the refresh coordinator (refresh.ts: single-flight, store lock, shared
 * results, retries, the per-session call budget), the hot cache (hotCache.ts), last uses for
 * SESSION_IDLE_TIMEOUT (activity.ts) and ended sessions (endings.ts). Every in-process cache they
 * hold is charged to one MemoryBudget, in bytes; each session is kept once (entries.ts).
 *
 * A browser that presents the cookie just before the session's current one, within the rotation
 * grace period, is handed the current one; an older cookie, or one presented later, is refused
 * (a copy taken before a rotation is not upgraded forever).
 *
 * A session ends at its absolute end (SESSION_TTL), after SESSION_IDLE_TIMEOUT without use, at
 * sign-out, or when the provider refuses a refresh. Sign-out and the idle end hold even after
 * Redis loses its data (endings.ts). A host-only session (no COOKIE_DOMAIN) is bound to the host
 * it was created for: its cookie replayed on another host is no session there.
 */

export interface SessionEvents extends RefreshEvents {
  storeError(): void;
  degraded(value: boolean): void;
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
  /** The budget every cache is charged to (default: one of CACHE_MAX_BYTES or a quarter of the heap). */
  readonly memory?: MemoryBudget;
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

export type SessionIdentities = IdentityMapper;

const ONCE = (name: string) => `once:${name}`;

/** The caches of one service and their shares of the budget under pressure. */
function caches(memory: MemoryBudget) {
  return {
    entries: memory.cache<SessionEntry>('sessions', { share: 0.55, sizeOf: entryBytes }),
    cookies: memory.cache<Unsealed>('cookies', { share: 0.15, sizeOf: CookieCodec.sizeOf }),
    results: memory.cache<SessionRecord | 'terminal'>('refresh-results', {
      share: 0.05,
      sizeOf: (r) => (r === 'terminal' ? 0 : estimateBytes(r)),
    }),
    seen: memory.cache<Seen>('activity', { share: 0.05, sizeOf: () => 40 }),
    endings: memory.cache<number>('endings', { share: 0.1, sizeOf: () => 16 }),
    windows: memory.cache<Window>('call-budget', { share: 0.02, sizeOf: () => 32 }),
  };
}

export class SessionService {
  readonly #config: Config;
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events: SessionEvents;
  readonly #graceMs: number;
  readonly #identities: SessionIdentities | undefined;
  readonly #entries: SessionEntries;
  readonly #codec: CookieCodec;
  readonly #records: RecordStore;
  readonly #hot: HotCache;
  readonly #refresher: RefreshCoordinator;
  /** Last use per session, when SESSION_IDLE_TIMEOUT is on. */
  readonly #activity: Activity | undefined;
  readonly #endings: Endings;
  #degraded = false;

  constructor(options: SessionServiceOptions) {
    this.#config = options.config;
    this.#store = options.store;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#events = options.events ?? noEvents;
    this.#graceMs = options.graceMs ?? 60_000;
    this.#identities = options.identities;
    const memory = options.memory ?? new MemoryBudget();
    const cache = caches(memory);
    this.#entries = cache.entries;
    this.#codec = new CookieCodec(options.sealer, cache.cookies);
    const now = () => this.#clock.now();
    this.#records = new RecordStore({
      store: this.#store,
      entries: this.#entries,
      recordGraceMs: options.recordGraceMs ?? 15 * 60_000,
      identities: this.#identities,
      onStoreDown: () => this.#storeDown(),
      now,
    });
    this.#hot = new HotCache({
      entries: this.#entries,
      codec: this.#codec,
      hotCacheMs: options.hotCacheMs ?? 1_000,
      usable: (record, at) =>
        (this.#identities?.isCurrent(record.identity) ?? true) && !this.#needsRefresh(record, at),
    });
    const idleMs = this.#config.sessionIdleTimeoutMs;
    this.#activity = idleMs > 0 ? new Activity({ store: this.#store, idleMs, seen: cache.seen }) : undefined;
    this.#endings = new Endings({
      store: this.#store,
      records: this.#records,
      local: cache.endings,
      oidc: options.oidc,
      clock: this.#clock,
      log: this.#log,
      dropCaches: (lookup) => this.#dropCaches(lookup),
      ...(options.revokeWaitMs !== undefined ? { revokeWaitMs: options.revokeWaitMs } : {}),
      ...(options.revokeRetryDelaysMs ? { retryDelaysMs: options.revokeRetryDelaysMs } : {}),
    });
    this.#refresher = new RefreshCoordinator({
      store: this.#store,
      oidc: options.oidc,
      codec: this.#codec,
      records: this.#records,
      endings: this.#endings,
      budget: new CallBudget(options.providerCallsPerMinute ?? 10, cache.windows),
      results: cache.results,
      events: this.#events,
      log: this.#log,
      clock: this.#clock,
      graceMs: this.#graceMs,
      leaseMs: options.lockLeaseMs ?? 5_000,
      lockWaitMs: options.lockWaitMs ?? 8_000,
      retryDelaysMs: options.retryDelaysMs ?? [200, 600],
      recordFrom: (tokens, session) => this.#recordFrom(tokens, session),
      needsRefresh: (record, at) => this.#needsRefresh(record, at),
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
    const session = await this.#codec.seal(data, now);
    const record = this.#recordFrom(tokens, session);
    await this.#records.save(session.keys, record, data.exp);
    await this.#activity?.started(session.keys.lookup, data.exp, now);
    return { cookie: session.value, record, sessionEnd: data.exp };
  }

  /**
   * The hot path, synchronously: a session resolved less than hotCacheMs ago (hotCache.ts), or
   * undefined when the full resolve() is needed.
   */
  peekHot(cookie: string, host?: string, now = this.#clock.now()): Valid | undefined {
    const hot = this.#hot.peek(cookie, host, now);
    if (hot === undefined) return undefined;
    this.#activity?.touch(hot.lookup, hot.resolution.sessionEnd, now);
    return hot.resolution;
  }

  /** The answer headers of a resolved session, built once by `build` and kept with it while it is hot. */
  replyHeaders(session: Valid, build: () => ReplyHeaders): ReplyHeaders {
    return this.#hot.headers(session, build, this.#clock.now());
  }

  /** Resolves a session cookie, presented on `host`, to a fresh ID token, refreshing when needed. */
  async resolve(cookie: string, host?: string): Promise<Resolution> {
    const now = this.#clock.now();
    const hot = this.peekHot(cookie, host, now);
    if (hot) return hot;
    const resolution = await this.#resolveSlow(cookie, now, host);
    if (resolution.kind === 'valid') {
      const presented = this.#codec.peek(cookie, now);
      if (presented) {
        this.#activity?.touch(presented.keys.lookup, resolution.sessionEnd, now);
        this.#hot.remember(presented.keys.lookup, presented.value, resolution, now);
      }
    }
    return resolution;
  }

  async #resolveSlow(cookie: string, now: number, host: string | undefined): Promise<Resolution> {
    const presented = await this.#codec.unseal(cookie, now);
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
    const known = loaded.record ?? loaded.fallback;
    if (!loaded.storeDown && this.#activity && (await this.#activity.isIdle(lookup, now))) {
      this.#log.info('session unused for SESSION_IDLE_TIMEOUT; ended');
      await this.#endSession(presented, known);
      return NONE.idle;
    }
    const current = await this.#currentCookie(presented, known, now);
    if (current === undefined) {
      this.#log.info(
        'a cookie older than the session’s current one came after the rotation grace; refused (if this repeats for every user, the proxy does not pass Set-Cookie from 2xx auth answers: Traefik addAuthCookiesToResponse)',
      );
      return NONE.stale;
    }
    // Nothing can renew it: at its ID token's expiry the session ends (a new login, silent if it can be).
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
      const record = await this.#records.load(keys);
      this.#setDegraded(false);
      if (record !== undefined) return { record, fallback: undefined, storeDown: false };
      // Missing: expired, flushed or ended. A tombstone says which.
      if (await this.#endings.endedInStore(keys.lookup, now)) return undefined;
      // Flushed or restarted empty: not trusted as it stands (this replica may have missed a
      // sign-out); the provider is asked again, and what we knew is served only if it cannot answer.
      return { record: undefined, fallback: this.#records.known(keys.lookup, now), storeDown: false };
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#storeDown();
      return { record: this.#records.known(keys.lookup, now), fallback: undefined, storeDown: true };
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
    const adopted = await this.#codec.unseal(reference.cookie, now);
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
      return { record: await this.#refresher.refresh(current, 0, patient, skipLocal), refreshed: true };
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
        {
          detail: (error as Error).message,
          headers: { 'Retry-After': '5' },
        },
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
    if (this.#codec.isSealedWithOldSecret(held)) {
      const data = setCookie
        ? ((await this.#codec.unseal(setCookie, now))?.data ?? presented.data)
        : presented.data;
      setCookie = await this.#codec.reseal(data, now);
    }
    return {
      kind: 'valid',
      ref: presented.keys.lookup,
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
    const presented = await this.#codec.unseal(cookie, now);
    if (!presented) return;
    let record: SessionRecord | undefined;
    try {
      record = await this.#records.load(presented.keys);
    } catch {
      // store down: what this replica knows will do
    }
    await this.#endSession(presented, record ?? this.#records.known(presented.keys.lookup, now));
    this.#codec.forget(cookie);
  }

  /** The record behind a cookie as last stored, without refreshing (sign-out's id_token_hint). */
  async peekRecord(cookie: string): Promise<SessionRecord | undefined> {
    const now = this.#clock.now();
    const unsealed = await this.#codec.unseal(cookie, now);
    if (!unsealed) return undefined;
    try {
      return (await this.#records.load(unsealed.keys)) ?? this.#records.known(unsealed.keys.lookup, now);
    } catch {
      return this.#records.known(unsealed.keys.lookup, now);
    }
  }

  /** The identity behind a cookie as last stored, without refreshing (for logs and pages). */
  async peekIdentity(cookie: string): Promise<Identity | undefined> {
    return (await this.peekRecord(cookie))?.identity;
  }

  /** Marks a one-time value used (login state); false when it was already used. */
  async useOnce(name: string, ttlMs: number): Promise<boolean> {
    try {
      return await this.#store.setIfAbsent(ONCE(fingerprint(name)), '1', ttlMs);
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
      const adopted = await this.#codec.unseal(record.cookie, this.#clock.now());
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
    this.#records.drop(lookup);
    if (lookup === undefined) this.#refresher.forgetResults();
    else this.#activity?.forget(lookup);
  }

  #needsRefresh(record: SessionRecord, now: number): boolean {
    return needsRefresh(record, now, this.#config.refreshSkewMs);
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

  #storeDown(): void {
    this.#events.storeError();
    this.#setDegraded(true);
  }

  #setDegraded(value: boolean): void {
    if (this.#degraded === value) return;
    this.#degraded = value;
    this.#events.degraded(value);
    if (value)
      this.#log.warn('session store unavailable: degraded mode, serving from cookies and local cache');
    else this.#log.info('session store available again');
  }
}
