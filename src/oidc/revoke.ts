import * as client from 'openid-client';
import type { Discovered } from './discover.ts';
import { classifyRefreshError } from './errors.ts';

/**
 * `revokeRefreshToken` (sign-out): RFC 7009 revocation when discovery offers a
 * `revocation_endpoint`; otherwise (released Dex has none) the token is *spent* with a refresh grant
 * whose result is thrown away, so that a later use of it is refused (Dex: outside its
 * `reuseInterval`; oidc-provider: reuse revokes the whole grant). 'refused': the provider no longer
 * took it (already spent or revoked). Throws RefreshError 'transient' when it cannot be reached.
 * Authenticated as every other token-endpoint call is (clientAuth.ts).
 */
export async function revokeRefreshToken(
  d: Discovered,
  refreshToken: string,
): Promise<'revoked' | 'spent' | 'refused'> {
  if (d.metadata.revocation_endpoint) {
    try {
      await d.credentials.call((configuration) =>
        client.tokenRevocation(configuration, refreshToken, { token_type_hint: 'refresh_token' }),
      );
      return 'revoked';
    } catch (error) {
      const refused = classifyRefreshError(error);
      if (refused.kind === 'terminal') return 'refused';
      throw refused;
    }
  }
  try {
    await d.credentials.call((configuration) => client.refreshTokenGrant(configuration, refreshToken));
    return 'spent';
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // The provider answered 200 but the answer did not validate: the token was spent all the same.
    const unusable = code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || code === 'OAUTH_INVALID_RESPONSE';
    if (typeof code === 'string' && code.startsWith('OAUTH_') && !unusable) return 'spent';
    const refused = classifyRefreshError(error);
    if (refused.kind === 'terminal') return 'refused';
    throw refused;
  }
}
