import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';

/** What makes a token Dex-shaped (spec A3, A4): opaque `sub`, claims, hashes, audiences. */

export const CLAIMED = 'Refresh token is invalid or has already been claimed by another client.';
export const CONNECTOR_ID = 'local';
export const AUDIENCE_SCOPE_PREFIX = 'audience:server:client_id:';

export interface TokenBody {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token?: string;
  id_token?: string;
  [field: string]: unknown;
}

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

/** Dex `sub`: base64url (unpadded) protobuf `{1: user_id, 2: connector_id}`. */
export function dexSubject(userId: string, connectorId = CONNECTOR_ID): string {
  const uid = Buffer.from(userId, 'utf8');
  const cid = Buffer.from(connectorId, 'utf8');
  return Buffer.concat([
    Buffer.from([0x0a, ...varint(uid.length)]),
    uid,
    Buffer.from([0x12, ...varint(cid.length)]),
    cid,
  ]).toString('base64url');
}

/** OIDC `at_hash` / `c_hash` for RS256. */
export function halfHash(value: string): string {
  const digest = createHash('sha256').update(value, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

/** oidc-provider's ID token claims in Dex's shape (to be signed again). */
export function dexClaims(
  idToken: string,
  info: { clientId: string; scope: string; accessToken: string; code: string | undefined },
): Record<string, unknown> {
  const payload: Record<string, unknown> = { ...decodeJwt(idToken) };
  for (const claim of ['auth_time', 'sid', 'acr', 'amr', 'jti', 'at_hash', 'c_hash', 's_hash', 'azp']) {
    delete payload[claim];
  }
  const peers = info.scope
    .split(' ')
    .filter((s) => s.startsWith(AUDIENCE_SCOPE_PREFIX))
    .map((s) => s.slice(AUDIENCE_SCOPE_PREFIX.length));
  if (peers.length > 0) {
    const aud = [...new Set(peers)];
    if (!aud.includes(info.clientId)) aud.push(info.clientId);
    payload['aud'] = aud.length === 1 ? aud[0] : aud;
    if (aud.length > 1) payload['azp'] = info.clientId;
  } else {
    payload['aud'] = info.clientId;
  }
  if (info.accessToken) payload['at_hash'] = halfHash(info.accessToken);
  if (info.code) payload['c_hash'] = halfHash(info.code);
  return payload;
}
