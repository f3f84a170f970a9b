import { randomBytes } from 'node:crypto';
import {
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  type KeyObject,
  SignJWT,
} from 'jose';
import type { MintOptions } from './types.ts';

/** Signing keys, Dex-style: RSA-2048/RS256 with a 40-hex `kid` (spec A7). */

export interface SigningKey {
  kid: string;
  jwk: JWK;
  key: CryptoKey;
}

export async function newSigningKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const kid = randomBytes(20).toString('hex');
  const jwk = { ...(await exportJWK(privateKey)), kid, use: 'sig', alg: 'RS256' };
  return { kid, jwk, key: privateKey };
}

export async function signWith(signer: SigningKey, payload: Record<string, unknown>): Promise<string> {
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: 'RS256', kid: signer.kid })
    .sign(signer.key);
}

/** Arbitrary claims signed with the current key, another kid, or a throw-away key (negative tests). */
export async function mint(
  signer: SigningKey,
  defaults: { issuer: string; audience: string | undefined; ttl: number },
  claims: Record<string, unknown>,
  opts: MintOptions = {},
): Promise<string> {
  const alg = opts.alg ?? 'RS256';
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {
    iss: defaults.issuer,
    aud: defaults.audience,
    iat: now,
    exp: now + (opts.expiresIn ?? defaults.ttl),
    ...claims,
  };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  let key: CryptoKey | KeyObject | Uint8Array;
  if (opts.key === undefined) {
    key = alg === 'RS256' ? signer.key : (await generateKeyPair(alg, { extractable: true })).privateKey;
  } else if (opts.key instanceof Uint8Array || !('kty' in opts.key)) {
    key = opts.key as CryptoKey | KeyObject | Uint8Array;
  } else {
    key = await importJWK(opts.key, alg);
  }
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg, kid: opts.kid ?? signer.kid })
    .sign(key);
}
