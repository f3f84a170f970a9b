import * as client from 'openid-client';
import type { Config } from '../config.ts';
import type { Discovered } from './discover.ts';
import type { AuthorizationRequest } from './types.ts';

/**
 * `authorizationUrl`: where a browser goes to log in — state, nonce, PKCE S256 (unless the
 * provider lists code-challenge methods without it), and `prompt=none` for a silent attempt where
 * the provider allows that prompt.
 */
export async function authorizationUrl(
  d: Discovered,
  config: Config,
  request: AuthorizationRequest,
): Promise<string> {
  const parameters: Record<string, string> = {
    redirect_uri: request.redirectUri,
    scope: config.scopes.join(' '),
    state: request.state,
    nonce: request.nonce,
  };
  if (d.profile.pkce) {
    parameters['code_challenge'] = await client.calculatePKCECodeChallenge(request.codeVerifier);
    parameters['code_challenge_method'] = 'S256';
  }
  if (request.silent && d.profile.promptNone) parameters['prompt'] = 'none';
  return client.buildAuthorizationUrl(d.credentials.configuration(), parameters).toString();
}

export function newLoginSecrets(): { state: string; nonce: string; codeVerifier: string } {
  return {
    state: client.randomState(),
    nonce: client.randomNonce(),
    codeVerifier: client.randomPKCECodeVerifier(),
  };
}
