import { stringBytes } from '../memory/size.ts';
import type { CookieCodec } from './codec.ts';
import type { HotSlot, ReplyHeaders, SessionEntries } from './entries.ts';
import type { SessionRecord, Valid } from './model.ts';

/**
 * The hot cache (DESIGN §11): a session resolved less than `hotCacheMs` ago is answered from its
 * entry without asking the store, synchronously. It lives in the session's one entry (entries.ts):
 * dropping the entry (sign-out here or announced by another replica, eviction) or replacing its
 * record (refresh) ends it at once; a sign-out elsewhere whose message was lost, within
 * hotCacheMs anyway.
 *
 * While the replicas' announcements reach this one (`live`: the pub/sub subscription connected
 * since its last gap, and every gap drops every entry), no message can have been lost, and a
 * resolution made then stays hot for `liveMs` (issue 15: with thousands of sessions each is seen
 * less than once a second, and would otherwise always ask the store). The other changes another
 * replica makes to a session leave what this one serves valid meanwhile: a refresh elsewhere
 * leaves this ID token valid (a token due for refresh is never hot), and a cookie rotated
 * elsewhere is still within its rotation grace (liveMs is shorter).
 */
export interface HotCacheOptions {
  readonly entries: SessionEntries;
  readonly codec: CookieCodec;
  readonly hotCacheMs: number;
  /** How long a resolution made while `live` stays hot while it still is (0: hotCacheMs only). */
  readonly liveMs?: number;
  /** Whether every other replica's announcement reaches this one now. */
  readonly live?: () => boolean;
  /** False when the record must be looked at again (identity mapped with an older configuration, refresh due). */
  readonly usable: (record: SessionRecord, now: number) => boolean;
}

/**
 * Each string of a session kept once (issue 15): the record's current cookie is the codec's copy
 * of the same value, and its ID token a view into the `Authorization: Bearer …` value the answer
 * carries (Node flattens that value into a copy of its own when it writes it). Same contents, so
 * nothing anyone reads changes; only the duplicate copies become garbage. Returns the bytes no
 * longer held twice (the cookie is charged to the cookies cache, its key).
 */
function shareStrings(record: SessionRecord, cookie: string, headers: ReplyHeaders): number {
  const shared = record as { -readonly [K in keyof SessionRecord]: SessionRecord[K] };
  let bytes = 0;
  if (record.cookie === cookie) {
    shared.cookie = cookie;
    bytes += stringBytes(cookie);
  }
  const bearer = `Bearer ${record.idToken}`;
  const value = headers.find((v) => v === bearer);
  if (typeof value === 'string') {
    shared.idToken = value.slice(7);
    bytes += record.idToken.length;
  }
  return bytes;
}

/** The longest audit who-part a hot slot keeps (characters). */
export const MAX_KEPT_WHO = 1024;

export class HotCache {
  readonly #entries: SessionEntries;
  readonly #codec: CookieCodec;
  readonly #ms: number;
  readonly #liveMs: number;
  readonly #live: () => boolean;
  readonly #usable: (record: SessionRecord, now: number) => boolean;

  constructor(options: HotCacheOptions) {
    this.#entries = options.entries;
    this.#codec = options.codec;
    this.#ms = options.hotCacheMs;
    this.#liveMs = Math.max(options.liveMs ?? 0, options.hotCacheMs);
    this.#live = options.live ?? (() => false);
    this.#usable = options.usable;
  }

  /**
   * The resolution of `cookie` when it is hot: the same cookie resolved less than hotCacheMs ago,
   * still backed by the same record, before the session's end, usable, and on its own host.
   */
  peek(
    cookie: string,
    host: string | undefined,
    now: number,
  ): { resolution: Valid; lookup: string } | undefined {
    const lookup = this.#codec.peek(cookie, now)?.keys.lookup;
    if (lookup === undefined) return undefined;
    const hot = this.#entries.peek(lookup, now)?.hot;
    if (hot === undefined || hot.cookie !== cookie) return undefined;
    if (hot.until <= now && (hot.liveUntil <= now || !this.#live())) return undefined;
    const { resolution } = hot;
    if (
      resolution.sessionEnd <= now ||
      this.#entries.peek(lookup, now)?.record !== resolution.record ||
      !this.#usable(resolution.record, now) ||
      (resolution.host !== undefined && host !== undefined && resolution.host !== host)
    ) {
      return undefined;
    }
    return { resolution, lookup };
  }

  /** Remembers a resolution of `cookie` (the codec's copy of the value) for hotCacheMs. */
  remember(lookup: string, cookie: string, resolution: Valid, now: number): void {
    if (this.#ms <= 0) return;
    const entry = this.#entries.peek(lookup, now);
    if (entry === undefined || entry.record !== resolution.record) return;
    // A cookie handed its successor (the one before a rotation) is held for hotCacheMs only: its
    // grace runs out, and it must be refused then.
    const long = this.#liveMs > this.#ms && resolution.setCookie === undefined && this.#live();
    const liveUntil = long ? now + this.#liveMs : 0;
    entry.hot = {
      cookie,
      until: now + this.#ms,
      liveUntil,
      resolution,
      headers: undefined,
      auditWho: undefined,
      shared: 0,
    };
    this.#entries.resize(lookup);
  }

  /** The answer headers of a hot resolution, built once by `build` and kept in its slot. */
  headers(resolution: Valid, build: () => ReplyHeaders, now: number): ReplyHeaders {
    const hot = this.#slotOf(resolution, now);
    if (hot === undefined) return build();
    if (hot.headers === undefined) {
      hot.headers = build();
      hot.shared = shareStrings(resolution.record, hot.cookie, hot.headers);
      this.#entries.resize(resolution.ref);
    }
    return hot.headers;
  }

  /**
   * The audit stream's who-part of a hot resolution's lines, made once by `build` and kept in its
   * slot — when it is short: a user of many groups would pay in memory (a cache miss, ~140 µs) for
   * what a few microseconds of JSON make again.
   */
  auditWho(resolution: Valid, build: (resolution: Valid) => string, now: number): string {
    const hot = this.#slotOf(resolution, now);
    if (hot === undefined) return build(resolution);
    if (hot.auditWho === undefined) {
      const who = build(resolution);
      if (who.length > MAX_KEPT_WHO) return who;
      hot.auditWho = who;
      this.#entries.resize(resolution.ref);
    }
    return hot.auditWho;
  }

  /** The hot slot `resolution` is the resolution of, if it still is. */
  #slotOf(resolution: Valid, now: number): HotSlot | undefined {
    const hot = this.#entries.peek(resolution.ref, now)?.hot;
    return hot?.resolution === resolution ? hot : undefined;
  }
}
