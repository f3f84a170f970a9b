import type { Identity } from '../identity/identity.ts';

/** The request being authorised, after X-Forwarded-* reconstruction. */
export interface AccessRequest {
  readonly method: string;
  /** 'https' when absent. */
  readonly proto?: string;
  readonly host: string;
  /** The path as forwarded (escaped); the policy canonicalises it. */
  readonly path: string;
}

/** Who would have been let in, for the denial page ("what would have allowed it"). */
export interface WouldAllow {
  readonly users: readonly string[];
  readonly groups: readonly string[];
  readonly emails: readonly string[];
  readonly emailDomains: readonly string[];
}

export type DecisionSource = 'baseline' | 'rule' | 'rbac' | 'default';

/** The AUTHZ_CONFIG rule that decided: its 1-based position and what it matches (`host/path`). */
export interface RuleRef {
  readonly index: number;
  readonly match: string;
}

/** What decided (for the audit stream): the step, and the rule or the ClusterRoleBinding. */
export interface DecidedBy {
  readonly source?: DecisionSource;
  readonly rule?: RuleRef;
  readonly binding?: string;
}

export type Decision =
  | ({ readonly allowed: true } & DecidedBy)
  | ({
      readonly allowed: false;
      readonly reason: string;
      readonly code: 'forbidden' | 'email_not_verified';
      readonly wouldAllow?: WouldAllow;
    } & DecidedBy);

/** A health summary for /readyz. */
export interface AuthorizerStatus {
  readonly mode: 'default' | 'policy';
  readonly [key: string]: unknown;
}

export interface Authorizer {
  /** Pure and synchronous: runs on the hot path. May throw an AppError (400 bad path, 503 not loaded). */
  decide(identity: Identity, request: AccessRequest): Decision;
  status?(): AuthorizerStatus;
  close?(): Promise<void> | void;
}

export const ALLOW: Decision = Object.freeze({ allowed: true });

/** Allowed by the policy's `default: allow`. */
export const ALLOW_BY_DEFAULT: Decision = Object.freeze({ allowed: true, source: 'default' });

/**
 * What every policy checks first: a token that says `email_verified: false`, or names no user,
 * is refused (the API server refuses both when the email is the user name, so we do too).
 */
export function baselineDecision(identity: Identity): Decision | undefined {
  // AUTHENTICATION_CONFIG (src/identity/): the API server's own rules decided already, email_verified included.
  if (identity.refused) {
    return { allowed: false, code: 'forbidden', source: 'baseline', reason: identity.refused.message };
  }
  if (identity.emailVerified === false && identity.authnRevision === undefined) {
    return {
      allowed: false,
      code: 'email_not_verified',
      source: 'baseline',
      reason: 'The identity provider says your email address is not verified.',
    };
  }
  if (identity.user === '') {
    return {
      allowed: false,
      code: 'forbidden',
      source: 'baseline',
      reason: 'Your token carries no user name claim.',
    };
  }
  return undefined;
}

/**
 * Without AUTHZ_CONFIG: any logged-in user is allowed unless the token says
 * `email_verified: false` or names no user.
 */
export const defaultAuthorizer: Authorizer = {
  decide(identity) {
    return baselineDecision(identity) ?? ALLOW;
  },
  status() {
    return { mode: 'default' };
  },
};
