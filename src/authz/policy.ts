import type { Identity } from './identity.ts';

/** The request being authorised, after X-Forwarded-* reconstruction. */
export interface AccessRequest {
  readonly method: string;
  readonly host: string;
  readonly path: string;
}

export type Decision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly reason: string; readonly code: 'forbidden' | 'email_not_verified' };

export interface Authorizer {
  decide(identity: Identity, request: AccessRequest): Decision;
}

const ALLOW: Decision = Object.freeze({ allowed: true });

/**
 * Without AUTHZ_CONFIG: any logged-in user is allowed unless the token says
 * `email_verified: false` or names no user (the API server refuses both when the email is the
 * user name, so we do too).
 */
export const defaultAuthorizer: Authorizer = {
  decide(identity) {
    if (identity.emailVerified === false) {
      return {
        allowed: false,
        code: 'email_not_verified',
        reason: 'The identity provider says your email address is not verified.',
      };
    }
    if (identity.user === '') {
      return { allowed: false, code: 'forbidden', reason: 'Your token carries no user name claim.' };
    }
    return ALLOW;
  },
};
