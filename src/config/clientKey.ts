import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { z } from 'zod';
import { parser } from './parsers.ts';
import type { RawText } from './types.ts';

/**
 * OIDC_CLIENT_PRIVATE_KEY: the key that signs client assertions for `private_key_jwt` (RFC 7523,
 * OpenID Connect Core §9), as PEM (PKCS#8, or PKCS#1/SEC1) or as a private JWK whose `kid`,
 * `alg`, `x5t` and `x5t#S256` are sent in the assertion's header (Keycloak matches `kid`, Entra ID
 * the certificate thumbprint).
 */

export interface ClientKey {
  /** PKCS#8 PEM, whatever form it was given in. */
  readonly pkcs8: string;
  readonly alg: string;
  /** Header parameters of the assertion: kid, x5t, x5t#S256 when the JWK carries them. */
  readonly header: Readonly<Record<string, string>>;
}

const SIGNING_ALGS = new Set([
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
]);

const EC_ALGS: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

/** The algorithm a key of this type signs with, unless the JWK names one. */
function defaultAlg(key: KeyObject): string | undefined {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ec':
      return EC_ALGS[key.asymmetricKeyDetails?.namedCurve ?? ''];
    case 'ed25519':
      return 'EdDSA';
    default:
      return undefined;
  }
}

function headerOf(jwk: Record<string, unknown>): Record<string, string> {
  const header: Record<string, string> = {};
  for (const name of ['kid', 'x5t', 'x5t#S256']) {
    if (typeof jwk[name] === 'string') header[name] = jwk[name];
  }
  return header;
}

function parseJwk(text: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a key, or says what is wrong with it (never echoing it). */
export function readClientKey(text: string): ClientKey | string {
  const trimmed = text.trim();
  const jwk = trimmed.startsWith('{') ? parseJwk(trimmed) : undefined;
  if (trimmed.startsWith('{') && !jwk) return 'is neither PEM nor a JSON Web Key';
  let key: KeyObject;
  try {
    key = jwk ? createPrivateKey({ key: jwk as never, format: 'jwk' }) : createPrivateKey(trimmed);
  } catch {
    return jwk
      ? 'is not a private JSON Web Key (it needs the private parts, e.g. "d")'
      : 'is not a private key in PEM';
  }
  const alg = typeof jwk?.['alg'] === 'string' ? jwk['alg'] : defaultAlg(key);
  if (!alg || !SIGNING_ALGS.has(alg)) {
    return `must be an RSA, EC (P-256, P-384, P-521) or Ed25519 key for a signing algorithm (${[...SIGNING_ALGS].join(', ')})`;
  }
  const pkcs8 = key.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { pkcs8, alg, header: jwk ? headerOf(jwk) : {} };
}

export const clientKey = (): z.ZodType<ClientKey | undefined, RawText> =>
  parser((text, fail) => {
    if (text === undefined || text.trim() === '') return undefined;
    const key = readClientKey(text);
    if (typeof key === 'string') {
      fail(key);
      return undefined;
    }
    return key;
  });
