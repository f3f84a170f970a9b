import { randomUUID } from 'node:crypto';
import { request } from 'node:http';

/**
 * Back-Channel Logout 1.0 as a provider sends it: a logout token (§2.4) POSTed as the form field
 * `logout_token` to the client's `backchannel_logout_uri` (§2.5). The token's claims; the signing
 * is the stand-in's (its current key unless the test asks for another).
 */

export const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** The claims of a logout token, before the caller's changes: iat now, a fresh jti, the event, 2 min to live. */
export function logoutClaims(claims: Record<string, unknown>): Record<string, unknown> {
  return { jti: randomUUID(), events: { [LOGOUT_EVENT]: {} }, ...claims };
}

export interface BackchannelAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** POSTs `logout_token=<token>` to `uri` (loopback only), as the provider's back channel does. */
export function postLogoutToken(uri: string, token: string): Promise<BackchannelAnswer> {
  const body = new URLSearchParams({ logout_token: token }).toString();
  return new Promise((resolve, reject) => {
    const req = request(
      uri,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
