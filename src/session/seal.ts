import { hash } from 'node:crypto';
import type { CookieSecret } from '../config.ts';
import { sealIron, unsealIron } from './iron.ts';

/**
 * Sealed cookie values (iron-session: AES-256-CBC + HMAC-SHA256, expiry inside the seal).
 * The first COOKIE_SECRETS entry seals; every entry unseals, so secrets rotate by list. Seals are
 * written and read synchronously with node:crypto (iron.ts), in iron-session's format.
 */
export class Sealer {
  readonly #sealPassword: string;
  readonly #unsealPasswords: ReadonlyMap<string, string>;
  readonly #currentId: string;

  constructor(secrets: readonly CookieSecret[]) {
    const first = secrets[0];
    if (!first) throw new Error('at least one cookie secret is required');
    this.#currentId = String(numericId(first.id));
    this.#sealPassword = first.secret;
    this.#unsealPasswords = new Map(secrets.map((s) => [String(numericId(s.id)), s.secret]));
  }

  /** Seals `data`; the seal itself expires after `ttlSeconds`. */
  async seal(data: Record<string, unknown>, ttlSeconds: number): Promise<string> {
    const ttlMs = Math.max(1, Math.ceil(ttlSeconds)) * 1000;
    // iron-session's token version suffix (its v2 format: the data as is, no `persistent` wrapper).
    return `${sealIron(data, this.#currentId, this.#sealPassword, ttlMs, Date.now())}~2`;
  }

  /** The sealed data, or undefined when the value is not a valid, unexpired seal of ours. */
  async unseal<T extends object>(value: string): Promise<T | undefined> {
    return this.unsealNow<T>(value);
  }

  /** unseal(), synchronously (no thread-pool round trips: the hot path's cookie check). */
  unsealNow<T extends object>(value: string, now = Date.now()): T | undefined {
    if (value.length < 40 || value.length > 4096 || !value.startsWith('Fe26.2*')) return undefined;
    // Only the exact form seal() writes: iron-session parses the "~2" version suffix loosely
    // ("~2x", "~2~junk"), which would make one session answer to many cookie values.
    if (value.indexOf('~') !== value.length - 2 || !value.endsWith('~2')) return undefined;
    const data = unsealIron(value.slice(0, -2), this.#unsealPasswords, now);
    if (data === null || typeof data !== 'object' || Array.isArray(data)) return undefined;
    return Object.keys(data).length === 0 ? undefined : (data as T);
  }

  /** True when `value` was sealed with a secret other than the current (first) one. */
  isSealedWithOldSecret(value: string): boolean {
    return value.split('*', 3)[1] !== this.#currentId;
  }
}

/** iron-session needs numeric password ids; map ours stably (digits as is, else a 31-bit hash). */
function numericId(id: string): number {
  if (/^\d{1,9}$/.test(id)) return Number(id);
  return Number.parseInt(hash('sha256', id, 'hex').slice(0, 7), 16) + 1_000_000_000;
}
