/**
 * The Identity type alone: what authentication (src/identity/) produces and authorization
 * (src/authz/) decides on. Kept apart so that authz/ needs nothing else from identity/.
 */

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

/**
 * The `email_verified` claim as the API server reads it: absent is "not said"; anything present
 * other than the boolean true ("true" or "false" as text, 0, 1, null) is not verified (kube-apiserver
 * refuses such a token when the email is the user name: "oidc: parse 'email_verified' claim").
 */
export function emailVerifiedOf(claims: Readonly<Record<string, unknown>>): boolean | undefined {
  if (!Object.hasOwn(claims, 'email_verified')) return undefined;
  return claims['email_verified'] === true;
}
