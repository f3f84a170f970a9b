import type { CookieCodec } from './codec.ts';
import type { ReplyHeaders, SessionEntries } from './entries.ts';
import type { SessionRecord, Valid } from './model.ts';

/**
 * The hot cache (DESIGN §11): a session resolved less than `hotCacheMs` ago is answered from its
 * entry without asking the store, synchronously. It lives in the session's one entry (entries.ts):
 * dropping the entry (sign-out here or announced by another replica, eviction) or replacing its
 * record (refresh) ends it at once; a sign-out elsewhere whose message was lost, within
 * hotCacheMs anyway.
 */
export interface HotCacheOptions {
  readonly entries: SessionEntries;
  readonly codec: CookieCodec;
  readonly hotCacheMs: number;
  /** False when the record must be looked at again (identity mapped with an older configuration, refresh due). */
  readonly usable: (record: SessionRecord, now: number) => boolean;
}

export class HotCache {
  readonly #entries: SessionEntries;
  readonly #codec: CookieCodec;
  readonly #ms: number;
  readonly #usable: (record: SessionRecord, now: number) => boolean;

  constructor(options: HotCacheOptions) {
    this.#entries = options.entries;
    this.#codec = options.codec;
    this.#ms = options.hotCacheMs;
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
    if (hot === undefined || hot.cookie !== cookie || hot.until <= now) return undefined;
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
    entry.hot = { cookie, until: now + this.#ms, resolution, headers: undefined };
    this.#entries.resize(lookup);
  }

  /** The answer headers of a hot resolution, built once by `build` and kept in its slot. */
  headers(resolution: Valid, build: () => ReplyHeaders, now: number): ReplyHeaders {
    const lookup = resolution.ref;
    const hot = lookup === undefined ? undefined : this.#entries.peek(lookup, now)?.hot;
    if (hot?.resolution !== resolution) return build();
    if (hot.headers === undefined) {
      hot.headers = build();
      this.#entries.resize(lookup as string);
    }
    return hot.headers;
  }
}
