import type { Config } from '../config.ts';

/** Who the user is, as the Kubernetes API server would name them (DESIGN §6). */
export interface Identity {
  readonly sub: string;
  /** OIDC_USERNAME_PREFIX + the OIDC_USERNAME_CLAIM value. */
  readonly user: string;
  readonly email: string | undefined;
  /** undefined when the token does not say. */
  readonly emailVerified: boolean | undefined;
  /** OIDC_GROUPS_PREFIX + each value of OIDC_GROUPS_CLAIM (string or array). */
  readonly groups: readonly string[];
  readonly name: string | undefined;
  readonly preferredUsername: string | undefined;
  // Set only with AUTHENTICATION_CONFIG (src/identity/): the API server's uid and extra, the
  // configuration revision the identity was mapped with, and why the API server would refuse it.
  readonly uid?: string;
  readonly extra?: Readonly<Record<string, readonly string[]>>;
  readonly authnRevision?: string;
  readonly refused?: { readonly field: string; readonly message: string };
}

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
  const verified = claims['email_verified'];
  return {
    sub: str(claims['sub']) ?? '',
    user: rawUser === '' ? '' : config.usernamePrefix + rawUser,
    email: str(claims['email']),
    emailVerified: typeof verified === 'boolean' ? verified : undefined,
    groups: groups.map((g) => config.groupsPrefix + g),
    name: str(claims['name']),
    preferredUsername: str(claims['preferred_username']),
  };
}
