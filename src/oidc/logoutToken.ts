import { errors as joseErrors, jwtVerify } from 'jose';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError, describeError } from '../errors.ts';
import type { Discovered } from './discover.ts';
import { providerUnavailable } from './errors.ts';

/**
 * OpenID Connect Back-Channel Logout 1.0 §2.6: a logout token is valid when its signature checks
 * against the provider's JWKS with an algorithm the provider signs with, `iss` is the issuer, `aud`
 * holds the client id, `iat` is within LOGOUT_TOKEN_MAX_AGE (a minute of clock skew), `exp` (if
 * any) has not passed, `jti` is there (for the replay check the caller makes), `events` holds the
 * back-channel-logout member as an object, there is no `nonce` (so an ID token never passes for a
 * logout token), `azp` (required with several audiences) is the client id, and there is a `sid`,
 * a `sub` or both.
 */

export const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** The oldest `iat` accepted, seconds (plus CLOCK_SKEW_S). */
export const LOGOUT_TOKEN_MAX_AGE_S = 600;
/** The clock skew allowed on `iat` and `exp`, seconds. */
const CLOCK_SKEW_S = 60;

export interface LogoutToken {
  readonly jti: string;
  readonly sid: string | undefined;
  readonly sub: string | undefined;
  /** Until when (ms) a token of this `iat` is accepted: how long its `jti` must be remembered. */
  readonly acceptedUntil: number;
}

/** AppError 'bad_request' (invalid token) or 'provider_unavailable' (no JWKS to check it with). */
export async function verifyLogoutToken(
  d: Discovered,
  config: Config,
  clock: Clock,
  token: string,
): Promise<LogoutToken> {
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, d.jwks, {
      issuer: config.issuerUrl,
      audience: config.clientId,
      algorithms: [...d.algorithms],
      currentDate: new Date(clock.now()),
      clockTolerance: CLOCK_SKEW_S,
      maxTokenAge: LOGOUT_TOKEN_MAX_AGE_S,
      requiredClaims: ['iat', 'jti', 'events'],
    }));
  } catch (error) {
    throw translate(error);
  }
  const events = payload['events'];
  const event =
    typeof events === 'object' && events !== null
      ? (events as Record<string, unknown>)[LOGOUT_EVENT]
      : undefined;
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw invalid(`events has no ${LOGOUT_EVENT} member`);
  }
  if ('nonce' in payload) throw invalid('a logout token carries no nonce');
  checkAuthorizedParty(payload, config.clientId);
  const text = (name: string) =>
    typeof payload[name] === 'string' && payload[name] !== '' ? payload[name] : undefined;
  const sid = text('sid');
  const sub = text('sub');
  const jti = text('jti');
  if (sid === undefined && sub === undefined) throw invalid('neither sid nor sub');
  if (jti === undefined) throw invalid('jti is not a string');
  const acceptedUntil = ((payload.iat as number) + LOGOUT_TOKEN_MAX_AGE_S + CLOCK_SKEW_S) * 1000;
  return { jti, sid, sub, acceptedUntil };
}

/**
 * OIDC Core §3.1.3.7 (which BCL §2.6 applies): with several audiences `azp` must be there and be
 * our client id, and an `azp` naming another client is refused — else a token the provider sent
 * another relying party (we merely one of its audiences) could be replayed here.
 */
function checkAuthorizedParty(payload: Record<string, unknown>, clientId: string): void {
  const azp = payload['azp'];
  const aud = payload['aud'];
  if (Array.isArray(aud) && aud.length > 1 && azp === undefined) {
    throw invalid('several audiences and no azp');
  }
  if (azp !== undefined && azp !== clientId) throw invalid('azp is another client');
}

function invalid(detail: string): AppError {
  return new AppError('bad_request', `The logout token is not valid: ${detail}.`, { detail });
}

function translate(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof joseErrors.JOSEError) {
    if (error instanceof joseErrors.JWKSTimeout || error.code === 'ERR_JWKS_INVALID') {
      return providerUnavailable(`jwks: ${error.code}`);
    }
    return invalid(error.code);
  }
  return providerUnavailable(`jwks fetch: ${describeError(error)}`);
}
