import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt } from 'jose';
import type { AuditWho } from '../audit/events.ts';
import type { Clock } from '../clock.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import type { BoundedCache } from '../memory/budget.ts';
import { type OidcProvider, RefreshError, type RefreshResult } from '../oidc/provider.ts';
import type { CallBudget } from './callBudget.ts';
import type { CookieCodec } from './codec.ts';
import { fingerprint } from './crypto.ts';
import type { Endings } from './endings.ts';
import type { SessionCookieData, SessionRecord, Unsealed } from './model.ts';
import type { RecordStore } from './recordStore.ts';
import { type Store, StoreUnavailableError } from './store.ts';
import type { Chain, StoredChain, UserStore } from './users.ts';

/**
 * The refresh coordinator (DESIGN §5, STYLE 8, issue 16 item 1). The sessions of one user share
 * one token chain in the store (users.ts): the user's newest refresh token and ID token — Dex
 * keeps one refresh token per user and client, so a login on browser B replaces the token browser
 * A holds, and A goes on with the chain's.
 *
 * A session's refresh: single-flight in this process (one promise per session), across replicas
 * and across the user's sessions by the chain's store lock (owner token, compare-and-delete
 * release, lease renewed while the token call runs) — lock, re-read, then decide: the session's
 * record may have been renewed by another replica, or the chain by another session (adopted
 * without calling the provider), else the provider is called once with the chain's refresh token
 * and the new chain written compare-and-set (a login may have replaced it meanwhile). Adopting
 * happens under the lock too, so every request of a session is handed the same new cookie. The
 * cookie then carries the newest refresh token it has seen.
 *
 * A session whose record the store lost (Redis flushed) is not trusted as it stands: it may join
 * the chain only with the chain's token or the one the chain was refreshed from; without a chain
 * it asks the provider with its own. While the store is down, the newest token this replica knows
 * is used, and nothing is shared. At most `budget.limit` provider calls per session per minute;
 * transient failures are retried (`retryDelaysMs`); a refusal ends the chain.
 */

/** Whose session (for the audit stream): the user as last known, the provider's subject, the groups. */
export type SessionWho = AuditWho;

export interface RefreshEvents {
  /** `who` comes with a provider call's outcome ('ok', 'terminal'): exactly once per call. */
  refresh(result: 'ok' | 'terminal' | 'transient' | 'coalesced', who?: SessionWho): void;
  lockWait(): void;
  /** A session was over its provider-call budget: no call was made. */
  throttled(): void;
}

export interface RefreshOptions {
  readonly store: Store;
  readonly users: UserStore;
  readonly oidc: Pick<OidcProvider, 'refresh' | 'revokeRefreshToken'>;
  readonly codec: CookieCodec;
  readonly records: RecordStore;
  readonly endings: Endings;
  readonly budget: CallBudget;
  /** user → the newest chain this replica has seen (used while the store is down). */
  readonly chains: BoundedCache<Chain>;
  readonly events: RefreshEvents;
  readonly log: Logger;
  readonly clock: Clock;
  readonly leaseMs: number;
  readonly lockWaitMs: number;
  readonly retryDelaysMs: readonly number[];
  readonly identify: (claims: Readonly<Record<string, unknown>>) => Identity;
  readonly needsRefresh: (record: SessionRecord, now: number) => boolean;
  /** A session ended while its refresh was in flight: end what is left of it at the provider. */
  readonly endedMeanwhile: (sub: string | undefined, lookup: string) => Promise<void>;
  /** A session from before the chain joined it: list it among its user's sessions. */
  readonly joined: (sub: string, session: Unsealed) => Promise<void>;
}

/** What a session is refreshed from: its cookie, its record, and whether the store still had it. */
export interface RefreshRequest {
  readonly session: Unsealed;
  /** The session's record: from the store (trusted), or what this replica remembers (not). */
  readonly known: SessionRecord | undefined;
  /** The store had the record: the session may join whatever state its user's chain is in. */
  readonly trusted: boolean;
  /** The store cannot be reached. */
  readonly storeDown: boolean;
  /** Retry transient failures (the current token has expired). */
  readonly patient: boolean;
}

interface Lock {
  readonly key: string;
  readonly owner: string;
}

export class RefreshCoordinator {
  readonly #o: RefreshOptions;
  readonly #inflight = new Map<string, Promise<SessionRecord>>();
  /** Store down: one provider call per user at a time in this process. */
  readonly #offline = new Map<string, Promise<Chain>>();

  constructor(options: RefreshOptions) {
    this.#o = options;
  }

  /** A fresh record for the session, or a RefreshError ('terminal': the session ends). */
  refresh(request: RefreshRequest): Promise<SessionRecord> {
    const key = request.session.keys.lookup;
    const running = this.#inflight.get(key);
    if (running) {
      this.#o.events.refresh('coalesced');
      return running;
    }
    const task = this.#refreshSession(request).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, task);
    return task;
  }

  /** The user of a session: its record's, else its cookie's. */
  static subOf(known: SessionRecord | undefined, session: Unsealed): string | undefined {
    const sub = known?.u ?? (known?.identity.sub || undefined) ?? session.data.u;
    return sub === '' ? undefined : sub;
  }

  async #refreshSession(request: RefreshRequest): Promise<SessionRecord> {
    const sub = RefreshCoordinator.subOf(request.known, request.session);
    if (request.storeDown) return this.#adopt(request, sub, await this.#offlineChain(request, sub));
    const lock = {
      key: sub ? this.#o.users.lockKey(sub) : `lk:${request.session.keys.lookup}`,
      owner: token(),
    };
    const deadline = this.#o.clock.now() + this.#o.lockWaitMs;
    let waited = false;
    for (;;) {
      const done = await this.#settled(request).catch(offline);
      if (done === OFFLINE) return this.#adopt(request, sub, await this.#offlineChain(request, sub));
      if (done) return done;
      const acquired = await this.#o.store.setIfAbsent(lock.key, lock.owner, this.#o.leaseMs).catch(offline);
      if (acquired === OFFLINE) return this.#adopt(request, sub, await this.#offlineChain(request, sub));
      if (acquired) return this.#holding(lock, () => this.#underLock(request, sub));
      if (!waited) {
        waited = true;
        this.#o.events.lockWait();
      }
      if (this.#o.clock.now() >= deadline)
        throw new RefreshError('transient', 'timed out waiting for another refresh');
      await sleep(25);
    }
  }

  /** Another replica renewed this very session meanwhile: its record is fresh again. */
  async #settled(request: RefreshRequest): Promise<SessionRecord | undefined> {
    const record = await this.#o.records.load(request.session.keys);
    if (record && !this.#o.needsRefresh(record, this.#o.clock.now())) {
      this.#o.events.refresh('coalesced');
      return record;
    }
    return undefined;
  }

  /** Holding the chain's lock: re-read, then adopt the chain or refresh it, then adopt. */
  async #underLock(request: RefreshRequest, sub: string | undefined): Promise<SessionRecord> {
    const settled = await this.#settled(request);
    if (settled) return settled;
    const stored = sub ? await this.#o.users.chain(sub) : undefined;
    const ready = this.#ready(request, stored?.chain);
    const chain = ready ?? (await this.#refreshChain(request, sub, stored));
    return this.#adopt(request, sub, chain);
  }

  /**
   * The chain as it stands when a session may take it without a provider call (fresh, and newer
   * than the session's cookie); undefined when it must be refreshed; a terminal RefreshError when
   * the session may not use it at all.
   */
  #ready(request: RefreshRequest, chain: Chain | undefined): Chain | undefined {
    if (chain === undefined) return undefined;
    const { session } = request;
    if (!request.trusted && !isMember(session, chain)) {
      throw new RefreshError(
        'terminal',
        'the store lost this session and its refresh token is not the chain’s',
      );
    }
    if (chain.terminal) throw new RefreshError('terminal', 'the provider refused the chain’s refresh token');
    // The cookie is newer than the chain (rotated while the store was down): refresh from the cookie.
    if (cookieTime(session) > chain.at) return undefined;
    const now = this.#o.clock.now();
    if (chain.idToken === undefined) return chain.at > (request.known?.ca ?? 0) ? chain : undefined;
    if (this.#o.needsRefresh(chainRecord(chain), now)) return undefined;
    this.#o.events.refresh('coalesced');
    return chain;
  }

  /** One provider call with the newest refresh token; the new chain written compare-and-set. */
  async #refreshChain(
    request: RefreshRequest,
    sub: string | undefined,
    stored: StoredChain | undefined,
  ): Promise<Chain> {
    const { session } = request;
    const useChain = stored !== undefined && cookieTime(session) <= stored.chain.at;
    const rt = useChain ? stored.chain.rt : session.data.rt;
    if (rt === '') throw new RefreshError('terminal', 'no refresh token in session');
    let tokens: RefreshResult;
    try {
      tokens = await this.#callProviderWithRetries(request, rt);
    } catch (error) {
      if (!(error instanceof RefreshError && error.kind === 'terminal')) {
        this.#o.events.refresh('transient');
        throw error;
      }
      return this.#refused(request, sub, stored, error);
    }
    const other = anotherUser(tokens, sub);
    if (other) return this.#refused(request, sub, stored, other);
    const chain = chainFrom(tokens, rt, this.#o.clock.now());
    if (sub !== undefined) {
      const written = await this.#o.users.writeChain(sub, chain, stored).catch(() => true);
      if (!written) return this.#replacedMeanwhile(request, sub, chain, rt);
      this.#o.chains.set(sub, chain, Number.POSITIVE_INFINITY);
    }
    this.#o.events.refresh('ok', whoOf(request, sub));
    this.#o.log.info(
      { rotated: chain.rt !== rt, ...(request.known ? { user: request.known.identity.user } : {}) },
      'token refreshed',
    );
    return chain;
  }

  /**
   * A login replaced the chain while the provider was answering: its chain wins; the token just
   * issued is of no use to anyone and is ended at the provider.
   */
  async #replacedMeanwhile(request: RefreshRequest, sub: string, ours: Chain, used: string): Promise<Chain> {
    if (ours.rt !== used)
      void this.#o.endings.act(() => this.#o.oidc.revokeRefreshToken(ours.rt), request.session.data.exp);
    const stored = await this.#o.users.chain(sub);
    const ready = this.#ready(request, stored?.chain);
    if (ready) return ready;
    throw new RefreshError('transient', 'the token chain changed during the refresh');
  }

  /**
   * The provider refused: unless a login replaced the chain meanwhile (its chain is then adopted
   * instead), the chain ends — nobody refreshes with its token again — and so does this session.
   */
  async #refused(
    request: RefreshRequest,
    sub: string | undefined,
    stored: StoredChain | undefined,
    error: RefreshError,
  ): Promise<Chain> {
    if (sub !== undefined) {
      const now = await this.#o.users.chain(sub).catch(() => undefined);
      if (now && now.blob !== stored?.blob && !now.chain.terminal) {
        const ready = this.#ready(request, now.chain);
        if (ready) return ready;
      }
      if (stored) {
        const dead: Chain = { ...stored.chain, terminal: true, at: this.#o.clock.now() };
        await this.#o.users.writeChain(sub, dead, stored).catch(() => false);
      }
    }
    this.#o.events.refresh('terminal', whoOf(request, sub));
    await this.#o.records.remove(request.session.keys.lookup);
    this.#o.log.info({ reason: error.message }, 'refresh refused; session ended');
    throw error;
  }

  /** The chain's state in the session: its record renewed, its cookie carrying the chain's refresh token. */
  async #adopt(request: RefreshRequest, sub: string | undefined, chain: Chain): Promise<SessionRecord> {
    const { session, known } = request;
    if (!request.trusted && !request.storeDown && !isMember(session, chain)) {
      throw new RefreshError(
        'terminal',
        'the store lost this session and its refresh token is not the chain’s',
      );
    }
    const now = this.#o.clock.now();
    let next = session;
    if (chain.rt !== session.data.rt || (sub !== undefined && session.data.u === undefined)) {
      const data: SessionCookieData = {
        ...session.data,
        rt: chain.rt,
        g: (session.data.g ?? 0) + 1,
        r: now,
        ...(sub !== undefined ? { u: sub } : {}),
      };
      next = await this.#o.codec.seal(data, now);
    }
    const record =
      chain.idToken === undefined
        ? this.#finalRecord(known, next, chain)
        : this.#recordFrom(chain, next, sub);
    await this.#o.records.save(session.keys, record, session.data.exp);
    await this.#unlessEndedMeanwhile(session, sub);
    if (sub !== undefined && known?.u === undefined && request.trusted)
      await this.#o.joined(sub, next).catch(() => undefined);
    return record;
  }

  #recordFrom(chain: Chain, next: Unsealed, sub: string | undefined): SessionRecord {
    const idToken = chain.idToken as string;
    return {
      idToken,
      tokenExp: chain.tokenExp,
      tokenIat: chain.tokenIat,
      identity: this.#o.identify(chain.claims ?? decodeJwt(idToken)),
      cookie: next.value,
      rtHash: next.rtHash,
      gen: next.data.g ?? 0,
      rotatedAt: next.data.r ?? next.data.iat,
      ca: chain.at,
      ...(sub !== undefined ? { u: sub } : {}),
    };
  }

  /**
   * A refresh answered without an ID token: the current one is served until it expires, with the
   * rotated refresh token's cookie, and then the session ends (never a refresh loop on the spent token).
   */
  #finalRecord(current: SessionRecord | undefined, next: Unsealed, chain: Chain): SessionRecord {
    if (!current || current.tokenExp <= this.#o.clock.now()) {
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
      ca: chain.at,
      final: true,
    };
  }

  /**
   * Saved, then checked (a sign-out writes its tombstone before deleting the record): a session
   * ended while its refresh was in flight stays ended, and what the refresh renewed is ended too.
   */
  async #unlessEndedMeanwhile(session: Unsealed, sub: string | undefined): Promise<void> {
    const { lookup } = session.keys;
    const now = this.#o.clock.now();
    const { endings } = this.#o;
    const ended =
      endings.endedHere(lookup, now) || (await endings.endedInStore(lookup, now).catch(() => false));
    if (!ended) return;
    await this.#o.records.remove(lookup);
    await this.#o.endedMeanwhile(sub, lookup);
    throw new RefreshError('terminal', 'the session was ended while it was being refreshed');
  }

  /**
   * The store is down: the newest token this replica knows (its last view of the chain, or the
   * cookie's when that is newer), one provider call per user at a time; nothing is shared.
   */
  #offlineChain(request: RefreshRequest, sub: string | undefined): Promise<Chain> {
    const { session } = request;
    const key = sub ?? `session:${session.keys.lookup}`;
    const now = this.#o.clock.now();
    const local = sub ? this.#o.chains.get(sub, now) : undefined;
    if (
      local &&
      cookieTime(session) <= local.at &&
      local.idToken &&
      !this.#o.needsRefresh(chainRecord(local), now)
    ) {
      return Promise.resolve(local);
    }
    const running = this.#offline.get(key);
    if (running) return running;
    const rt = local && cookieTime(session) <= local.at ? local.rt : session.data.rt;
    const task = (async () => {
      if (rt === '') throw new RefreshError('terminal', 'no refresh token in session');
      const tokens = await this.#callProviderWithRetries(request, rt).catch((error: unknown) => {
        const terminal = error instanceof RefreshError && error.kind === 'terminal';
        this.#o.events.refresh(terminal ? 'terminal' : 'transient', whoOf(request, sub));
        throw error;
      });
      const chain = chainFrom(tokens, rt, this.#o.clock.now());
      if (sub) this.#o.chains.set(sub, chain, Number.POSITIVE_INFINITY);
      this.#o.events.refresh('ok', whoOf(request, sub));
      return chain;
    })().finally(() => this.#offline.delete(key));
    this.#offline.set(key, task);
    return task;
  }

  async #callProviderWithRetries(request: RefreshRequest, rt: string): Promise<RefreshResult> {
    for (let attempt = 0; ; attempt++) {
      this.#spendBudget(request.session);
      try {
        // A session that can go on with its current token does not queue behind a storm for long.
        return await this.#o.oidc.refresh(rt, { impatient: !request.patient });
      } catch (error) {
        const refreshError =
          error instanceof RefreshError ? error : new RefreshError('transient', String(error));
        const delay = request.patient ? this.#o.retryDelaysMs[attempt] : undefined;
        if (refreshError.kind === 'terminal' || delay === undefined) throw refreshError;
        await sleep(delay);
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

  /**
   * Sign-out of one of several sessions of a user (endings.ts): the chain is moved on — its
   * refresh token spent for a new one that the other sessions go on with — so the signed-out
   * cookie's token is of no more use. Under the chain's lock; throws to be retried.
   */
  async rotate(sub: string): Promise<string> {
    const lock = { key: this.#o.users.lockKey(sub), owner: token() };
    const deadline = this.#o.clock.now() + this.#o.lockWaitMs;
    while (!(await this.#o.store.setIfAbsent(lock.key, lock.owner, this.#o.leaseMs))) {
      if (this.#o.clock.now() >= deadline)
        throw new RefreshError('transient', 'timed out waiting for the chain');
      await sleep(25);
    }
    return this.#holding(lock, async () => {
      const stored = await this.#o.users.chain(sub);
      if (stored === undefined || stored.chain.terminal) return 'no chain to move on';
      let tokens: RefreshResult;
      try {
        tokens = await this.#o.oidc.refresh(stored.chain.rt);
      } catch (error) {
        if (!(error instanceof RefreshError && error.kind === 'terminal')) throw error;
        await this.#o.users.writeChain(sub, { ...stored.chain, terminal: true }, stored);
        return 'refused';
      }
      const rotated = chainFrom(tokens, stored.chain.rt, this.#o.clock.now(), stored.chain);
      const moved: Chain = { ...rotated, from: undefined };
      await this.#o.users.writeChain(sub, moved, stored);
      this.#o.chains.set(sub, moved, Number.POSITIVE_INFINITY);
      if (moved.rt === stored.chain.rt) {
        this.#o.log.warn(
          'the provider did not rotate the refresh token: the signed-out cookie still holds the token the user’s other sessions use (sign out everywhere revokes it)',
        );
        return 'not rotated';
      }
      return 'rotated';
    });
  }

  /** Runs `work` holding `lock`, renewing its lease; releases it after. */
  async #holding<T>(lock: Lock, work: () => Promise<T>): Promise<T> {
    const renew = setInterval(
      () => {
        this.#o.store.expireIfEquals(lock.key, lock.owner, this.#o.leaseMs).catch(() => undefined);
      },
      Math.max(50, Math.floor(this.#o.leaseMs / 3)),
    );
    try {
      return await work();
    } finally {
      clearInterval(renew);
      await this.#o.store.deleteIfEquals(lock.key, lock.owner).catch(() => undefined);
    }
  }
}

const OFFLINE = Symbol('store down');
function offline(error: unknown): typeof OFFLINE {
  if (error instanceof StoreUnavailableError) return OFFLINE;
  throw error;
}

function token(): string {
  return randomBytes(16).toString('base64url');
}

/** When the cookie's refresh token came (login, rotation or adoption), ms. */
function cookieTime(session: Unsealed): number {
  return session.data.r ?? session.data.iat;
}

/** The session holds the chain's refresh token, or the one the chain was refreshed from. */
function isMember(session: Unsealed, chain: Chain): boolean {
  return session.data.rt === chain.rt || (chain.from !== undefined && session.rtHash === chain.from);
}

/** The chain's ID token times, as needsRefresh reads a record. */
function chainRecord(chain: Chain): SessionRecord {
  return { tokenExp: chain.tokenExp, tokenIat: chain.tokenIat } as SessionRecord;
}

/**
 * The chain after a provider's answer to a refresh with `used`. Without a new ID token (OpenID
 * Connect Core §12.2) it keeps `previous`'s (a sign-out's rotation), or has none: the sessions
 * then keep theirs until it expires.
 */
function chainFrom(tokens: RefreshResult, used: string, now: number, previous?: Chain): Chain {
  const rt = tokens.refreshToken ?? used;
  const from = fingerprint(used);
  if (tokens.idToken === undefined) {
    if (previous?.idToken === undefined) return { rt, tokenExp: 0, tokenIat: 0, at: now, from };
    const { idToken, claims, tokenExp, tokenIat } = previous;
    return { rt, idToken, ...(claims ? { claims } : {}), tokenExp, tokenIat, at: now, from };
  }
  const claims = tokens.claims;
  return {
    rt,
    idToken: tokens.idToken,
    claims,
    tokenExp: claims.exp * 1000,
    tokenIat: typeof claims.iat === 'number' ? claims.iat * 1000 : now,
    at: now,
    from,
  };
}

/**
 * OpenID Connect Core §12.2: a refreshed ID token's `sub` must be the session's (its `iss` is
 * checked against the issuer when it is verified). Another is terminal: the session ends.
 */
function anotherUser(tokens: RefreshResult, sub: string | undefined): RefreshError | undefined {
  const refreshed = tokens.claims?.sub;
  if (sub === undefined || refreshed === undefined || refreshed === sub) return undefined;
  return new RefreshError(
    'terminal',
    'the refreshed ID token names another sub than the session (OIDC Core §12.2)',
  );
}

/** Whose session a refresh was for, as last known. */
function whoOf(request: RefreshRequest, sub: string | undefined): SessionWho {
  const identity = request.known?.identity;
  return { user: identity?.user, sub: sub ?? identity?.sub, groups: identity?.groups };
}
