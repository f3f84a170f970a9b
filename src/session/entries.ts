import type { BoundedCache } from '../memory/budget.ts';
import { estimateBytes } from '../memory/size.ts';
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
  /** Bytes of the record's group names that are the pool's copies (charged there, once: groupNames.ts). */
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
    // JSON keeps the users' own characters: charged as two-byte, whatever they are (≤ 1 KB).
    if (entry.hot.auditWho !== undefined) bytes += 16 + 2 * entry.hot.auditWho.length;
  }
  return bytes;
}
