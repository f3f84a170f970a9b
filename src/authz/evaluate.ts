import type { Identity } from '../identity/identity.ts';
import { ALLOW_BY_DEFAULT, baselineDecision, type Decision, type RuleRef } from './policy.ts';
import { type RbacIndex, rbacAllowedBy, rbacGrantees } from './rbac.ts';
import type { UrlRequest } from './rbacObjects.ts';
import { admits, describeRule, firstMatchingRule, type Rule } from './rules.ts';

/**
 * The decision as a pure function of (identity, request, policy) — DESIGN §6:
 * baseline checks, then the first matching rule, then RBAC (when configured), then `default`.
 */

/** Every authenticated user is in this group, as on the API server. */
export const AUTHENTICATED_GROUP = 'system:authenticated';

export interface EvaluablePolicy {
  readonly defaultAllow: boolean;
  readonly rules: readonly Rule[];
  /** undefined: RBAC not configured. */
  readonly rbac: RbacIndex | undefined;
}

export interface EvaluableRequest {
  readonly method: string;
  readonly scheme: string;
  readonly host: string;
  /** Canonical path (see canonicalPath). */
  readonly path: string;
}

/** Kubernetes reserves these names; an identity provider's claim never earns one. */
const SYSTEM = 'system:';

/**
 * The groups the policy matches: the identity provider's, except `system:` names (a group claim
 * of `system:masters` must not match the bindings Kubernetes makes for its own), plus
 * `system:authenticated`.
 */
export function groupsOf(identity: Identity): Set<string> {
  const groups = new Set<string>();
  for (const g of identity.groups) if (!g.startsWith(SYSTEM)) groups.add(g);
  groups.add(AUTHENTICATED_GROUP);
  return groups;
}

/** The user name the policy matches: '' (matches no User subject) for a `system:` name. */
export function userOf(identity: Identity): string {
  return identity.user.startsWith(SYSTEM) ? '' : identity.user;
}

/** Each rule's "allowed by this rule" answer, made once (the hot path allocates nothing for it). */
const ruleAllows = new WeakMap<Rule, Decision>();

function ruleRef(rule: Rule): RuleRef {
  return { index: rule.index, match: describeRule(rule) };
}

function allowedByRule(rule: Rule): Decision {
  let decision = ruleAllows.get(rule);
  if (decision === undefined) {
    decision = Object.freeze({ allowed: true, source: 'rule', rule: ruleRef(rule) });
    ruleAllows.set(rule, decision);
  }
  return decision;
}

/** Each binding's "allowed by this binding" answer, made once. */
const bindingAllows = new Map<string, Decision>();

function allowedByBinding(binding: string): Decision {
  let decision = bindingAllows.get(binding);
  if (decision === undefined) {
    decision = Object.freeze({ allowed: true, source: 'rbac', binding });
    if (bindingAllows.size < 10_000) bindingAllows.set(binding, decision);
  }
  return decision;
}

export function evaluate(identity: Identity, request: EvaluableRequest, policy: EvaluablePolicy): Decision {
  const baseline = baselineDecision(identity);
  if (baseline) return baseline;
  const groups = groupsOf(identity);

  const rule = firstMatchingRule(policy.rules, request.host, request.path);
  if (rule) {
    if (admits(rule.allow, identity, groups)) return allowedByRule(rule);
    return {
      allowed: false,
      code: 'forbidden',
      source: 'rule',
      rule: ruleRef(rule),
      reason: `The rule for ${describeRule(rule)} does not include you or any of your groups.`,
      wouldAllow: rule.allow,
    };
  }

  if (policy.rbac) {
    const url: UrlRequest = {
      verb: request.method.toLowerCase(),
      scheme: request.scheme,
      host: request.host,
      path: request.path,
    };
    const binding = rbacAllowedBy(policy.rbac, userOf(identity), groups, url);
    if (binding !== undefined) return allowedByBinding(binding);
    if (policy.defaultAllow) return ALLOW_BY_DEFAULT;
    const grantees = rbacGrantees(policy.rbac, url);
    return {
      allowed: false,
      code: 'forbidden',
      source: 'rbac',
      reason: `No ClusterRoleBinding grants you or your groups "${url.verb}" on ${request.path}.`,
      wouldAllow: { users: grantees.users, groups: grantees.groups, emails: [], emailDomains: [] },
    };
  }

  if (policy.defaultAllow) return ALLOW_BY_DEFAULT;
  return {
    allowed: false,
    code: 'forbidden',
    source: 'default',
    reason: 'No rule opens this page to you, and everything else is closed.',
  };
}
