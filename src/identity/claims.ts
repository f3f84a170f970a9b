import type { Config } from '../config.ts';
import { emailVerifiedOf, type Identity } from './identity.ts';

export type { Identity } from './identity.ts';

/** Claims → Identity with the API server's claim and prefix settings (OIDC_USERNAME_CLAIM …, DESIGN §6). */
export function identityFromClaims(
  claims: Readonly<Record<string, unknown>>,
  config: Pick<Config, 'usernameClaim' | 'usernamePrefix' | 'groupsClaim' | 'groupsPrefix'>,
): Identity {
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const rawUser = str(claims[config.usernameClaim]) ?? '';
  const rawGroups = claims[config.groupsClaim];
  const groups =
    typeof rawGroups === 'string'
      ? [rawGroups]
      : Array.isArray(rawGroups)
        ? rawGroups.filter((g): g is string => typeof g === 'string')
        : [];
  return {
    sub: str(claims['sub']) ?? '',
    user: rawUser === '' ? '' : config.usernamePrefix + rawUser,
    email: str(claims['email']),
    emailVerified: emailVerifiedOf(claims),
    groups: groups.map((g) => config.groupsPrefix + g),
    name: str(claims['name']),
    preferredUsername: str(claims['preferred_username']),
  };
}
