import { decodeJwt } from 'jose';
import type { Identity } from '../identity/identity.ts';
import { detached } from '../memory/size.ts';
import { ID_TOKEN_MAX_BYTES } from '../oidc/limits.ts';
import { decrypt, encrypt, type SessionKeys } from './crypto.ts';
import type { SessionEntries } from './entries.ts';
import { type GroupNames, internGroups } from './groupNames.ts';
import type { SessionRecord } from './model.ts';
import { type Store, StoreUnavailableError } from './store.ts';

/**
 * Session records in the store (DESIGN §5): under HMAC(sid, "lookup"), AES-256-GCM with a key
 * derived from sid, for the ID token's life plus a grace (never beyond the session's end); and
 * tombstones of ended sessions. What it last read or wrote stays in the session's entry, which
 * carries the session while the store is down.
 */

const KEY = {
  record: (lookup: string) => `s:${lookup}`,
  tombstone: (lookup: string) => `so:${lookup}`,
};

/** AUTHENTICATION_CONFIG: whether a stored identity was mapped with the file in force. */
export interface IdentityMapper {
  identify(claims: Readonly<Record<string, unknown>>): Identity;
  isCurrent(identity: Identity): boolean;
}

export interface RecordStoreOptions {
  readonly store: Store;
  readonly entries: SessionEntries;
  /** The group names the sessions share (groupNames.ts). */
  readonly groupNames: GroupNames;
  /** How long a record outlives its ID token, so a stale cookie can still find the current one. */
  readonly recordGraceMs: number;
  readonly identities: IdentityMapper | undefined;
  /** Told when the store could not take a write (the session goes on from memory). */
  readonly onStoreDown: () => void;
  readonly now: () => number;
}

/**
 * No record a login writes comes near this (an ID token of at most ID_TOKEN_MAX_BYTES, its
 * identity, base64 of the encryption): a larger one is treated as unreadable, never decrypted.
 */
const RECORD_MAX_CHARS = 4 * ID_TOKEN_MAX_BYTES;

/** The GCM tag at the end of a blob: it changes with every write (kept apart from the blob). */
const tagOf = (blob: string) => detached(blob.slice(-22));

export class RecordStore {
  readonly #store: Store;
  readonly #entries: SessionEntries;
  readonly #groupNames: GroupNames;
  readonly #graceMs: number;
  readonly #identities: IdentityMapper | undefined;
  readonly #onStoreDown: () => void;
  readonly #now: () => number;
  readonly #loading = new Map<string, Promise<SessionRecord | undefined>>();

  constructor(options: RecordStoreOptions) {
    this.#store = options.store;
    this.#entries = options.entries;
    this.#groupNames = options.groupNames;
    this.#graceMs = options.recordGraceMs;
    this.#identities = options.identities;
    this.#onStoreDown = options.onStoreDown;
    this.#now = options.now;
  }

  /**
   * The stored record; undefined when missing or unreadable (or larger than any record a login
   * can write: an ID token over the provider limits). Concurrent loads of one session share one
   * read and one decryption. When this replica holds the session's entry, the store only says
   * whether the blob still carries the entry's tag (an unchanged blob is neither sent nor
   * decrypted again). Throws StoreUnavailableError.
   */
  load(keys: SessionKeys): Promise<SessionRecord | undefined> {
    const running = this.#loading.get(keys.lookup);
    if (running) return running;
    const task = this.#load(keys).finally(() => this.#loading.delete(keys.lookup));
    this.#loading.set(keys.lookup, task);
    return task;
  }

  async #load(keys: SessionKeys): Promise<SessionRecord | undefined> {
    const held = this.#entries.get(keys.lookup, this.#now());
    const key = KEY.record(keys.lookup);
    if (held?.tag === undefined) return this.#fromBlob(keys, await this.#store.get(key));
    const blob = await this.#store.getIfChanged(key, held.tag);
    if (blob !== false) return this.#fromBlob(keys, blob);
    // Unchanged; unless the entry was replaced or evicted while the store answered: then read it whole.
    const entry = this.#entries.peek(keys.lookup, this.#now());
    if (entry !== undefined && entry.tag === held.tag)
      return this.#remapped(keys.lookup, entry.record, held.tag);
    return this.#fromBlob(keys, await this.#store.get(key));
  }

  /** The record in a stored blob (the entry's when the blob is the one it came from). */
  #fromBlob(keys: SessionKeys, blob: string | null): SessionRecord | undefined {
    if (blob === null || blob.length > RECORD_MAX_CHARS) return undefined;
    const entry = this.#entries.peek(keys.lookup, this.#now());
    const tag = tagOf(blob);
    if (entry?.tag === tag) return this.#remapped(keys.lookup, entry.record, tag);
    const json = decrypt(blob, keys.encryption, keys.lookup);
    if (json === undefined) return undefined;
    const record = this.#remapped(keys.lookup, JSON.parse(json) as SessionRecord, tag);
    this.#keep(keys.lookup, record, tag, record.tokenExp + this.#graceMs);
    return record;
  }

  /** What this replica last knew of the session (no store call). */
  known(lookup: string, now: number): SessionRecord | undefined {
    return this.#entries.get(lookup, now)?.record;
  }

  /** Stores a record for its token's life plus the grace, never beyond the session's end. */
  async save(keys: SessionKeys, record: SessionRecord, sessionEnd: number): Promise<void> {
    const now = this.#now();
    const until = Math.min(sessionEnd, record.tokenExp + this.#graceMs);
    if (until <= now) {
      this.#keep(keys.lookup, record, undefined, until);
      return;
    }
    const blob = encrypt(JSON.stringify(record), keys.encryption, keys.lookup);
    this.#keep(keys.lookup, record, tagOf(blob), until);
    try {
      await this.#store.set(KEY.record(keys.lookup), blob, until - now);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.#onStoreDown();
    }
  }

  /** Deletes the stored record (best effort) and this replica's entry. */
  async remove(lookup: string): Promise<void> {
    this.#entries.delete(lookup);
    await this.#store.del(KEY.record(lookup)).catch(() => undefined);
  }

  /** Whether a tombstone says the session was ended. Throws StoreUnavailableError. */
  async isEnded(lookup: string): Promise<boolean> {
    return (await this.#store.get(KEY.tombstone(lookup))) !== null;
  }

  /** A tombstone until `until`, then the record deleted (a refresher checks the tombstone after saving). */
  async markEnded(lookup: string, until: number): Promise<void> {
    await this.#store.set(KEY.tombstone(lookup), '1', Math.max(1, until - this.#now()));
    await this.#store.del(KEY.record(lookup));
  }

  /** Writes a tombstone back (a store that lost it). */
  async restoreTombstone(lookup: string, until: number): Promise<void> {
    await this.#store.set(KEY.tombstone(lookup), '1', Math.max(1, until - this.#now()));
  }

  /** Forgets what this replica holds for one session (undefined: for every session). */
  drop(lookup: string | undefined): void {
    if (lookup === undefined) this.#entries.clear();
    else this.#entries.delete(lookup);
  }

  /** A record mapped with an older AUTHENTICATION_CONFIG, mapped again from its (verified) ID token. */
  #remapped(lookup: string, record: SessionRecord, tag: string): SessionRecord {
    if (!this.#identities || this.#identities.isCurrent(record.identity)) return record;
    const remapped = { ...record, identity: this.#identities.identify(decodeJwt(record.idToken)) };
    this.#keep(lookup, remapped, tag, record.tokenExp + this.#graceMs);
    return remapped;
  }

  #keep(lookup: string, record: SessionRecord, tag: string | undefined, until: number): void {
    const now = this.#now();
    const entry = this.#entries.peek(lookup, now);
    if (entry && entry.record === record && entry.tag === tag) return;
    const groupsShared = internGroups(record.identity.groups, this.#groupNames);
    this.#entries.set(lookup, { record, tag, hot: undefined, groupsShared }, until);
  }
}
