import type { BoundedCache } from '../memory/budget.ts';
import { estimateBytes, stringBytes } from '../memory/size.ts';
import type { SessionRecord, Valid } from './model.ts';

/**
 * The one in-process entry per session (issue 15: each session kept once): the record as last
 * read or written (it also carries the session while the store is down), the tag of the stored
 * blob it came from (an unchanged blob is not decrypted again), and the hot slot — the last
 * resolution of one cookie with the answer headers built for it. The entry's bytes are charged to
 * the memory budget once, and grow with the hot slot while it is in use.
 */
export interface SessionEntry {
  record: SessionRecord;
  /** The authentication tag of the encrypted blob `record` was read from or written as. */
  tag: string | undefined;
  hot: HotSlot | undefined;
  /** Bytes of the record's group names that are the pool's copies (charged there, once: internGroups). */
  groupsShared: number;
}

/** A 200's headers as Node's writeHead takes them: name, value, name, value… */
export type ReplyHeaders = readonly (string | readonly string[])[];

export interface HotSlot {
  /** The cookie value this resolution answers (the codec's copy of it: not counted again). */
  readonly cookie: string;
  /** Hot until then, whatever happens. */
  readonly until: number;
  /** Hot until then while the replicas' announcements reach this one (0: not resolved while they did). */
  readonly liveUntil: number;
  readonly resolution: Valid;
  headers: ReplyHeaders | undefined;
  /** The audit stream's who-part of this session's lines (auditLog.ts whoFragment), once asked for. */
  auditWho: string | undefined;
  /** Bytes the record shares with the headers and the cookies cache once they are built (hotCache.ts). */
  shared: number;
}

export type SessionEntries = BoundedCache<SessionEntry>;

export function entryBytes(entry: SessionEntry): number {
  let bytes = 64 + estimateBytes(entry.record) - entry.groupsShared + (entry.tag?.length ?? 0) + 16;
  if (entry.hot) {
    bytes += 96 + (entry.hot.resolution.setCookie?.length ?? 0);
    if (entry.hot.headers) bytes += estimateBytes(entry.hot.headers, 3) - entry.hot.shared;
    if (entry.hot.auditWho !== undefined) bytes += stringBytes(entry.hot.auditWho);
  }
  return bytes;
}

/** The pool of group names the sessions share (bounded like every cache; the name is its own key). */
export type GroupNames = BoundedCache<string>;

/**
 * Puts the pool's copy of each group name into `groups` (same contents: nothing anyone reads
 * changes), adding the names it lacks. A platform's users share their groups — a team's members
 * hold the same few hundred names — so a session's groups cost it one pointer each rather than a
 * string each (issue 15: 150 groups of 40 characters were 8 KB per session). Returns the bytes of
 * the names this session found in the pool, which it need not be charged for again: a name it
 * brings itself stays charged to it in full, so an identity provider sending thousands of names
 * no one else holds cannot make the pool's evictions leave them uncounted. What can go uncounted
 * is one copy of a shared name after the session that brought it is gone.
 */
export function internGroups(groups: readonly string[], pool: GroupNames): number {
  if (groups.length === 0 || Object.isFrozen(groups)) return 0;
  const names = groups as string[];
  let shared = 0;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    const pooled = pool.peek(name, 0);
    if (pooled === undefined) {
      pool.set(name, name, Number.POSITIVE_INFINITY);
    } else {
      names[i] = pooled;
      shared += stringBytes(name);
    }
  }
  return shared;
}
