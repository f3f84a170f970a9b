import * as client from 'openid-client';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { requireUsername } from './claims.ts';
import type { Discovered } from './discover.ts';
import { translateCodeError } from './errors.ts';
import type { AuthorizationRequest, TokenResult } from './types.ts';
import { verifyIdToken } from './verify.ts';

/**
 * `exchangeCode`: the authorization code for tokens (state, PKCE verifier, nonce, the ID token's
 * signature and claims), authenticated as the client is configured to. The token must name the
 * user (OIDC_USERNAME_CLAIM), or the login ends with a page that says which claims it carried
 * (with AUTHENTICATION_CONFIG, the file's rules decide instead).
 */
export async function exchangeCode(
  d: Discovered,
  config: Config,
  clock: Clock,
  callbackUrl: URL,
  request: AuthorizationRequest,
): Promise<TokenResult> {
  try {
    const response = await d.credentials.call((configuration) =>
      client.authorizationCodeGrant(
        configuration,
        callbackUrl,
        {
          pkceCodeVerifier: d.profile.pkce ? request.codeVerifier : undefined,
          expectedState: request.state,
          expectedNonce: request.nonce,
          idTokenExpected: true,
        },
        { redirect_uri: request.redirectUri },
      ),
    );
    const idToken = response.id_token as string;
    const claims = await verifyIdToken(d, config, clock, idToken, request.nonce);
    // With AUTHENTICATION_CONFIG the user name is the file's expression, judged by src/identity.
    if (config.authenticationConfig === undefined) requireUsername(claims, config.usernameClaim);
    return { idToken, refreshToken: response.refresh_token, claims };
  } catch (error) {
    throw translateCodeError(error);
  }
}
