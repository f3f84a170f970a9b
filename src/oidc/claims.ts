import { AppError } from '../errors.ts';

/**
 * The one claim the service cannot do without: the user name (OIDC_USERNAME_CLAIM), as the API
 * server requires it. Groups, email and email_verified may be missing: no groups, no email, and
 * "not said" (which the default policy allows, as the API server does).
 */

/** Claim names only, never values: `aud, exp, iat, iss, name, sub`. */
export function claimNames(claims: Readonly<Record<string, unknown>>): string {
  const names = Object.keys(claims).sort();
  return names.length > 0 ? names.join(', ') : 'none';
}

/** Why these claims name no user, or undefined when they do. */
export function usernameClaimProblem(
  claims: Readonly<Record<string, unknown>>,
  usernameClaim: string,
): string | undefined {
  const value = claims[usernameClaim];
  if (typeof value === 'string' && value !== '') return undefined;
  const what = value === undefined ? 'has no' : 'has an empty or non-text';
  return `the ID token ${what} "${usernameClaim}" claim, which OIDC_USERNAME_CLAIM names as the user name; it carried: ${claimNames(claims)}`;
}

/** Throws the login's "claims missing" error (403 page naming the setting and the claims seen). */
export function requireUsername(claims: Readonly<Record<string, unknown>>, usernameClaim: string): void {
  const problem = usernameClaimProblem(claims, usernameClaim);
  if (!problem) return;
  throw new AppError(
    'claims_missing',
    `You signed in, but ${problem.replace('the ID token', "the identity provider's token")}. Ask your platform team to set OIDC_USERNAME_CLAIM to one of those claims, or to have the provider add it.`,
    { detail: problem },
  );
}
