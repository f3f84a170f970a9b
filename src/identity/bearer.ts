import { decodeJwt } from 'jose';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import type { AuthenticationService } from './authentication.ts';
import { identityFromClaims } from './claims.ts';
import type { Identity } from './identity.ts';
import { IssuerUnavailable } from './jwtIssuers.ts';

/**
 * Bearer pass-through (DESIGN §4.3): an `Authorization: Bearer <JWT>` whose unverified `iss` is our
 * issuer is checked as the API server checks it (spec C2) and, when valid, stands in for a session:
 * the same policy applies and the same token goes upstream unchanged.
 *
 * It needs an audience of its own (BEARER_AUDIENCES; unset: pass-through off), and a token minted
 * for this gateway (its client id in `aud`, or as `azp`) is never accepted: every dashboard gets
 * its users' ID tokens upstream, and dashboard A must not act as them on dashboard B (issue 11
 * item 7).
 *
 * A header that is not a JWT, or is a JWT of another issuer, is none of our business (the API
 * server declines such tokens silently too): the cookie step runs as if there were no header.
 */

export type BearerResult =
  | { readonly kind: 'none' }
  | { readonly kind: 'valid'; readonly token: string; readonly identity: Identity }
  | { readonly kind: 'invalid'; readonly error: AppError };

const NONE: BearerResult = Object.freeze({ kind: 'none' });

/** The token of an `Authorization: Bearer …` header (scheme case-insensitive, as the API server reads it). */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.length < 8) return undefined;
  const space = value.indexOf(' ');
  if (space !== 6 || value.slice(0, 6).toLowerCase() !== 'bearer') return undefined;
  const token = value.slice(7).trim();
  return token === '' ? undefined : token;
}

/** Whether `token` is a compact JWT claiming to come from `issuer` (byte-for-byte). */
export function claimsOurIssuer(token: string, issuer: string): boolean {
  if (token.split('.').length !== 3) return false;
  try {
    return decodeJwt(token).iss === issuer;
  } catch {
    return false;
  }
}

/** The gateway's own ID tokens (handed to every upstream) name its client in `aud` or `azp`. */
function mintedForGateway(claims: Record<string, unknown>, clientId: string): boolean {
  const aud = claims['aud'];
  return claims['azp'] === clientId || aud === clientId || (Array.isArray(aud) && aud.includes(clientId));
}

function mintedForGatewayRefusal(): AppError {
  return refuse(
    "minted for this gateway's client (aud/azp)",
    'A token issued to this sign-in gateway is not accepted as a bearer token.',
  );
}

function refuse(detail: string, description: string): AppError {
  return new AppError('unauthenticated', 'The bearer token is not valid.', {
    detail: `bearer token refused: ${detail}`,
    headers: {
      'WWW-Authenticate': `Bearer realm="dex-forward-auth", error="invalid_token", error_description="${description}"`,
    },
  });
}

/**
 * What checks a token of the login issuer (signature by its JWKS, `iss`, `aud`, `exp`, the
 * algorithms): the OIDC provider (src/oidc/) in production. Its refusals are AppError
 * `unauthenticated`; anything else it throws means the provider cannot be asked.
 */
export interface BearerVerifier {
  verifyBearer(
    token: string,
    options: { readonly audiences: readonly string[]; readonly algorithms: readonly string[] },
  ): Promise<Record<string, unknown>>;
}

export type BearerConfig = Pick<
  Config,
  | 'issuerUrl'
  | 'clientId'
  | 'bearerAudiences'
  | 'bearerAlgorithms'
  | 'usernameClaim'
  | 'usernamePrefix'
  | 'groupsClaim'
  | 'groupsPrefix'
>;

/**
 * Checks the request's bearer token. Throws only when the provider cannot be reached (503); a
 * token that fails verification is returned as `invalid` so the caller can still prefer a valid
 * session cookie (as oauth2-proxy does) and answer 401 otherwise.
 */
export async function authenticateBearer(
  header: string | string[] | undefined,
  config: BearerConfig,
  oidc: BearerVerifier,
  authentication?: Pick<AuthenticationService, 'authenticateBearer'>,
): Promise<BearerResult> {
  const token = bearerToken(header);
  if (token !== undefined && authentication) return bearerByConfiguration(token, config, authentication);
  if (token === undefined || !claimsOurIssuer(token, config.issuerUrl)) return NONE;
  if (config.bearerAudiences.length === 0) {
    return {
      kind: 'invalid',
      error: refuse('pass-through is off (BEARER_AUDIENCES unset)', 'Bearer tokens are not accepted here.'),
    };
  }
  let claims: Record<string, unknown>;
  try {
    claims = await oidc.verifyBearer(token, {
      audiences: config.bearerAudiences,
      algorithms: config.bearerAlgorithms,
    });
  } catch (error) {
    if (error instanceof AppError && error.code === 'unauthenticated') return { kind: 'invalid', error };
    throw error;
  }
  if (mintedForGateway(claims, config.clientId)) return { kind: 'invalid', error: mintedForGatewayRefusal() };
  // The API server's claim rules (spec C2 §4).
  const username = claims[config.usernameClaim];
  if (typeof username !== 'string' || username === '') {
    return {
      kind: 'invalid',
      error: refuse(
        `no "${config.usernameClaim}" claim`,
        `The token has no "${config.usernameClaim}" claim.`,
      ),
    };
  }
  if (
    config.usernameClaim === 'email' &&
    Object.hasOwn(claims, 'email_verified') &&
    claims['email_verified'] !== true
  ) {
    return { kind: 'invalid', error: refuse('email not verified', 'The email address is not verified.') };
  }
  return { kind: 'valid', token, identity: identityFromClaims(claims, config) };
}

/** AUTHENTICATION_CONFIG (src/identity/): any issuer of the file, checked and mapped as the API server does. */
async function bearerByConfiguration(
  token: string,
  config: Pick<Config, 'issuerUrl' | 'clientId'>,
  authentication: Pick<AuthenticationService, 'authenticateBearer'>,
): Promise<BearerResult> {
  let result: Awaited<ReturnType<AuthenticationService['authenticateBearer']>>;
  try {
    result = await authentication.authenticateBearer(token);
  } catch (error) {
    if (!(error instanceof IssuerUnavailable)) throw error;
    throw new AppError(
      'provider_unavailable',
      'The identity provider cannot be reached right now. Please try again shortly.',
      { detail: error.message, headers: { 'Retry-After': '5' } },
    );
  }
  if (result.kind === 'none') return NONE;
  if (result.kind === 'invalid') {
    // A quoted-string: no quotes, backslashes or control characters (messages come from the file).
    const description = result.description.replace(/["\\\x00-\x1f\x7f]/g, "'").slice(0, 300);
    return { kind: 'invalid', error: refuse(result.detail, description) };
  }
  // The file may well accept our login issuer's tokens for `kubernetes`: still never the ID tokens
  // this gateway was issued and hands to every upstream.
  const claims = decodeJwt(token);
  if (claims.iss === config.issuerUrl && mintedForGateway(claims, config.clientId)) {
    return { kind: 'invalid', error: mintedForGatewayRefusal() };
  }
  return { kind: 'valid', token, identity: result.identity };
}
