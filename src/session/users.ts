import type { Clock } from '../clock.ts';
import { decrypt, encrypt } from './crypto.ts';
import type { Store } from './store.ts';
import type { UserKeyring, UserKeys } from './userKeys.ts';

/**
 * What the store keeps per user (issue 16), every key named by an HMAC of the user (userKeys.ts)
 * and tagged `{ref}` so that one user's keys share a Redis Cluster slot:
 *
 * - `u:{ref}` the **token chain**: the user's newest refresh token and ID token, shared by all the
 *   user's sessions (Dex keeps one refresh token per user and client), encrypted;
 * - `us:{ref}` a hash of the user's **sessions**: `m:<session>` → session end and encrypted
 *   metadata (created, user agent, client address, host, the provider's `sid`), `t:<session>` →
 *   last seen (written at most once per interval by activity.ts);
 * - `ps:<sid ref>` the sessions of one **provider session** (`sid` claim) → their user, encrypted;
 * - `all` every user with sessions → the user, encrypted (ending all sessions).
 *
 * Each list is one store query (HGETALL). Expired entries are pruned as they are read. A login
 * beyond MAX_SESSIONS_PER_USER ends the least recently seen (`beyond`), and a list decrypts at
 * most that many and LIST_MARGIN more, ranked by the plain last-seen fields, so what a list
 * costs stays bounded whatever the hash holds.
 */

/** Sessions a list may hold past the bound (logins racing the trim of another). */
export const LIST_MARGIN = 20;

export interface Chain {
  /** The newest refresh token of the user. */
  readonly rt: string;
  /** The newest ID token; absent when the provider issued none with the refresh (§12.2). */
  readonly idToken?: string;
  /** Its claims, as verified when it was received. */
  readonly claims?: Readonly<Record<string, unknown>>;
  readonly tokenExp: number;
  readonly tokenIat: number;
  /** When the chain last changed, ms (a session adopts a chain newer than what it reflects). */
  readonly at: number;
  /**
   * The hash of the refresh token this state was refreshed from: a session that lost its record
   * (Redis flushed) but holds that token may join. Absent after a login or a sign-out's rotation.
   */
  readonly from?: string;
  /** The provider refused `rt`: nobody refreshes with it again. */
  readonly terminal?: true;
}

export interface StoredChain {
  readonly chain: Chain;
  /** The blob as read (compare-and-set) and the key it was read under. */
  readonly blob: string;
  readonly ref: string;
}

export interface SessionMeta {
  /** Created, ms. */
  readonly c: number;
  readonly ua?: string;
  readonly ip?: string;
  readonly h?: string;
  /** The ID token's `sid` claim (the provider's session). */
  readonly sid?: string;
}

/** One session of a user, as the store lists it. */
export interface SessionSummary {
  /** The session's reference (its store lookup). */
  readonly ref: string;
  readonly created: number;
  readonly lastSeen: number;
  readonly sessionEnd: number;
  readonly userAgent: string | undefined;
  readonly clientAddress: string | undefined;
  readonly host: string | undefined;
  readonly providerSid: string | undefined;
}

const KEY = {
  chain: (ref: string) => `u:{${ref}}`,
  lock: (ref: string) => `lk:{${ref}}`,
  sessions: (ref: string) => `us:{${ref}}`,
  sid: (ref: string) => `ps:${ref}`,
  all: 'all',
};

/** `"<until> <value>"` */
function split(entry: string): { until: number; value: string } {
  const space = entry.indexOf(' ');
  return { until: Number(entry.slice(0, space)), value: entry.slice(space + 1) };
}

interface Ranked {
  readonly keys: UserKeys;
  readonly lookup: string;
  readonly entry: string;
  readonly seen: string | undefined;
  readonly rank: number;
}

/** What a session whose metadata no secret opens is listed with when it is ended. */
const UNREADABLE = {
  created: 0,
  lastSeen: 0,
  userAgent: undefined,
  clientAddress: undefined,
  host: undefined,
  providerSid: undefined,
} as const;

export class UserStore {
  readonly #store: Store;
  readonly #keys: UserKeyring;
  readonly #clock: Clock;
  /** How long a chain outlives its last write: the longest a session can still live. */
  readonly #chainTtlMs: number;
  /** MAX_SESSIONS_PER_USER. */
  readonly #maxSessions: number;

  constructor(options: {
    store: Store;
    keys: UserKeyring;
    clock: Clock;
    sessionTtlMs: number;
    maxSessionsPerUser?: number;
  }) {
    this.#store = options.store;
    this.#keys = options.keys;
    this.#clock = options.clock;
    this.#chainTtlMs = options.sessionTtlMs;
    this.#maxSessions = options.maxSessionsPerUser ?? 100;
  }

  // ---- the token chain ------------------------------------------------------------------------

  /** The user's chain (under the current secret's name, else an older one's). Throws StoreUnavailableError. */
  async chain(sub: string): Promise<StoredChain | undefined> {
    for (const keys of this.#keys.user(sub)) {
      const blob = await this.#store.get(KEY.chain(keys.ref));
      if (blob === null) continue;
      const json = decrypt(blob, keys.encryption, `chain:${keys.ref}`);
      if (json !== undefined) return { chain: JSON.parse(json) as Chain, blob, ref: keys.ref };
    }
    return undefined;
  }

  /**
   * Writes the chain under the current name. `expected`: compare-and-set against the chain as read
   * (undefined: only if there is none); 'any': unconditionally (a login). True when written.
   */
  async writeChain(sub: string, chain: Chain, expected: StoredChain | undefined | 'any'): Promise<boolean> {
    const keys = this.#keys.current(sub);
    const blob = encrypt(JSON.stringify(chain), keys.encryption, `chain:${keys.ref}`);
    const key = KEY.chain(keys.ref);
    if (expected === 'any') {
      await this.#store.set(key, blob, this.#chainTtlMs);
      return true;
    }
    const sameName = expected === undefined || expected.ref === keys.ref;
    const written = await this.#store.replaceIfEquals(
      key,
      sameName ? (expected?.blob ?? null) : null,
      blob,
      this.#chainTtlMs,
    );
    // Moved from an older secret's name: the old entry goes.
    if (written && !sameName && expected) await this.#store.del(KEY.chain(expected.ref));
    return written;
  }

  /** Deletes the chain only while it is still `blob` (not a later login's). */
  async deleteChainIf(sub: string, blob: string): Promise<void> {
    for (const keys of this.#keys.user(sub)) await this.#store.deleteIfEquals(KEY.chain(keys.ref), blob);
  }

  /** The store lock of the user's chain (refreshes of all the user's sessions take turns). */
  lockKey(sub: string): string {
    return KEY.lock(this.#keys.current(sub).ref);
  }

  // ---- the user's sessions --------------------------------------------------------------------

  async addSession(sub: string, lookup: string, until: number, meta: SessionMeta): Promise<void> {
    const keys = this.#keys.current(sub);
    const now = this.#clock.now();
    const ttl = Math.max(1, until - now);
    const sealed = encrypt(JSON.stringify(meta), keys.encryption, `meta:${lookup}`);
    await this.#store.hashSet(KEY.sessions(keys.ref), `m:${lookup}`, `${until} ${sealed}`, ttl);
    // Last seen from the start: lists rank sessions by it without decrypting them.
    await this.#store.hashSet(KEY.sessions(keys.ref), `t:${lookup}`, String(now), ttl);
    const values = this.#keys.values[0] as Buffer;
    // The user's entry lasts as long as the user's longest-lived session.
    const listed = await this.#store.hashGet(KEY.all, keys.ref);
    const longest = Math.max(until, listed === null ? 0 : split(listed).until || 0);
    await this.#store.hashSet(
      KEY.all,
      keys.ref,
      `${longest} ${encrypt(sub, values, `user:${keys.ref}`)}`,
      ttl,
    );
    if (meta.sid !== undefined) {
      const sidRef = this.#keys.sid(meta.sid)[0] as string;
      await this.#store.hashSet(
        KEY.sid(sidRef),
        lookup,
        `${until} ${encrypt(sub, values, `sid:${lookup}`)}`,
        ttl,
      );
    }
  }

  /** Takes one session out of the user's list (and its provider session's). */
  async removeSession(sub: string, lookup: string, providerSid?: string): Promise<void> {
    for (const keys of this.#keys.user(sub)) {
      await this.#store.hashDelete(KEY.sessions(keys.ref), [`m:${lookup}`, `t:${lookup}`]);
    }
    if (providerSid !== undefined) {
      for (const sidRef of this.#keys.sid(providerSid))
        await this.#store.hashDelete(KEY.sid(sidRef), [lookup]);
    }
  }

  /**
   * The user's sessions that have not reached their end, most recently seen first, one query per
   * secret in use; at most MAX_SESSIONS_PER_USER + LIST_MARGIN of them are decrypted and listed.
   */
  async sessions(sub: string): Promise<SessionSummary[]> {
    const ranked = await this.#ranked(sub);
    const out: SessionSummary[] = [];
    for (const entry of ranked.slice(0, this.#maxSessions + LIST_MARGIN)) {
      const summary = this.#summary(entry.keys, entry.lookup, entry.entry, entry.seen);
      if (summary !== undefined) out.push(summary);
    }
    return out.sort((a, b) => b.lastSeen - a.lastSeen);
  }

  /** The user's sessions past the `keep` most recently seen (a login beyond MAX_SESSIONS_PER_USER). */
  async beyond(sub: string, keep = this.#maxSessions): Promise<SessionSummary[]> {
    const out: SessionSummary[] = [];
    for (const entry of (await this.#ranked(sub)).slice(keep)) {
      const summary = this.#summary(entry.keys, entry.lookup, entry.entry, entry.seen);
      const { until } = split(entry.entry);
      out.push(summary ?? { ...UNREADABLE, ref: entry.lookup, sessionEnd: until });
    }
    return out;
  }

  /** The live entries of the user's lists, most recently seen first, undecrypted; prunes the ended. */
  async #ranked(sub: string): Promise<Ranked[]> {
    const now = this.#clock.now();
    const out: Ranked[] = [];
    for (const keys of this.#keys.user(sub)) {
      const key = KEY.sessions(keys.ref);
      const fields = await this.#store.hashGetAll(key);
      const stale: string[] = [];
      for (const [field, entry] of Object.entries(fields)) {
        if (!field.startsWith('m:')) continue;
        const lookup = field.slice(2);
        const until = split(entry).until;
        if (!Number.isFinite(until) || until <= now) stale.push(field, `t:${lookup}`);
        else
          out.push({
            keys,
            lookup,
            entry,
            seen: fields[`t:${lookup}`],
            rank: Number(fields[`t:${lookup}`]) || 0,
          });
      }
      if (stale.length > 0) await this.#store.hashDelete(key, stale);
    }
    return out.sort((a, b) => b.rank - a.rank);
  }

  /** Where activity.ts writes a session's last use. */
  async noteSeen(sub: string, lookup: string, at: number, until: number): Promise<void> {
    const keys = this.#keys.current(sub);
    await this.#store.hashSet(KEY.sessions(keys.ref), `t:${lookup}`, String(at), Math.max(1, until - at));
  }

  /** A session's last use as written by any replica; undefined when unknown. */
  async lastSeen(sub: string, lookup: string): Promise<number | undefined> {
    for (const keys of this.#keys.user(sub)) {
      const value = await this.#store.hashGet(KEY.sessions(keys.ref), `t:${lookup}`);
      const at = value === null ? Number.NaN : Number(value);
      if (Number.isFinite(at)) return at;
    }
    return undefined;
  }

  // ---- the provider-session and all-users indexes ----------------------------------------------

  /** The sessions of one provider session (`sid`): their user and end. */
  async sessionsBySid(sid: string): Promise<{ sub: string; ref: string; sessionEnd: number }[]> {
    const now = this.#clock.now();
    const out: { sub: string; ref: string; sessionEnd: number }[] = [];
    for (const sidRef of this.#keys.sid(sid)) {
      for (const [lookup, entry] of Object.entries(await this.#store.hashGetAll(KEY.sid(sidRef)))) {
        const { until, value } = split(entry);
        const sub = this.#openValue(value, `sid:${lookup}`);
        if (sub !== undefined && until > now) out.push({ sub, ref: lookup, sessionEnd: until });
      }
    }
    return out;
  }

  /** Every user with sessions that may still live. */
  async users(): Promise<string[]> {
    const now = this.#clock.now();
    const subs = new Set<string>();
    for (const [ref, entry] of Object.entries(await this.#store.hashGetAll(KEY.all))) {
      const { until, value } = split(entry);
      const sub = this.#openValue(value, `user:${ref}`);
      if (sub !== undefined && until > now) subs.add(sub);
    }
    return [...subs];
  }

  /** Takes a user whose sessions all ended out of the indexes (the chain goes with its revocation). */
  async dropUser(sub: string): Promise<void> {
    for (const keys of this.#keys.user(sub)) {
      await this.#store.del(KEY.sessions(keys.ref));
      await this.#store.hashDelete(KEY.all, [keys.ref]);
    }
  }

  #summary(
    keys: UserKeys,
    lookup: string,
    entry: string,
    seen: string | undefined,
  ): SessionSummary | undefined {
    const { until, value } = split(entry);
    const json = decrypt(value, keys.encryption, `meta:${lookup}`);
    if (json === undefined || !Number.isFinite(until)) return undefined;
    const meta = JSON.parse(json) as SessionMeta;
    const lastSeen = seen === undefined ? Number.NaN : Number(seen);
    return {
      ref: lookup,
      created: meta.c,
      lastSeen: Number.isFinite(lastSeen) ? Math.max(lastSeen, meta.c) : meta.c,
      sessionEnd: until,
      userAgent: meta.ua,
      clientAddress: meta.ip,
      host: meta.h,
      providerSid: meta.sid,
    };
  }

  #openValue(value: string, aad: string): string | undefined {
    for (const key of this.#keys.values) {
      const plain = decrypt(value, key, aad);
      if (plain !== undefined) return plain;
    }
    return undefined;
  }
}
