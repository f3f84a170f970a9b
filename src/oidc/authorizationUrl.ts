import * as client from 'openid-client';
import type { Config } from '../config.ts';
import type { Discovered } from './discover.ts';
import type { AuthorizationRequest, ProviderProfile } from './types.ts';

/**
 * `authorizationUrl`: where a browser goes to log in — state, nonce, PKCE S256 (unless the
 * provider lists code-challenge methods without it), and `prompt=none` for a silent attempt where
 * the provider allows that prompt.
 */

/** The query of a login request; `doctor` probes with the very same. */
export async function authorizationParameters(
  profile: Pick<ProviderProfile, 'pkce' | 'promptNone'>,
  config: Config,
  request: AuthorizationRequest,
): Promise<Record<string, string>> {
  const parameters: Record<string, string> = {
    redirect_uri: request.redirectUri,
    scope: config.scopes.join(' '),
    state: request.state,
    nonce: request.nonce,
  };
  if (profile.pkce) {
    parameters['code_challenge'] = await client.calculatePKCECodeChallenge(request.codeVerifier);
    parameters['code_challenge_method'] = 'S256';
  }
  if (request.silent && profile.promptNone) parameters['prompt'] = 'none';
  return parameters;
}

export async function authorizationUrl(
  d: Discovered,
  config: Config,
  request: AuthorizationRequest,
): Promise<string> {
  const parameters = await authorizationParameters(d.profile, config, request);
  return client.buildAuthorizationUrl(d.credentials.configuration(), parameters).toString();
}

export function newLoginSecrets(): { state: string; nonce: string; codeVerifier: string } {
  return {
    state: client.randomState(),
    nonce: client.randomNonce(),
    codeVerifier: client.randomPKCECodeVerifier(),
  };
}
