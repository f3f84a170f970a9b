/**
 * The audit stream's events (issue 16 item 4; README "Audit log"): one JSON object per line, made
 * only of the fields below — who, where, what was decided and by what. Nothing a request or a
 * session holds is copied wholesale, so no token, cookie, code or secret can reach the stream:
 * paths are written without their query, users and groups as the policy names them.
 */

export type AuditEventType = 'login' | 'refresh' | 'sign-out' | 'revocation' | 'decision';

/** How a session came to end (`revocation` events). */
export type EndedVia =
  | 'sign-out'
  | 'idle'
  | 'session'
  | 'user'
  | 'all'
  | 'provider-sid'
  | 'provider-sub'
  | 'refresh-refused';

/** The decision's outcome as the metrics count it (dex_forward_auth_decisions_total `outcome`). */
export type DecisionOutcome =
  | 'allow'
  | 'redirect'
  | 'unauthenticated'
  | 'forbidden'
  | 'rate_limited'
  | 'error';

/** Who: the user as the policy names them, the provider's subject, the groups. */
export interface AuditWho {
  readonly user?: string | undefined;
  readonly sub?: string | undefined;
  readonly groups?: readonly string[] | undefined;
}

/** The request an event belongs to, as the trusted proxy described it. */
export interface AuditRequest {
  readonly method: string;
  readonly host: string;
  /** The judged path, without the query. */
  readonly path: string;
  readonly clientIp: string;
}

/** What decided, as the authorizer says (src/authz/policy.ts DecidedBy). */
export interface AuditDecidedBy {
  readonly source?: string | undefined;
  readonly rule?: { readonly index: number; readonly match: string } | undefined;
  readonly binding?: string | undefined;
}

export interface DecisionEvent {
  readonly status: number;
  readonly outcome: DecisionOutcome;
  readonly who?: AuditWho | undefined;
  readonly request?: AuditRequest | undefined;
  readonly decidedBy?: AuditDecidedBy | undefined;
  /** The denial's code (forbidden, email_not_verified, …) or the error's. */
  readonly reason?: string | undefined;
  readonly requestId: string;
}

/** The fields of a request, for an event. */
export function requestFields(request: AuditRequest): Record<string, unknown> {
  return { method: request.method, host: request.host, path: request.path, client: request.clientIp };
}

/** `decision: allow|deny|…`, the step that decided and its rule or binding. */
export function decidedFields(
  outcome: DecisionOutcome,
  status: number,
  by: AuditDecidedBy | undefined,
  reason: string | undefined,
): Record<string, unknown> {
  const judged = outcome === 'allow' || outcome === 'forbidden';
  return {
    decision: outcome === 'forbidden' ? 'deny' : outcome,
    status,
    source: by?.source ?? (judged ? 'default' : undefined),
    rule: by?.rule,
    binding: by?.binding,
    reason,
  };
}
