import type { EndedVia } from '../audit/events.ts';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { identityFromClaims } from '../identity/claims.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import { type BoundedCache, MemoryBudget } from '../memory/budget.ts';
import { estimateBytes } from '../memory/size.ts';
import { type OidcProvider, RefreshError, type TokenResult } from '../oidc/provider.ts';
import { Activity, type Seen } from './activity.ts';
import { CallBudget, type Window } from './callBudget.ts';
import { CookieCodec } from './codec.ts';
import { fingerprint, newSessionId } from './crypto.ts';
import { Endings } from './endings.ts';
import { entryBytes, type ReplyHeaders, type SessionEntries, type SessionEntry } from './entries.ts';
import { GroupNames } from './groupNames.ts';
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
import { RefreshCoordinator, type RefreshEvents, type SessionWho } from './refresh.ts';
import type { Sealer } from './seal.ts';
import { type Store, StoreUnavailableError } from './store.ts';
import { type EndedSession, UserEndings } from './userEndings.ts';
import { UserKeyring } from './userKeys.ts';
import { type Chain, type SessionSummary, UserStore } from './users.ts';

export type { ReplyHeaders } from './entries.ts';
export type { NoSessionReason, Resolution, SessionCookieData, SessionRecord, Valid } from './model.ts';
export type { SessionWho } from './refresh.ts';
export type { SessionSummary } from './users.ts';

/**
 * Sessions (DESIGN §5). The browser holds a sealed cookie {sid, refresh token, login time,
 * session end, user}; the store holds the ID token, the identity and the session's *current*
 * sealed cookie under HMAC(sid), encrypted with a key derived from sid — and, per user, the token
 * chain all the user's sessions share (Dex keeps one refresh token per user and client) and the
 * list of the user's sessions (users.ts).
 *
 * The service composes the parts, each with one job: the cookie codec (codec.ts), the record
 * store (recordStore.ts), the user store (users.ts), the refresh coordinator (refresh.ts:
 * single-flight, the chain's store lock, retries, the per-session call budget), the hot cache
 * (hotCache.ts), last uses (activity.ts), ended sessions (endings.ts) and what ending them asks of
 * the provider (userEndings.ts). Every in-process cache they hold is charged to one MemoryBudget,
 * in bytes; each session is kept once (entries.ts).
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
  /** Sessions ended (the audit stream's revocations), by any path. */
  ended?(who: SessionWho, count: number, via: EndedVia): void;
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
  /** The budget every cache is charged to (default: a quarter of the heap limit). */
  readonly memory?: MemoryBudget;
  /** How long the cookie before a rotation is still handed the current one. */
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
  /**
   * How long a session resolved while every replica's announcement reaches this one stays hot
   * (hotCache.ts; default 30 s, at most half the rotation grace and at most SESSION_IDLE_TIMEOUT).
   */
  readonly hotLiveMs?: number;
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

/** Where a login came from, for the user's list of sessions. */
export interface LoginContext {
  readonly host?: string;
  readonly userAgent?: string;
  /** The client address as the trusted proxy saw it. */
  readonly clientAddress?: string;
}

/** One session of one user, for "end this one" (the admin API, the sessions page). */
export interface SessionRef {
  /** The user: the `sub` of the login issuer's ID tokens. */
  readonly sub: string;
  /** The session (SessionSummary.ref, Valid.ref). */
  readonly session: string;
}

/** Only the sessions signed in on `host` (host-only cookies: each host is its own session); all when undefined. */
export type HostScope = string | undefined;

const onHost = (host: HostScope) => (s: SessionSummary) =>
  host === undefined || s.host?.toLowerCase() === host.toLowerCase();

const ONCE = (name: string) => `once:${name}`;

/** The caches of one service and their shares of the budget under pressure. */
function caches(memory: MemoryBudget) {
  return {
    entries: memory.cache<SessionEntry>('sessions', { share: 0.55, sizeOf: entryBytes }),
    cookies: memory.cache<Unsealed>('cookies', { share: 0.15, sizeOf: CookieCodec.sizeOf }),
    groupNames: new GroupNames(memory, 0.04),
    chains: memory.cache<Chain>('chains', { share: 0.05, sizeOf: (c) => estimateBytes(c) }),
    seen: memory.cache<Seen>('activity', { share: 0.05, sizeOf: () => 40 }),
    endings: memory.cache<number>('endings', { share: 0.1, sizeOf: () => 16 }),
    windows: memory.cache<Window>('call-budget', { share: 0.02, sizeOf: () => 32 }),
    logoutJtis: memory.cache<number>('logout-jtis', { share: 0.01, sizeOf: () => 80 }),
  };
}

type Caches = ReturnType<typeof caches>;

interface Parts {
  readonly entries: SessionEntries;
  readonly codec: CookieCodec;
  readonly records: RecordStore;
  readonly users: UserStore;
  readonly hot: HotCache;
  readonly activity: Activity;
  readonly endings: Endings;
  readonly refresher: RefreshCoordinator;
  readonly userEndings: UserEndings;
  /** The back-channel logout tokens this replica took, until they are too old to be accepted. */
  readonly logoutJtis: BoundedCache<number>;
}

export class SessionService {
  readonly #config: Config;
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events: SessionEvents;
  readonly #graceMs: number;
  readonly #identities: SessionIdentities | undefined;
  readonly #oidc: Pick<OidcProvider, 'revokeRefreshToken'>;
  readonly #p: Parts;
  #degraded = false;

  constructor(options: SessionServiceOptions) {
    this.#config = options.config;
    this.#store = options.store;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#events = options.events ?? noEvents;
    this.#graceMs = options.graceMs ?? 60_000;
    this.#identities = options.identities;
    this.#oidc = options.oidc;
    this.#p = this.#parts(options);
  }

  /** The parts, each handed the caches it uses (one budget for all). */
  #parts(options: SessionServiceOptions): Parts {
    const cache = caches(options.memory ?? new MemoryBudget());
    const codec = new CookieCodec(options.sealer, cache.cookies);
    const records = this.#records(options, cache);
    const users = this.#users();
    const hot = new HotCache({
      entries: cache.entries,
      codec,
      hotCacheMs: options.hotCacheMs ?? 1_000,
      liveMs: this.#hotLiveMs(options.hotLiveMs ?? 30_000),
      live: () => this.#store.subscriptionLive?.() ?? false,
      usable: (record, at) =>
        (this.#identities?.isCurrent(record.identity) ?? true) && !this.#needsRefresh(record, at),
    });
    const activity = new Activity({
      store: this.#store,
      users,
      idleMs: this.#config.sessionIdleTimeoutMs,
      seen: cache.seen,
    });
    const endings = this.#endings(options, cache, records);
    const refresher = this.#refresher(options, cache, { codec, records, users, endings });
    const userEndings = new UserEndings({ endings, users, refresher, oidc: options.oidc, log: this.#log });
    return {
      entries: cache.entries,
      codec,
      records,
      users,
      hot,
      activity,
      endings,
      refresher,
      userEndings,
      logoutJtis: cache.logoutJtis,
    };
  }

  /**
   * The long hot window, within the rotation grace (a cookie rotated elsewhere meanwhile is still
   * the one before) and within the idle timeout (a session resolved less than that ago cannot be
   * idle: the idle check happens on every resolution, never on the hot path).
   */
  #hotLiveMs(wanted: number): number {
    const idle = this.#config.sessionIdleTimeoutMs;
    return Math.min(wanted, this.#graceMs / 2, idle > 0 ? idle : Number.POSITIVE_INFINITY);
  }

  #records(options: SessionServiceOptions, cache: Caches): RecordStore {
    const clock = this.#clock;
    return new RecordStore({
      store: this.#store,
      entries: cache.entries,
      groupNames: cache.groupNames,
      recordGraceMs: options.recordGraceMs ?? 15 * 60_000,
      identities: this.#identities,
      onStoreDown: () => this.#storeDown(),
      now: () => clock.now(),
    });
  }

  #users(): UserStore {
    return new UserStore({
      store: this.#store,
      keys: new UserKeyring(this.#config.cookieSecrets, this.#config.issuerUrl),
      clock: this.#clock,
      sessionTtlMs: this.#config.sessionTtlMs,
      maxSessionsPerUser: this.#config.maxSessionsPerUser,
    });
  }

  #endings(options: SessionServiceOptions, cache: Caches, records: RecordStore): Endings {
    return new Endings({
      store: this.#store,
      records,
      local: cache.endings,
      clock: this.#clock,
      log: this.#log,
      dropCaches: (lookup) => this.#dropCaches(lookup),
      ...(options.revokeWaitMs !== undefined ? { revokeWaitMs: options.revokeWaitMs } : {}),
      ...(options.revokeRetryDelaysMs ? { retryDelaysMs: options.revokeRetryDelaysMs } : {}),
    });
  }

  /** The refresh coordinator: single-flight, the chain's store lock, retries, the call budget. */
  #refresher(
    options: SessionServiceOptions,
    cache: Caches,
    parts: Pick<Parts, 'codec' | 'records' | 'users' | 'endings'>,
  ): RefreshCoordinator {
    return new RefreshCoordinator({
      store: this.#store,
      ...parts,
      oidc: options.oidc,
      budget: new CallBudget(options.providerCallsPerMinute ?? 10, cache.windows),
      chains: cache.chains,
      events: this.#events,
      log: this.#log,
      clock: this.#clock,
      leaseMs: options.lockLeaseMs ?? 5_000,
      lockWaitMs: options.lockWaitMs ?? 8_000,
      retryDelaysMs: options.retryDelaysMs ?? [200, 600],
      identify: (claims) => this.#identify(claims),
      needsRefresh: (record, at) => this.#needsRefresh(record, at),
      endedMeanwhile: (sub, lookup) => this.#endedMeanwhile(sub, lookup),
      joined: (sub, session) => this.#list(sub, session, {}),
    });
  }

  /** True while the store is unreachable and sessions run on the cookie and local caches. */
  get degraded(): boolean {
    return this.#degraded;
  }

  /**
   * Creates a session from a fresh login; returns the sealed cookie value. A host-only session (no
   * COOKIE_DOMAIN) is bound to `login.host`. The login's refresh token becomes the user's token
   * chain: the user's other sessions go on with it, and the one it replaces is ended at the provider.
   */
  async create(
    tokens: TokenResult,
    login: LoginContext | string = {},
  ): Promise<{ cookie: string; record: SessionRecord; sessionEnd: number }> {
    const context = typeof login === 'string' ? { host: login } : login;
    const now = this.#clock.now();
    const sub =
      typeof tokens.claims.sub === 'string' && tokens.claims.sub !== '' ? tokens.claims.sub : undefined;
    const data: SessionCookieData = {
      v: 1,
      sid: newSessionId(),
      rt: tokens.refreshToken ?? '',
      iat: now,
      exp: now + this.#config.sessionTtlMs,
      r: now,
      ...(context.host !== undefined && this.#config.cookieDomain === undefined ? { h: context.host } : {}),
      ...(sub !== undefined ? { u: sub } : {}),
    };
    const session = await this.#p.codec.seal(data, now);
    const record: SessionRecord = { ...this.#recordFrom(tokens, session), ca: now };
    await this.#p.records.save(session.keys, record, data.exp);
    if (sub !== undefined) {
      await this.#joinChain(sub, tokens, now, data.exp);
      await this.#list(sub, session, { ...context, providerSid: tokens.claims['sid'] });
      await this.#trim(sub);
    }
    await this.#p.activity.started(session.keys.lookup, sub, data.exp, now);
    return { cookie: session.value, record, sessionEnd: data.exp };
  }

  /** A login's tokens become the user's chain; the refresh token they replace is ended at the provider. */
  async #joinChain(sub: string, tokens: TokenResult, now: number, sessionEnd: number): Promise<void> {
    if (tokens.refreshToken === undefined) return;
    const chain: Chain = {
      rt: tokens.refreshToken,
      idToken: tokens.idToken,
      claims: tokens.claims,
      tokenExp: tokens.claims.exp * 1000,
      tokenIat: typeof tokens.claims.iat === 'number' ? tokens.claims.iat * 1000 : now,
      at: now,
    };
    const { users, endings } = this.#p;
    const replaced = (await users.chain(sub).catch(() => undefined))?.chain;
    try {
      await users.writeChain(sub, chain, 'any');
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#storeDown();
    }
    if (replaced && !replaced.terminal && replaced.rt !== chain.rt) {
      const old = replaced.rt;
      await endings.act(() => this.#oidcRevoke(old), sessionEnd);
    }
  }

  /** Lists a session among its user's (created, user agent, client address, host, provider sid). */
  async #list(
    sub: string,
    session: Unsealed,
    context: LoginContext & { providerSid?: unknown },
  ): Promise<void> {
    const meta = {
      c: session.data.iat,
      ...(context.userAgent ? { ua: context.userAgent.slice(0, 512) } : {}),
      ...(context.clientAddress ? { ip: context.clientAddress } : {}),
      ...(context.host ? { h: context.host } : {}),
      ...(typeof context.providerSid === 'string' && context.providerSid !== ''
        ? { sid: context.providerSid }
        : {}),
    };
    await this.#p.users
      .addSession(sub, session.keys.lookup, session.data.exp, meta)
      .catch((error: unknown) => {
        if (!(error instanceof StoreUnavailableError)) throw error;
        this.#storeDown();
      });
  }

  /** A login beyond MAX_SESSIONS_PER_USER: the user's least recently seen sessions end. */
  async #trim(sub: string): Promise<void> {
    const beyond = await this.#p.users.beyond(sub).catch((error: unknown) => {
      if (!(error instanceof StoreUnavailableError)) throw error;
      return [];
    });
    if (beyond.length === 0) return;
    this.#log.info(
      { ended: beyond.length },
      'login beyond MAX_SESSIONS_PER_USER: least recently seen sessions ended',
    );
    await this.#p.userEndings.trim(sub, beyond.map(ended));
  }

  /**
   * The hot path, synchronously: a session resolved less than hotCacheMs ago (hotCache.ts), or
   * undefined when the full resolve() is needed.
   */
  peekHot(cookie: string, host?: string, now = this.#clock.now()): Valid | undefined {
    const hot = this.#p.hot.peek(cookie, host, now);
    if (hot === undefined) return undefined;
    const { resolution } = hot;
    this.#p.activity.touch(hot.lookup, resolution.record.u, resolution.sessionEnd, now);
    return resolution;
  }

  /** The answer headers of a resolved session, built once by `build` and kept with it while it is hot. */
  replyHeaders(session: Valid, build: () => ReplyHeaders): ReplyHeaders {
    return this.#p.hot.headers(session, build, this.#clock.now());
  }

  /** The audit stream's who-part of a resolved session's lines, made once by `build` while it is hot. */
  auditWho(session: Valid, build: (session: Valid) => string): string {
    return this.#p.hot.auditWho(session, build, this.#clock.now());
  }

  /** Resolves a session cookie, presented on `host`, to a fresh ID token, refreshing when needed. */
  async resolve(cookie: string, host?: string): Promise<Resolution> {
    const now = this.#clock.now();
    const hot = this.peekHot(cookie, host, now);
    if (hot) return hot;
    const resolution = await this.#resolveSlow(cookie, now, host);
    if (resolution.kind === 'valid') {
      const presented = this.#p.codec.peek(cookie, now);
      if (presented) {
        this.#p.activity.touch(presented.keys.lookup, resolution.record.u, resolution.sessionEnd, now);
        this.#p.hot.remember(presented.keys.lookup, presented.value, resolution, now);
      }
    }
    return resolution;
  }

  async #resolveSlow(cookie: string, now: number, host: string | undefined): Promise<Resolution> {
    const presented = await this.#p.codec.unseal(cookie, now);
    if (!presented) return NONE.invalid;
    if (presented.data.exp <= now) return NONE.expired;
    if (presented.data.h !== undefined && host !== undefined && presented.data.h !== host) {
      return NONE.otherHost;
    }
    const { lookup } = presented.keys;
    if (this.#p.endings.endedHere(lookup, now)) {
      // Also puts the tombstone back into a store that lost it (for replicas started later).
      await this.#p.endings.endedInStore(lookup, now).catch(() => true);
      return NONE.signedOut;
    }
    const loaded = await this.#load(presented, now);
    if (loaded === undefined) return NONE.signedOut;
    const known = loaded.record ?? loaded.fallback;
    const sub = RefreshCoordinator.subOf(known, presented);
    if (!loaded.storeDown && (await this.#p.activity.isIdle(lookup, sub, now))) {
      this.#log.info('session unused for SESSION_IDLE_TIMEOUT; ended');
      await this.#endSession(presented, known, 'idle');
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
    const { records, endings } = this.#p;
    try {
      const record = await records.load(keys);
      this.#setDegraded(false);
      if (record !== undefined) return { record, fallback: undefined, storeDown: false };
      // Missing: expired, flushed or ended. A tombstone says which.
      if (await endings.endedInStore(keys.lookup, now)) return undefined;
      // Flushed or restarted empty: not trusted as it stands (this replica may have missed a
      // sign-out); the provider is asked again, and what we knew is served only if it cannot answer.
      return { record: undefined, fallback: records.known(keys.lookup, now), storeDown: false };
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#storeDown();
      return { record: records.known(keys.lookup, now), fallback: undefined, storeDown: true };
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
    const adopted = await this.#p.codec.unseal(reference.cookie, now);
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
      const refreshed = await this.#p.refresher.refresh({
        session: current,
        known: fallback,
        trusted: record !== undefined,
        storeDown: loaded.storeDown,
        patient,
      });
      return { record: refreshed, refreshed: true };
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
    const { codec } = this.#p;
    let setCookie: string | undefined = isNewer(record, presented) ? record.cookie : undefined;
    const held = setCookie ?? cookie;
    if (codec.isSealedWithOldSecret(held)) {
      const data = setCookie
        ? ((await codec.unseal(setCookie, now))?.data ?? presented.data)
        : presented.data;
      setCookie = await codec.reseal(data, now);
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
   * Signs out: the session ends everywhere and for good — tombstoned, every replica told to drop
   * its caches (endings.ts) — and its refresh token is spent: the user's chain revoked when this
   * was the user's last session, moved on otherwise (userEndings.ts).
   */
  async destroy(cookie: string): Promise<void> {
    const now = this.#clock.now();
    const presented = await this.#p.codec.unseal(cookie, now);
    if (!presented) return;
    let record: SessionRecord | undefined;
    try {
      record = await this.#p.records.load(presented.keys);
    } catch {
      // store down: what this replica knows will do
    }
    await this.#endSession(
      presented,
      record ?? this.#p.records.known(presented.keys.lookup, now),
      'sign-out',
    );
    this.#p.codec.forget(cookie);
  }

  /** The record behind a cookie as last stored, without refreshing (sign-out's id_token_hint). */
  async peekRecord(cookie: string): Promise<SessionRecord | undefined> {
    const now = this.#clock.now();
    const { codec, records } = this.#p;
    const unsealed = await codec.unseal(cookie, now);
    if (!unsealed) return undefined;
    try {
      return (await records.load(unsealed.keys)) ?? records.known(unsealed.keys.lookup, now);
    } catch {
      return records.known(unsealed.keys.lookup, now);
    }
  }

  /** The identity behind a cookie as last stored, without refreshing (for logs and pages). */
  async peekIdentity(cookie: string): Promise<Identity | undefined> {
    return (await this.peekRecord(cookie))?.identity;
  }

  // ---- a user's sessions (issue 16 items 2-3: the sessions page, the admin API, back-channel logout)

  /** The user's sessions that have not ended, most recently seen first; `current` marks one. */
  async listForUser(
    sub: string,
    current?: string,
    host?: HostScope,
  ): Promise<(SessionSummary & { current: boolean })[]> {
    return (await this.#p.users.sessions(sub))
      .filter(onHost(host))
      .map((s) => ({ ...s, current: s.ref === current }));
  }

  /** Ends one session of a user (of `host`'s, when given); false when the user has no such session. */
  async end(ref: SessionRef, host?: HostScope): Promise<boolean> {
    const summary = (await this.#p.users.sessions(ref.sub)).find(
      (s) => s.ref === ref.session && onHost(host)(s),
    );
    if (!summary) return false;
    await this.#p.userEndings.end(ref.sub, [ended(summary)]);
    this.#ended({ sub: ref.sub }, 1, 'session');
    return true;
  }

  /**
   * Ends every session of a user ("sign out everywhere"); their refresh token is revoked. With
   * `host`, only the sessions of that host (the user's sessions on other hosts go on).
   */
  async endAllForUser(sub: string, via: EndedVia = 'user', host?: HostScope): Promise<number> {
    const all = await this.#p.users.sessions(sub);
    const sessions = all.filter(onHost(host));
    const everywhere = sessions.length === all.length;
    await this.#p.userEndings.end(sub, sessions.map(ended), { everywhere });
    if (everywhere) await this.#p.users.dropUser(sub).catch(() => undefined);
    if (sessions.length > 0) this.#ended({ sub }, sessions.length, via);
    return sessions.length;
  }

  /** Ends every session of every user. */
  async endAll(): Promise<number> {
    let count = 0;
    for (const sub of await this.#p.users.users()) count += await this.endAllForUser(sub, 'all');
    return count;
  }

  /** Ends the sessions of one provider session (back-channel logout's `sid`). */
  async endBySid(providerSid: string): Promise<number> {
    const found = await this.#p.users.sessionsBySid(providerSid);
    const bySub = new Map<string, EndedSession[]>();
    for (const s of found) {
      bySub.set(s.sub, [...(bySub.get(s.sub) ?? []), { ref: s.ref, until: s.sessionEnd, providerSid }]);
    }
    for (const [sub, sessions] of bySub) {
      await this.#p.userEndings.end(sub, sessions);
      this.#ended({ sub }, sessions.length, 'provider-sid');
    }
    return found.length;
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

  /**
   * Takes a back-channel logout token's `jti` once, until `until` (ms: when the token is too old
   * to be accepted): false when this replica (its memory, which outlives a Redis that lost its
   * data) or the store saw it before. Unlike useOnce, an unreachable store is not "not seen":
   * StoreUnavailableError is thrown, and the provider retries later.
   */
  async useLogoutTokenOnce(jti: string, until: number): Promise<boolean> {
    const name = fingerprint(`backchannel-logout:${jti}`);
    const now = this.#clock.now();
    if (this.#p.logoutJtis.peek(name, now) !== undefined) return false;
    const first = await this.#store.setIfAbsent(ONCE(name), '1', Math.max(1_000, until - now));
    this.#p.logoutJtis.set(name, until, until);
    return first;
  }

  /** Stops background work (retries of revocations, the subscription). */
  close(): void {
    this.#p.endings.close();
  }

  // ---- internals ------------------------------------------------------------------------------

  /** Ends the session behind `presented` (sign-out, idle); the provider step per userEndings.ts. */
  async #endSession(presented: Unsealed, record: SessionRecord | undefined, via: EndedVia): Promise<void> {
    let newest = presented;
    if (record && isNewer(record, presented)) {
      const adopted = await this.#p.codec.unseal(record.cookie, this.#clock.now());
      if (adopted?.data.sid === presented.data.sid) newest = adopted;
    }
    const sub = RefreshCoordinator.subOf(record, presented);
    const providerSid = sub ? await this.#providerSid(sub, presented.keys.lookup) : undefined;
    await this.#p.userEndings.end(
      sub,
      [{ ref: presented.keys.lookup, until: presented.data.exp, providerSid }],
      {
        newestRt: newest.data.rt,
      },
    );
    const identity = record?.identity;
    this.#ended({ user: identity?.user, sub, groups: identity?.groups }, 1, via);
  }

  #ended(who: SessionWho, count: number, via: EndedVia): void {
    try {
      this.#events.ended?.(who, count, via);
    } catch {
      // the audit stream never fails an ending
    }
  }

  async #providerSid(sub: string, lookup: string): Promise<string | undefined> {
    const listed = await this.#p.users.sessions(sub).catch(() => []);
    return listed.find((s) => s.ref === lookup)?.providerSid;
  }

  /** A session was ended while it was being refreshed: its user's chain is ended or moved on as for a sign-out. */
  async #endedMeanwhile(sub: string | undefined, lookup: string): Promise<void> {
    if (sub === undefined) return;
    const left = await this.#p.users.sessions(sub).catch(() => undefined);
    if (left?.some((s) => s.ref !== lookup)) return; // the sign-out moved the chain on
    await this.#p.endings.act(async () => {
      const stored = await this.#p.users.chain(sub);
      return stored && !stored.chain.terminal ? this.#oidcRevoke(stored.chain.rt) : 'no refresh token';
    }, this.#clock.now() + this.#config.sessionTtlMs);
  }

  #oidcRevoke(rt: string): Promise<string> {
    return this.#oidc.revokeRefreshToken(rt);
  }

  /** Drops what this replica holds for a session (undefined: for every session). */
  #dropCaches(lookup: string | undefined): void {
    this.#p.records.drop(lookup);
    if (lookup !== undefined) this.#p.activity.forget(lookup);
  }

  #needsRefresh(record: SessionRecord, now: number): boolean {
    return needsRefresh(record, now, this.#config.refreshSkewMs);
  }

  #identify(claims: Readonly<Record<string, unknown>>): Identity {
    return this.#identities ? this.#identities.identify(claims) : identityFromClaims(claims, this.#config);
  }

  #recordFrom(tokens: TokenResult, session: Unsealed): SessionRecord {
    const claims = tokens.claims;
    return {
      idToken: tokens.idToken,
      tokenExp: claims.exp * 1000,
      tokenIat: typeof claims.iat === 'number' ? claims.iat * 1000 : this.#clock.now(),
      identity: this.#identify(claims),
      cookie: session.value,
      rtHash: session.rtHash,
      gen: session.data.g ?? 0,
      rotatedAt: session.data.r ?? session.data.iat,
      ...(session.data.rt === '' ? { final: true } : {}),
      ...(session.data.u !== undefined ? { u: session.data.u } : {}),
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

function ended(summary: SessionSummary): EndedSession {
  return { ref: summary.ref, until: summary.sessionEnd, providerSid: summary.providerSid };
}
