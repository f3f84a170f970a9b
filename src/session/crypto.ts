import { createCipheriv, createDecipheriv, createHmac, hash, randomBytes } from 'node:crypto';

/**
 * Per-session keys. The Redis key and the value's encryption key are both derived from the
 * session id, which lives only in the user's sealed cookie: a copy of Redis alone yields neither
 * a way to find a session's entry from a cookie nor a readable token.
 */
export interface SessionKeys {
  /** HMAC(sid, "lookup"), base64url: the store key. */
  readonly lookup: string;
  /** HMAC(sid, "encrypt"): the AES-256-GCM key of the stored value. */
  readonly encryption: Buffer;
}

export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

export function deriveSessionKeys(sid: string): SessionKeys {
  return {
    lookup: createHmac('sha256', sid).update('lookup').digest('base64url'),
    encryption: createHmac('sha256', sid).update('encrypt').digest(),
  };
}

/** A short, stable fingerprint of a secret value (cookie, refresh token) for cache keys. */
export function fingerprint(value: string): string {
  return hash('sha256', value, 'base64url');
}

const VERSION = 'v1';

/** AES-256-GCM; `aad` binds the ciphertext to its store key so entries cannot be swapped. */
export function encrypt(plaintext: string, key: Buffer, aad: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return `${VERSION}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
}

/** The plaintext, or undefined when the value was tampered with or belongs to another key. */
export function decrypt(sealed: string, key: Buffer, aad: string): string | undefined {
  if (!sealed.startsWith(`${VERSION}.`)) return undefined;
  const raw = Buffer.from(sealed.slice(VERSION.length + 1), 'base64url');
  if (raw.length < 12 + 16) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString(
      'utf8',
    );
  } catch {
    return undefined;
  }
}
