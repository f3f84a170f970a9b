import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  pbkdf2Sync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';

/**
 * Writing and reading an iron seal (`Fe26.2*id*salt*iv*ciphertext*expiration*hmacSalt*hmac`, as iron-session
 * writes it with its defaults: PBKDF2-SHA1 with one iteration for both keys, HMAC-SHA256 over
 * everything before the HMAC salt, AES-256-CBC) synchronously with node:crypto. iron-session's own
 * unseal goes through WebCrypto: about ten promise hops through the libuv thread pool per cookie,
 * which made an unseal cost more than the rest of a decision (issue 15). The integrity check comes
 * first and is the cheap part: a forged or altered cookie costs one key derivation and one HMAC,
 * and is never decrypted.
 */

const PREFIX = 'Fe26.2';
/** iron's default: a seal is still accepted this long after its expiration (clock skew). */
const SKEW_MS = 60_000;
/** iron's minimum password length. */
const MIN_PASSWORD = 32;

/** The JSON inside `sealed` (no `~2` suffix), or undefined when it is no valid, unexpired seal. */
export function unsealIron(sealed: string, passwords: ReadonlyMap<string, string>, now: number): unknown {
  const parts = sealed.split('*');
  if (parts.length !== 8 || parts[0] !== PREFIX) return undefined;
  const [, id, encryptionSalt, iv, encrypted, expiration, hmacSalt, hmac] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (expiration !== '' && (!/^\d+$/.test(expiration) || Number(expiration) <= now - SKEW_MS))
    return undefined;
  const password = passwords.get(id === '' ? 'default' : id);
  if (password === undefined || password.length < MIN_PASSWORD) return undefined;
  const base = parts.slice(0, 6).join('*');
  // Compared as text, as iron does: base64url has spare bits, so other spellings of the same
  // bytes must not pass (one session would answer to several cookie values).
  const expected = Buffer.from(
    createHmac('sha256', deriveKey(password, hmacSalt)).update(base).digest('base64url'),
  );
  const presented = Buffer.from(hmac);
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return undefined;
  try {
    const decipher = createDecipheriv(
      'aes-256-cbc',
      deriveKey(password, encryptionSalt),
      Buffer.from(iv, 'base64url'),
    );
    const body = Buffer.from(encrypted, 'base64url');
    const json = Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    return json === '' ? undefined : JSON.parse(json);
  } catch {
    return undefined;
  }
}

/**
 * Seals `data` as iron does (random 256-bit salts as hex, a random IV), expiring `ttlMs` after
 * `now`; `id` names the password, so that any password of a list can unseal it.
 */
export function sealIron(data: unknown, id: string, password: string, ttlMs: number, now: number): string {
  if (password.length < MIN_PASSWORD)
    throw new Error(`iron passwords have at least ${MIN_PASSWORD} characters`);
  const salt = randomBytes(32).toString('hex');
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', deriveKey(password, salt), iv);
  const encrypted = Buffer.concat([cipher.update(JSON.stringify(data), 'utf8'), cipher.final()]);
  const base = `${PREFIX}*${id}*${salt}*${iv.toString('base64url')}*${encrypted.toString('base64url')}*${now + ttlMs}`;
  const hmacSalt = randomBytes(32).toString('hex');
  const hmac = createHmac('sha256', deriveKey(password, hmacSalt)).update(base).digest('base64url');
  return `${base}*${hmacSalt}*${hmac}`;
}

/** iron's key derivation: PBKDF2-SHA1, one iteration, 256 bits, the salt used as text. */
function deriveKey(password: string, salt: string): Buffer {
  return pbkdf2Sync(password, salt, 1, 32, 'sha1');
}
