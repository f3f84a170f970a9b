import * as client from 'openid-client';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { requireUsername } from './claims.ts';
import type { Discovered } from './discover.ts';
import { classifyRefreshError, translateRefreshedTokenError } from './errors.ts';
import type { RefreshResult } from './types.ts';
import { verifyIdToken } from './verify.ts';

/**
 * `refresh`: the refresh-token grant. The refresh token to keep is always returned — the rotated
 * one, or the one presented when none came back (Dex inside its reuse window) — also when the
 * provider re-issues no ID token (OpenID Connect Core §12.2), so a spent token is never replayed.
 * Refusals (any 4xx) are terminal, everything else transient (errors.ts).
 */
export async function refresh(
  d: Discovered,
  config: Config,
  clock: Clock,
  refreshToken: string,
): Promise<RefreshResult> {
  let response: client.TokenEndpointResponse;
  try {
    response = await d.credentials.call((configuration) =>
      client.refreshTokenGrant(configuration, refreshToken),
    );
  } catch (error) {
    throw classifyRefreshError(error);
  }
  const kept = response.refresh_token ?? refreshToken;
  if (!response.id_token) return { idToken: undefined, refreshToken: kept, claims: undefined };
  try {
    const claims = await verifyIdToken(d, config, clock, response.id_token);
    if (config.authenticationConfig === undefined) requireUsername(claims, config.usernameClaim);
    return { idToken: response.id_token, refreshToken: kept, claims };
  } catch (error) {
    throw translateRefreshedTokenError(error);
  }
}
