import { type JWTPayload, jwtVerify } from 'jose';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import type { Discovered } from './discover.ts';
import { invalidBearer, translateBearerError } from './errors.ts';
import { checkClaimSizes, checkIdTokenSize } from './limits.ts';
import type { BearerVerifyOptions, IdClaims } from './types.ts';

/** `verifyIdToken`: signature via the JWKS, iss, aud, exp, iat, and the nonce of this login. */
export async function verifyIdToken(
  d: Discovered,
  config: Config,
  clock: Clock,
  idToken: string,
  expectedNonce?: string,
): Promise<IdClaims> {
  checkIdTokenSize(idToken);
  const { payload } = await jwtVerify(idToken, d.jwks, {
    issuer: config.issuerUrl,
    audience: config.clientId,
    algorithms: [...d.algorithms],
    currentDate: new Date(clock.now()),
    requiredClaims: ['sub', 'exp', 'iat'],
  });
  if (expectedNonce !== undefined && payload['nonce'] !== expectedNonce) {
    throw new AppError('login_state_invalid', 'The login could not be verified. Please sign in again.', {
      detail: 'id token nonce mismatch',
    });
  }
  checkClaimSizes(payload);
  return payload as IdClaims;
}

/** `verifyBearer`: a token as the API server checks it (spec C2); exp without leeway, nbf with a minute. */
export async function verifyBearer(
  d: Discovered,
  config: Config,
  clock: Clock,
  token: string,
  { audiences, algorithms }: BearerVerifyOptions,
): Promise<IdClaims> {
  const now = clock.now();
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, d.jwks, {
      issuer: config.issuerUrl,
      audience: [...audiences],
      algorithms: [...algorithms],
      currentDate: new Date(now),
      clockTolerance: 60,
      requiredClaims: ['exp'],
    }));
  } catch (error) {
    throw translateBearerError(error);
  }
  if (typeof payload.exp !== 'number' || payload.exp * 1000 < now) {
    throw invalidBearer('token expired', 'The token has expired.');
  }
  return payload as IdClaims;
}
