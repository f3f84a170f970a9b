import { createHmac, hkdfSync } from 'node:crypto';
import type { CookieSecret } from '../config.ts';

/**
 * Keys for what the store keeps per user (issue 16): the token chain, the user's sessions, the
 * provider-`sid` and all-users indexes. Store keys are HMACs of the user (issuer + sub) and values
 * are encrypted with keys derived from COOKIE_SECRETS and the user, so a copy of Redis alone
 * yields neither a token nor who the users are.
 *
 * COOKIE_SECRETS rotate: the first secret names and encrypts what is written; every secret's
 * names are tried when reading (current first), so sessions of the older secret keep finding
 * their user until the old secret is removed — then its entries simply expire.
 */
export interface UserKeys {
  /** HMAC(index key, iss|sub), base64url: the Redis Cluster hash tag of the user's keys. */
  readonly ref: string;
  /** The AES-256-GCM key of the user's chain and session metadata. */
  readonly encryption: Buffer;
}

interface SecretKeys {
  readonly index: Buffer;
  readonly encryption: Buffer;
  readonly sid: Buffer;
  /** Encrypts the subjects stored in the sid and all-users indexes. */
  readonly values: Buffer;
}

const derive = (secret: string, info: string) =>
  Buffer.from(hkdfSync('sha256', secret, 'dex-forward-auth/users', info, 32));

export class UserKeyring {
  readonly #issuer: string;
  readonly #secrets: readonly SecretKeys[];

  constructor(secrets: readonly CookieSecret[], issuer: string) {
    if (secrets.length === 0) throw new Error('at least one cookie secret is required');
    this.#issuer = issuer;
    this.#secrets = secrets.map((s) => ({
      index: derive(s.secret, 'user-index'),
      encryption: derive(s.secret, 'user-encryption'),
      sid: derive(s.secret, 'sid-index'),
      values: derive(s.secret, 'index-values'),
    }));
  }

  /** The user's keys under each secret, the current (first) one first. */
  user(sub: string): UserKeys[] {
    const name = `${this.#issuer}\n${sub}`;
    return this.#secrets.map((k) => ({
      ref: createHmac('sha256', k.index).update(name).digest('base64url'),
      encryption: createHmac('sha256', k.encryption).update(name).digest(),
    }));
  }

  /** The current keys of the user. */
  current(sub: string): UserKeys {
    return this.user(sub)[0] as UserKeys;
  }

  /** The names of a provider session (`sid` claim) under each secret, current first. */
  sid(sid: string): string[] {
    const name = `${this.#issuer}\n${sid}`;
    return this.#secrets.map((k) => createHmac('sha256', k.sid).update(name).digest('base64url'));
  }

  /** The keys that encrypt index values, current first. */
  get values(): Buffer[] {
    return this.#secrets.map((k) => k.values);
  }
}
