import type { BoundedCache } from '../memory/budget.ts';
import { detached, estimateBytes, stringBytes } from '../memory/size.ts';
import { deriveSessionKeys, fingerprint } from './crypto.ts';
import type { SessionCookieData, Unsealed } from './model.ts';
import type { Sealer } from './seal.ts';

/**
 * The session cookie's codec (DESIGN §5): seals {sid, refresh token, login time, session end, …}
 * with the first COOKIE_SECRETS entry (iron-session, seal.ts), unseals with any, checks the shape,
 * and derives the session's store keys from sid. Unsealed cookies are cached by their value until
 * the session's end (an unseal costs more than the rest of a decision).
 */
export class CookieCodec {
  readonly #sealer: Sealer;
  readonly #cache: BoundedCache<Unsealed>;

  constructor(sealer: Sealer, cache: BoundedCache<Unsealed>) {
    this.#sealer = sealer;
    this.#cache = cache;
  }

  /** The sizes a cache of unsealed cookies charges (the cookie value is the key: not counted twice). */
  static sizeOf(this: void, unsealed: Unsealed): number {
    return (
      200 + estimateBytes(unsealed.data) + stringBytes(unsealed.keys.lookup) + stringBytes(unsealed.rtHash)
    );
  }

  /** A cookie unsealed before (synchronous; the hot path). */
  peek(cookie: string, now: number): Unsealed | undefined {
    return this.#cache.peek(cookie, now);
  }

  /** The cookie's content, or undefined when it is no valid, unexpired seal of ours. */
  async unseal(cookie: string, now: number): Promise<Unsealed | undefined> {
    const hit = this.#cache.get(cookie, now);
    if (hit) return hit;
    const data = await this.#sealer.unseal<SessionCookieData>(cookie);
    if (!isCookieData(data)) return undefined;
    // The presented value is cut from the request's Cookie header: kept, it would keep the header.
    const value = detached(cookie);
    const unsealed: Unsealed = {
      value,
      data,
      keys: deriveSessionKeys(data.sid),
      rtHash: fingerprint(data.rt),
    };
    if (data.exp > now) this.#cache.set(value, unsealed, data.exp);
    return unsealed;
  }

  /** Seals `data` until the session's end; the new cookie is known unsealed at once. */
  async seal(data: SessionCookieData, now: number): Promise<Unsealed> {
    const value = await this.#sealer.seal({ ...data }, (data.exp - now) / 1000);
    const unsealed: Unsealed = {
      value,
      data,
      keys: deriveSessionKeys(data.sid),
      rtHash: fingerprint(data.rt),
    };
    this.#cache.set(value, unsealed, data.exp);
    return unsealed;
  }

  /** The same content sealed again with the current secret (COOKIE_SECRETS rotation). */
  async reseal(data: SessionCookieData, now: number): Promise<string> {
    return (await this.seal(data, now)).value;
  }

  isSealedWithOldSecret(cookie: string): boolean {
    return this.#sealer.isSealedWithOldSecret(cookie);
  }

  forget(cookie: string): void {
    this.#cache.delete(cookie);
  }
}

function isCookieData(data: SessionCookieData | undefined): data is SessionCookieData {
  return (
    data?.v === 1 &&
    typeof data.sid === 'string' &&
    typeof data.rt === 'string' &&
    typeof data.exp === 'number' &&
    typeof data.iat === 'number' &&
    (data.h === undefined || typeof data.h === 'string') &&
    (data.r === undefined || typeof data.r === 'number')
  );
}
