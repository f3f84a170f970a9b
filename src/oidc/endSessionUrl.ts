import * as client from 'openid-client';
import type { Discovered } from './discover.ts';
import type { EndSessionRequest } from './types.ts';

/**
 * `endSessionUrl`: RP-Initiated Logout 1.0 §2 — the provider's end_session_endpoint with
 * `id_token_hint` (the session's ID token: providers such as Okta require it, others skip their
 * "really sign out?" page with it), `client_id`, and `post_logout_redirect_uri` when the user is to
 * come back (it must be registered at the provider). Undefined when discovery offers no endpoint
 * (released Dex has none).
 */
export function endSessionUrl(d: Discovered, request: EndSessionRequest): string | undefined {
  if (!d.profile.endSessionEndpoint) return undefined;
  const parameters: Record<string, string> = {};
  if (request.idTokenHint) parameters['id_token_hint'] = request.idTokenHint;
  if (request.postLogoutRedirectUri) parameters['post_logout_redirect_uri'] = request.postLogoutRedirectUri;
  return client.buildEndSessionUrl(d.credentials.configuration(), parameters).toString();
}
