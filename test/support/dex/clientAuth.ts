import type { IncomingMessage } from 'node:http';
import { createLocalJWKSet, jwtVerify } from 'jose';
import type { ClientAuthMethod, StandInProfile } from './profiles.ts';
import type { DexClient } from './types.ts';
import { formDecode } from './wire.ts';

/**
 * Client authentication at /token, as the profile says: Dex tries HTTP Basic first (URL-unescaped)
 * and then the form, for every client (spec A4); other profiles accept only their advertised
 * methods, may compare Basic credentials without decoding them, and may take private_key_jwt.
 */

export const DEFAULT_AUTH_METHODS: readonly ClientAuthMethod[] = [
  'client_secret_basic',
  'client_secret_post',
];

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

interface Presented {
  readonly method: ClientAuthMethod;
  readonly id: string | null;
  readonly secret: string | null;
}

function presented(req: IncomingMessage, form: URLSearchParams, profile: StandInProfile): Presented {
  const auth = req.headers.authorization;
  if (auth && /^basic /i.test(auth)) {
    const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i !== -1) {
      const decode = profile.basicDecoding === 'none' ? (s: string) => s : formDecode;
      return {
        method: 'client_secret_basic',
        id: decode(decoded.slice(0, i)),
        secret: decode(decoded.slice(i + 1)),
      };
    }
  }
  if (form.get('client_assertion_type') === ASSERTION_TYPE) {
    return { method: 'private_key_jwt', id: form.get('client_id'), secret: form.get('client_assertion') };
  }
  return { method: 'client_secret_post', id: form.get('client_id'), secret: form.get('client_secret') ?? '' };
}

/** RFC 7523 §3: iss = sub = client_id, aud the issuer or the token endpoint, signed by a registered key. */
async function assertionValid(client: DexClient, assertion: string, audiences: string[]): Promise<boolean> {
  if (!client.jwks?.length) return false;
  try {
    await jwtVerify(assertion, createLocalJWKSet({ keys: client.jwks }), {
      issuer: client.clientId,
      subject: client.clientId,
      audience: audiences,
      requiredClaims: ['exp', 'jti'],
    });
    return true;
  } catch {
    return false;
  }
}

export async function authenticateClient(
  req: IncomingMessage,
  form: URLSearchParams,
  clients: readonly DexClient[],
  profile: StandInProfile,
  audiences: string[],
): Promise<DexClient | undefined> {
  const p = presented(req, form, profile);
  if (!(profile.authMethods ?? DEFAULT_AUTH_METHODS).includes(p.method)) return undefined;
  const client = clients.find((c) => c.clientId === p.id);
  if (!client || p.secret === null) return undefined;
  if (p.method === 'private_key_jwt')
    return (await assertionValid(client, p.secret, audiences)) ? client : undefined;
  // An empty secret passes for a public client (Dex), never for one that signs assertions.
  const keyOnly = client.clientSecret === '' && (client.jwks?.length ?? 0) > 0;
  return client.clientSecret === p.secret && !keyOnly ? client : undefined;
}
